// ThreadPool: coverage, grain, exceptions, nesting, concurrent callers, ts_host.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <fstream>
#include <tessera/engine/error.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tessera/engine/thread_pool.hpp>
#include <thread>
#include <vector>

namespace tessera {
namespace {

// Runs the pool over [0, n) and checks every index was visited exactly once.
void expect_each_index_once(ThreadPool& pool, int64_t n, int64_t grain) {
  std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
  for (auto& h : hits) h.store(0);
  std::atomic<int64_t> short_chunks{0};
  std::atomic<int64_t> calls{0};
  pool.parallel_for(n, grain, [&](int64_t begin, int64_t end) {
    ASSERT_LE(0, begin);
    ASSERT_LT(begin, end);
    ASSERT_LE(end, n);
    calls.fetch_add(1);
    if (end - begin < grain && end != n) short_chunks.fetch_add(1);
    for (int64_t i = begin; i < end; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
  });
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "index " << i << " of " << n;
  }
  EXPECT_EQ(short_chunks.load(), 0) << "only the last chunk may be below the grain";
  if (n > 0) {
    EXPECT_GE(calls.load(), 1);
  } else {
    EXPECT_EQ(calls.load(), 0);
  }
}

TEST(ThreadPoolTest, CoversEveryIndexExactlyOnce) {
  for (int threads : {1, 2, 4}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (int64_t n : {0, 1, 2, 7, 64, 1000, 4097}) {
      for (int64_t grain : {1, 3, 100}) {
        SCOPED_TRACE("threads " + std::to_string(threads) + " n " + std::to_string(n) + " grain " +
                     std::to_string(grain));
        expect_each_index_once(pool, n, grain);
      }
    }
  }
}

TEST(ThreadPoolTest, DefaultSizeIsAtLeastOne) {
  ThreadPool pool;
  EXPECT_GE(pool.size(), 1);
  expect_each_index_once(pool, 333, 1);
}

TEST(ThreadPoolTest, UsesMoreThanOneThread) {
  ThreadPool pool(3);
  std::mutex m;
  std::vector<std::thread::id> ids;
  // Each chunk waits a little so that workers get a chance to take some.
  pool.parallel_for(64, 1, [&](int64_t, int64_t) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::lock_guard<std::mutex> lock(m);
    ids.push_back(std::this_thread::get_id());
  });
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  EXPECT_GT(ids.size(), 1u);
}

TEST(ThreadPoolTest, PropagatesTheFirstExceptionAndStaysUsable) {
  ThreadPool pool(4);
  try {
    pool.parallel_for(1000, 1, [](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        if (i == 500) throw std::runtime_error("boom at 500");
      }
    });
    FAIL() << "expected the exception to reach the caller";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "boom at 500");
  }
  // Also when the pool runs inline (one thread).
  ThreadPool single(1);
  EXPECT_THROW(single.parallel_for(10, 1, [](int64_t, int64_t) { throw std::logic_error("x"); }),
               std::logic_error);
  expect_each_index_once(pool, 777, 2);
}

TEST(ThreadPoolTest, NestedCallsRunInline) {
  ThreadPool pool(4);
  constexpr int64_t kOuter = 16, kInner = 50;
  std::vector<std::atomic<int>> hits(kOuter * kInner);
  for (auto& h : hits) h.store(0);
  pool.parallel_for(kOuter, 1, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      const auto outer_thread = std::this_thread::get_id();
      pool.parallel_for(kInner, 1, [&](int64_t b, int64_t e) {
        EXPECT_EQ(std::this_thread::get_id(), outer_thread);
        for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(o * kInner + i)].fetch_add(1);
      });
    }
  });
  for (auto& h : hits) ASSERT_EQ(h.load(), 1);
}

TEST(ThreadPoolTest, ConcurrentCallersEachGetTheirWork) {
  ThreadPool pool(3);
  std::atomic<int64_t> sums[4];
  for (auto& s : sums) s.store(0);
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c) {
    callers.emplace_back([&, c] {
      for (int rep = 0; rep < 20; ++rep) {
        pool.parallel_for(100, 3, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) sums[c].fetch_add(i);
        });
      }
    });
  }
  for (auto& t : callers) t.join();
  for (auto& s : sums) EXPECT_EQ(s.load(), 20 * 4950);
}

TEST(ThreadPoolTest, ManyShortJobsBackToBackEachRunOnce) {
  // Decode's pattern: thousands of tiny regions in a row, workers spinning
  // between them. A chunk run twice, lost, or run with the previous job's
  // function shows up as a wrong count.
  for (int threads : {2, 3}) {
    ThreadPool pool(threads);
    std::vector<std::atomic<int64_t>> hits(8);
    for (int job = 0; job < 20000; ++job) {
      const int64_t n = 1 + job % 8;
      for (auto& h : hits) h.store(0);
      pool.parallel_for(n, 1, [&, job](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(job + 1);
      });
      for (int64_t i = 0; i < 8; ++i)
        ASSERT_EQ(hits[static_cast<size_t>(i)].load(), i < n ? job + 1 : 0)
            << "job " << job << " index " << i << " threads " << threads;
    }
  }
}

TEST(ThreadPoolTest, WorkersThatFellAsleepStillTakeWork) {
  ThreadPool pool(2);
  for (int round = 0; round < 3; ++round) {
    // Longer than the spin window: the worker goes to sleep and must be woken.
    std::this_thread::sleep_for(std::chrono::microseconds(ThreadPool::kSpinMicroseconds * 4));
    std::mutex m;
    std::vector<std::thread::id> ids;
    pool.parallel_for(2, 1, [&](int64_t, int64_t) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      std::lock_guard<std::mutex> lock(m);
      ids.push_back(std::this_thread::get_id());
    });
    ASSERT_EQ(ids.size(), 2u);
    EXPECT_NE(ids[0], ids[1]) << "round " << round << ": the sleeping worker took no chunk";
  }
}

struct HostArgs {
  std::vector<std::atomic<int>>* hits;
};

void host_range(void* arg, int64_t begin, int64_t end) {
  auto* args = static_cast<HostArgs*>(arg);
  for (int64_t i = begin; i < end; ++i) (*args->hits)[static_cast<size_t>(i)].fetch_add(1);
}

// Under an address-space limit just above what is mapped there is room for a few thread
// stacks, not for a thousand: the pool must throw, having joined what it started. Exits 0
// when it did, with the facts in the message.
[[noreturn]] void create_a_pool_past_the_limit() {
  std::ifstream status("/proc/self/status");
  std::string line;
  uint64_t vm_kib = 0;
  while (std::getline(status, line))
    if (line.rfind("VmSize:", 0) == 0) vm_kib = std::stoull(line.substr(7));
  const rlimit limit{(vm_kib << 10) + (uint64_t{64} << 20), RLIM_INFINITY};
  if (vm_kib == 0 || setrlimit(RLIMIT_AS, &limit) != 0) std::_Exit(3);
  try {
    ThreadPool pool(1000);
    std::_Exit(4);  // granted after all: nothing was tested
  } catch (const Error& e) {
    const std::string m = e.what();
    const bool good =
        m.find(" of 1000 threads started, then the system refused another") != std::string::npos &&
        m.find("ask for fewer threads") != std::string::npos;
    std::_Exit(good ? 0 : 5);
  }
}

TEST(ThreadPoolTest, RefusedThreadsAreAnErrorNotAHang) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer maps its own shadow memory: an address-space limit stops it";
#endif
  EXPECT_EXIT(create_a_pool_past_the_limit(), ::testing::ExitedWithCode(0), "");
}

TEST(ThreadPoolTest, HostRoutesParallelForAndLog) {
  ThreadPool pool(2);
  const ts_host* host = pool.host();
  ASSERT_NE(host, nullptr);
  EXPECT_EQ(host->struct_size, sizeof(ts_host));
  EXPECT_EQ(host->abi_minor, static_cast<uint32_t>(TS_ABI_MINOR));
  EXPECT_EQ(host->n_threads, 2);
  EXPECT_EQ(host->device_context, nullptr);
  ASSERT_NE(host->parallel_for, nullptr);
  ASSERT_NE(host->log, nullptr);
  std::vector<std::atomic<int>> hits(301);
  for (auto& h : hits) h.store(0);
  HostArgs args{&hits};
  host->parallel_for(host->ctx, 301, 7, &host_range, &args);
  for (auto& h : hits) ASSERT_EQ(h.load(), 1);
  host->log(host->ctx, 0, "thread pool test: debug message");
  host->log(host->ctx, 7, nullptr);  // out-of-range level and null message are tolerated
}

}  // namespace
}  // namespace tessera
