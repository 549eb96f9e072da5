#include <tessera/engine/error.hpp>
#include <tessera/engine/memory_check.hpp>

#include <sys/resource.h>

#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>

namespace tessera {
namespace {

// The value of `key` (in kB) in a /proc file of "Key:  value kB" lines; 0 when absent.
uint64_t proc_kib(const char* path, const std::string& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line))
    if (line.compare(0, key.size() + 1, key + ":") == 0) {
      std::istringstream fields(line.substr(key.size() + 1));
      uint64_t kib = 0;
      fields >> kib;
      return kib;
    }
  return 0;
}

// A cgroup v2 file holding a number of bytes, or "max"; nullopt-like 0 when unreadable.
bool read_cgroup_bytes(const std::string& path, uint64_t& out) {
  std::ifstream in(path);
  std::string text;
  if (!(in >> text) || text == "max") return false;
  try {
    out = std::stoull(text);
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

}  // namespace

AvailableMemory available_memory() {
  AvailableMemory a;
  a.bytes = proc_kib("/proc/meminfo", "MemAvailable") * 1024;
  a.source = "MemAvailable (/proc/meminfo)";
  if (a.bytes == 0) a.bytes = std::numeric_limits<uint64_t>::max();  // not Linux: no check
  // The process's own cgroup (v2: one line "0::/path").
  std::ifstream cgroup("/proc/self/cgroup");
  std::string line;
  while (std::getline(cgroup, line))
    if (line.rfind("0::", 0) == 0) {
      const std::string dir = "/sys/fs/cgroup" + line.substr(3);
      uint64_t limit = 0, used = 0;
      if (read_cgroup_bytes(dir + "/memory.max", limit) &&
          read_cgroup_bytes(dir + "/memory.current", used)) {
        const uint64_t left = limit > used ? limit - used : 0;
        if (left < a.bytes) {
          a.bytes = left;
          a.source = "the cgroup's memory.max";
        }
      }
    }
  rlimit as{};
  if (::getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY) {
    const uint64_t mapped = proc_kib("/proc/self/status", "VmSize") * 1024;
    const uint64_t left = as.rlim_cur > mapped ? as.rlim_cur - mapped : 0;
    if (left < a.bytes) {
      a.bytes = left;
      a.source = "the address-space limit (ulimit -v)";
    }
  }
  return a;
}

std::string byte_text(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 6) {
    v /= 1024.0;
    ++u;
  }
  char text[32];
  if (u == 0)
    std::snprintf(text, sizeof(text), "%llu B", static_cast<unsigned long long>(bytes));
  else
    std::snprintf(text, sizeof(text), "%.2f %s", v, units[u]);
  return text;
}

void require_memory(uint64_t bytes, const std::string& what) {
  const AvailableMemory a = available_memory();
  if (bytes <= a.bytes) return;
  throw Error(what + " needs " + byte_text(bytes) + "; " + a.source + " leaves " +
              byte_text(a.bytes) + " for it");
}

}  // namespace tessera
