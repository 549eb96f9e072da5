// Memory checked before large allocations: what is available, how sizes read, and the refusal
// that names what asked and both figures.
#include <tessera/engine/error.hpp>
#include <tessera/engine/memory_check.hpp>
#include <tessera/engine/thread_pool.hpp>
#include <tessera/tools/bandwidth_probe.hpp>

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>

namespace tessera::test {
namespace {

TEST(MemoryCheck, SomethingIsAvailableAndSaysWhereFrom) {
  const AvailableMemory a = available_memory();
  EXPECT_GT(a.bytes, 0u);
  EXPECT_FALSE(a.source.empty());
}

TEST(MemoryCheck, SizesReadAsPowersOf1024) {
  EXPECT_EQ(byte_text(800), "800 B");
  EXPECT_EQ(byte_text(1536), "1.50 KiB");
  EXPECT_EQ(byte_text(uint64_t{3} << 30), "3.00 GiB");
  EXPECT_EQ(byte_text(uint64_t{1} << 40), "1.00 TiB");
}

TEST(MemoryCheck, TooMuchIsRefusedWithBothFigures) {
  EXPECT_NO_THROW(require_memory(1024, "a kilobyte"));
  try {
    require_memory(std::numeric_limits<uint64_t>::max() / 2, "model.toml: the weights");
    FAIL() << "eight exabytes were granted";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("model.toml: the weights needs 8.00 EiB; "), std::string::npos)
        << message;
    EXPECT_NE(message.find(" leaves "), std::string::npos) << message;
    EXPECT_NE(message.find(" for it"), std::string::npos) << message;
  }
}

TEST(MemoryCheck, TheBandwidthProbeAsksFirst) {
  ThreadPool pool(1);
  try {
    (void)measure_read_bandwidth(pool, size_t{1} << 62, 1);
    FAIL() << "a 4 EiB probe buffer was granted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the bandwidth probe's buffer needs 4.00 EiB; "),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace tessera::test
