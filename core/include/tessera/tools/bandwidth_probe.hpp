// A STREAM-style read probe: how many bytes per second the pool's threads can
// read from memory together. Decode at batch 1 reads every weight once per
// token, so tok/s x bytes per token / this figure is its share of the roofline.
#pragma once

#include <tessera/engine/thread_pool.hpp>

#include <cstddef>

namespace tessera {

struct ReadBandwidth {
  double bytes_per_second = 0;  // best repetition
  size_t bytes = 0;             // buffer size read per repetition
  int repetitions = 0;
  int threads = 0;  // most distinct threads that read part of the buffer in one repetition
};

// Reads a buffer of `bytes` (make it well above the last-level cache) with every
// thread of the pool, `repetitions` times, and keeps the fastest. Throws
// std::invalid_argument when bytes or repetitions is not positive.
ReadBandwidth measure_read_bandwidth(ThreadPool& pool, size_t bytes = size_t{256} << 20,
                                     int repetitions = 5);

}  // namespace tessera
