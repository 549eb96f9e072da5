#include <algorithm>
#include <chrono>
#include <exception>
#include <string>
#include <tessera/engine/error.hpp>
#include <tessera/engine/log.hpp>
#include <tessera/engine/thread_pool.hpp>

namespace tessera {
namespace {

// True on pool workers and on a caller while it runs chunks: a parallel_for from
// there runs inline instead of waiting on workers that may all be busy (deadlock).
thread_local bool t_inside_pool = false;

struct InsideScope {
  bool previous;
  InsideScope() : previous(t_inside_pool) { t_inside_pool = true; }
  ~InsideScope() { t_inside_pool = previous; }
  InsideScope(const InsideScope&) = delete;
  InsideScope& operator=(const InsideScope&) = delete;
};

// The state word: generation | chunk count | next chunk.
constexpr uint64_t kFieldMask = 0xffff;
constexpr int64_t kMaxChunks = 0xffff;
uint64_t next_chunk_of(uint64_t s) {
  return s & kFieldMask;
}
uint64_t chunk_count_of(uint64_t s) {
  return (s >> 16) & kFieldMask;
}
bool has_unclaimed_chunk(uint64_t s) {
  return next_chunk_of(s) < chunk_count_of(s);
}

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

void host_parallel_for(void* ctx, int64_t n, int64_t grain, ts_range_fn fn, void* arg) {
  auto* pool = static_cast<ThreadPool*>(ctx);
  // Nothing may cross the C ABI as an exception; plugin functions are C and do not throw.
  try {
    pool->parallel_for(n, grain, fn, arg);
  } catch (const std::exception& e) {
    log(LogLevel::error, std::string("ts_host.parallel_for failed: ") + e.what());
  } catch (...) {
    log(LogLevel::error, "ts_host.parallel_for failed with an unknown exception");
  }
}

void host_log(void* /*ctx*/, int32_t level, const char* message) {
  const LogLevel l = level <= 0   ? LogLevel::debug
                     : level == 1 ? LogLevel::info
                     : level == 2 ? LogLevel::warning
                                  : LogLevel::error;
  try {
    log(l, message ? message : "(null)");
  } catch (...) {
    // A failing log must not take the plugin down.
  }
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads <= 0) n_threads = static_cast<int>(std::thread::hardware_concurrency());
  n_threads_ = std::max(1, n_threads);
  host_.struct_size = sizeof(ts_host);
  host_.abi_minor = TS_ABI_MINOR;
  host_.ctx = this;
  host_.n_threads = n_threads_;
  host_.parallel_for = &host_parallel_for;
  host_.log = &host_log;
  host_.device_context = nullptr;
  workers_.reserve(static_cast<size_t>(n_threads_ - 1));
  try {
    for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this] { worker_loop(); });
  } catch (const std::exception& e) {
    // The destructor will not run: stop and join the workers started so far here, or their
    // std::thread objects would end the process (or wait forever) as the members unwind.
    const size_t started = workers_.size() + 1;
    shut_down();
    throw Error("thread pool: " + std::to_string(started) + " of " + std::to_string(n_threads_) +
                " threads started, then the system refused another (" + e.what() +
                "); ask for fewer threads (--threads, or [runtime] threads)");
  }
}

ThreadPool::~ThreadPool() {
  shut_down();
}

void ThreadPool::shut_down() {
  stop_.store(true);
  {
    std::lock_guard<std::mutex> lock(sleep_mutex_);
    wake_.notify_all();
  }
  for (std::thread& t : workers_) t.join();
  workers_.clear();
}

void ThreadPool::run_chunks() {
  uint64_t s = state_.load(std::memory_order_acquire);
  while (has_unclaimed_chunk(s)) {
    if (!state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel,
                                      std::memory_order_acquire))
      continue;  // s now holds the current state
    const auto chunk = static_cast<int64_t>(next_chunk_of(s));
    if (!job_failed_.load(std::memory_order_relaxed)) {
      const int64_t begin = chunk * job_chunk_;
      const int64_t end = std::min(job_n_, begin + job_chunk_);
      try {
        job_fn_(job_arg_, begin, end);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex_);
        if (!job_error_) job_error_ = std::current_exception();
        job_failed_.store(true, std::memory_order_relaxed);
      }
    }
    done_chunks_.fetch_add(1, std::memory_order_release);
    s = state_.load(std::memory_order_acquire);
  }
}

bool ThreadPool::wait_for_work_spinning() const {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::microseconds(kSpinMicroseconds);
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (has_unclaimed_chunk(state_.load(std::memory_order_relaxed)) ||
          stop_.load(std::memory_order_relaxed))
        return true;
      cpu_relax();
    }
    if (std::chrono::steady_clock::now() > deadline) return false;
  }
}

void ThreadPool::wait_for_work_sleeping() {
  // sleepers_ and state_ are sequentially consistent on both sides: either the
  // publisher sees this sleeper and notifies under the mutex, or this thread's
  // check below sees the published job.
  std::unique_lock<std::mutex> lock(sleep_mutex_);
  sleepers_.fetch_add(1);
  wake_.wait(lock, [&] { return stop_.load() || has_unclaimed_chunk(state_.load()); });
  sleepers_.fetch_sub(1);
}

void ThreadPool::worker_loop() {
  t_inside_pool = true;
  for (;;) {
    run_chunks();
    if (stop_.load(std::memory_order_relaxed)) return;
    if (!wait_for_work_spinning()) wait_for_work_sleeping();
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain,
                              const std::function<void(int64_t, int64_t)>& fn) {
  parallel_for(
      n, grain,
      [](void* arg, int64_t begin, int64_t end) {
        (*static_cast<const std::function<void(int64_t, int64_t)>*>(arg))(begin, end);
      },
      const_cast<void*>(static_cast<const void*>(&fn)));
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, ts_range_fn fn, void* arg) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  if (t_inside_pool || n_threads_ == 1 || n <= grain) {
    fn(arg, 0, n);
    return;
  }

  // A few chunks per thread balance uneven work.
  const int64_t target_chunks = std::min<int64_t>(int64_t{n_threads_} * 4, kMaxChunks);
  const int64_t chunk = std::max(grain, (n + target_chunks - 1) / target_chunks);
  const int64_t chunks = (n + chunk - 1) / chunk;

  std::lock_guard<std::mutex> submit(submit_mutex_);
  job_fn_ = fn;
  job_arg_ = arg;
  job_n_ = n;
  job_chunk_ = chunk;
  job_failed_.store(false, std::memory_order_relaxed);
  job_error_ = nullptr;
  done_chunks_.store(0, std::memory_order_relaxed);
  const uint64_t generation = (state_.load(std::memory_order_relaxed) >> 32) + 1;
  state_.store((generation << 32) | (static_cast<uint64_t>(chunks) << 16));
  if (sleepers_.load() > 0) {
    std::lock_guard<std::mutex> lock(sleep_mutex_);
    wake_.notify_all();
  }

  {
    InsideScope inside;
    run_chunks();
  }
  // Every chunk is claimed; wait for the ones other threads still run.
  for (int spins = 0; done_chunks_.load(std::memory_order_acquire) < chunks; ++spins) {
    if (spins < 1024) {
      cpu_relax();
    } else {
      std::this_thread::yield();  // the holder may be descheduled (more threads than cores)
    }
  }
  if (job_error_) {
    std::exception_ptr error = job_error_;
    job_error_ = nullptr;
    std::rethrow_exception(error);
  }
}

}  // namespace tessera
