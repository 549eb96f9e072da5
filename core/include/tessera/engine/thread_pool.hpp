// A fixed pool of worker threads with a blocking parallel_for, lent to plugins
// through ts_host.
//
// Decode runs ~150 short parallel regions per token, so handing out a job must
// cost far less than the kernels: after a job, workers spin on an atomic for a
// short while (kSpinMicroseconds, enough for the host-side work between two
// regions) before they sleep on a condition variable, and chunks are claimed
// with one compare-and-swap, not a mutex. The spin is short on purpose: on a
// machine shared with other work, longer spinning measured slower (it spends the
// process's share of the cores on waiting).
#pragma once

#include <tessera/abi.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tessera {

class ThreadPool {
 public:
  // How long an idle worker spins before it sleeps.
  static constexpr int64_t kSpinMicroseconds = 50;

  // The most threads a manifest or a flag may ask for.
  static constexpr int kMaxThreads = 1024;
  // n_threads <= 0 means one per hardware thread. The calling thread counts as one. When the
  // system refuses a thread, the ones started are stopped and an Error says how many ran.
  explicit ThreadPool(int n_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Runs fn(begin, end) over [0, n) in chunks of at least `grain` elements and
  // returns when all are done; at most 4 chunks per thread, so n <= size() with
  // grain 1 gives one chunk per index. Nested calls from inside fn run inline.
  // The first exception thrown by a chunk is rethrown here after every chunk
  // has finished or been skipped.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);
  // The same through a C callback (what ts_host uses: no std::function per call).
  void parallel_for(int64_t n, int64_t grain, ts_range_fn fn, void* arg);

  // The ts_host that routes plugins' parallel_for and log calls here.
  const ts_host* host() const { return &host_; }

 private:
  void worker_loop();
  // Stops the workers and joins them (the destructor, and a constructor that fails midway).
  void shut_down();
  // Claims and runs chunks of the current job until none is left.
  void run_chunks();
  bool wait_for_work_spinning() const;
  void wait_for_work_sleeping();

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex submit_mutex_;  // one outside caller's job at a time

  // The current job; written by its caller before `state_` publishes it, read
  // by a thread only after it claimed a chunk (the job cannot end before that
  // chunk is done, so the fields are stable).
  ts_range_fn job_fn_ = nullptr;
  void* job_arg_ = nullptr;
  int64_t job_n_ = 0;
  int64_t job_chunk_ = 0;
  std::atomic<bool> job_failed_{false};
  std::mutex error_mutex_;
  std::exception_ptr job_error_;

  // generation (32 bits) | chunk count (16) | next chunk to claim (16).
  std::atomic<uint64_t> state_{0};
  std::atomic<int64_t> done_chunks_{0};

  std::mutex sleep_mutex_;
  std::condition_variable wake_;
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
  ts_host host_{};
};

}  // namespace tessera
