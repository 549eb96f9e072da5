#include <tessera/cpu/simd.hpp>
#include <tessera/engine/memory_check.hpp>
#include <tessera/tools/bandwidth_probe.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace tessera {
namespace {

// Sum of [begin, end) with eight independent accumulators, so the adds never
// limit the loads. Lanes are combined in double: exact for the all-ones buffer.
double sum_range(const float* data, int64_t begin, int64_t end) {
  int64_t i = begin;
  double total = 0.0;
#if TESSERA_CPU_AVX2
  __m256 acc[8];
  for (__m256& a : acc) a = _mm256_setzero_ps();
  for (; i + 64 <= end; i += 64)
    for (int j = 0; j < 8; ++j) acc[j] = _mm256_add_ps(acc[j], _mm256_load_ps(data + i + 8 * j));
  alignas(32) float lanes[8];
  for (const __m256& a : acc) {
    _mm256_store_ps(lanes, a);
    for (float lane : lanes) total += lane;
  }
#else
  float acc[8] = {};
  for (; i + 8 <= end; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += data[i + j];
  for (float a : acc) total += a;
#endif
  for (; i < end; ++i) total += data[i];
  return total;
}

}  // namespace

ReadBandwidth measure_read_bandwidth(ThreadPool& pool, size_t bytes, int repetitions) {
  if (bytes < 64 || repetitions < 1)
    throw std::invalid_argument(
        "measure_read_bandwidth: needs at least 64 bytes and one "
        "repetition, got " +
        std::to_string(bytes) + " bytes and " + std::to_string(repetitions) + " repetitions");
  require_memory(bytes, "the bandwidth probe's buffer");
  using Clock = std::chrono::steady_clock;
  // One part per thread, whole 64-float blocks each.
  const int parts = pool.size();
  const auto blocks = static_cast<int64_t>(bytes / sizeof(float) / 64);
  const int64_t n = blocks * 64;
  auto part_begin = [&](int64_t part) { return blocks * part / parts * 64; };
  std::unique_ptr<float[], void (*)(float*)> data(
      static_cast<float*>(
          ::operator new[](static_cast<size_t>(n) * sizeof(float), std::align_val_t{64})),
      [](float* p) { ::operator delete[](p, std::align_val_t{64}); });
  // Written by the threads that read it later (first touch places the pages).
  pool.parallel_for(parts, 1, [&](int64_t b, int64_t e) {
    std::fill(data.get() + part_begin(b), data.get() + part_begin(e), 1.0f);
  });

  ReadBandwidth result;
  result.bytes = static_cast<size_t>(n) * sizeof(float);
  result.repetitions = repetitions;
  double checksum = 0;
  for (int rep = 0; rep < repetitions; ++rep) {
    std::mutex mutex;
    std::vector<std::thread::id> readers;
    std::vector<Clock::time_point> starts, ends;
    std::atomic<int> arrived{0};
    // parallel_for(parts, 1) gives each part its own chunk; a thread blocked in
    // its chunk cannot take another, so the parts are read by different
    // threads at the same time. Inline (a nested call), one call reads them all.
    pool.parallel_for(parts, 1, [&](int64_t b, int64_t e) {
      if (e - b == 1) {
        arrived.fetch_add(1);
        const auto give_up = Clock::now() + std::chrono::seconds(1);
        while (arrived.load() < parts && Clock::now() < give_up) std::this_thread::yield();
      }
      const auto start = Clock::now();
      const double s = sum_range(data.get(), part_begin(b), part_begin(e));
      const auto end = Clock::now();
      std::lock_guard<std::mutex> lock(mutex);
      checksum += s;
      starts.push_back(start);
      ends.push_back(end);
      if (std::find(readers.begin(), readers.end(), std::this_thread::get_id()) == readers.end())
        readers.push_back(std::this_thread::get_id());
    });
    const double seconds =
        std::chrono::duration<double>(*std::max_element(ends.begin(), ends.end()) -
                                      *std::min_element(starts.begin(), starts.end()))
            .count();
    if (seconds > 0)
      result.bytes_per_second =
          std::max(result.bytes_per_second, static_cast<double>(result.bytes) / seconds);
    result.threads = std::max(result.threads, static_cast<int>(readers.size()));
  }
  // Every float is 1: a wrong sum means a part was skipped or read twice.
  if (checksum != static_cast<double>(n) * repetitions)
    throw std::logic_error("measure_read_bandwidth: the buffer's sum is wrong");
  return result;
}

}  // namespace tessera
