#include <algorithm>
#include <atomic>
#include <exception>
#include <string>
#include <tessera/core/log.hpp>
#include <tessera/core/thread_pool.hpp>

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

void host_parallel_for(void* ctx, int64_t n, int64_t grain, ts_range_fn fn, void* arg) {
  auto* pool = static_cast<ThreadPool*>(ctx);
  // Nothing may cross the C ABI as an exception; plugin functions are C and do not throw.
  try {
    pool->parallel_for(n, grain, [fn, arg](int64_t begin, int64_t end) { fn(arg, begin, end); });
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
  host_.cuda_stream = nullptr;
  workers_.reserve(static_cast<size_t>(n_threads_ - 1));
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::worker_loop(int /*index*/) {
  t_inside_pool = true;
  uint64_t seen_generation = 0;
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return stop_ || generation_ != seen_generation; });
    if (stop_) return;
    seen_generation = generation_;
    // Take chunks until none is left; the job may already be over when we get here.
    while (job_ != nullptr && next_chunk_ < n_chunks_) {
      const int64_t chunk = next_chunk_++;
      const auto* fn = job_;
      const int64_t begin = chunk * job_chunk_;
      const int64_t end = std::min(job_n_, begin + job_chunk_);
      lock.unlock();
      (*fn)(begin, end);  // the job wrapper catches everything
      lock.lock();
      if (--pending_ == 0) done_.notify_all();
    }
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain,
                              const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  if (t_inside_pool || n_threads_ == 1 || n <= grain) {
    fn(0, n);
    return;
  }

  // Exceptions are caught per chunk; the first one is rethrown here once every
  // chunk has finished (or been skipped), so no worker touches `fn` afterwards.
  std::exception_ptr first_error;
  std::mutex error_mutex;
  std::atomic<bool> failed{false};
  const std::function<void(int64_t, int64_t)> guarded = [&](int64_t begin, int64_t end) {
    if (failed.load(std::memory_order_relaxed)) return;
    try {
      fn(begin, end);
    } catch (...) {
      std::lock_guard<std::mutex> error_lock(error_mutex);
      if (!first_error) first_error = std::current_exception();
      failed.store(true, std::memory_order_relaxed);
    }
  };

  // A few chunks per thread balance uneven work without much locking.
  const int64_t target_chunks = static_cast<int64_t>(n_threads_) * 4;
  const int64_t chunk = std::max(grain, (n + target_chunks - 1) / target_chunks);
  const int64_t chunks = (n + chunk - 1) / chunk;

  std::unique_lock<std::mutex> lock(mutex_);
  // Another outside thread may be running a job on this pool: wait for our turn.
  done_.wait(lock, [&] { return job_ == nullptr; });
  job_ = &guarded;
  job_n_ = n;
  job_chunk_ = chunk;
  next_chunk_ = 0;
  n_chunks_ = chunks;
  pending_ = static_cast<int>(chunks);
  ++generation_;
  wake_.notify_all();

  {
    InsideScope inside;
    while (next_chunk_ < n_chunks_) {
      const int64_t c = next_chunk_++;
      const int64_t begin = c * chunk;
      const int64_t end = std::min(n, begin + chunk);
      lock.unlock();
      guarded(begin, end);
      lock.lock();
      --pending_;
    }
  }
  done_.wait(lock, [&] { return pending_ == 0; });
  job_ = nullptr;
  n_chunks_ = 0;
  lock.unlock();
  done_.notify_all();  // wakes outside callers waiting for their turn

  if (first_error) std::rethrow_exception(first_error);
}

}  // namespace tessera
