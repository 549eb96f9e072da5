// Memory is checked before a large allocation, not discovered missing after it: a model or
// config that asks for more than the machine has is refused at once, with both figures,
// instead of ending in std::bad_alloc (or the OOM killer) after filling memory for a while.
#pragma once

#include <cstdint>
#include <string>

namespace tessera {

struct AvailableMemory {
  uint64_t bytes = 0;
  std::string source;  // what set the figure: "MemAvailable", "the cgroup's memory.max", ...
};

// What this process can still allocate: /proc/meminfo's MemAvailable, lowered by a cgroup
// limit (memory.max less memory.current) and by an address-space limit (ulimit -v, less the
// address space already mapped) where those are tighter.
AvailableMemory available_memory();

// "1.32 TiB", "512 MiB", "800 B".
std::string byte_text(uint64_t bytes);

// Throws Error("<what> needs <bytes>; <source> leaves <available>") when `bytes` exceeds what
// available_memory() finds. `what` should name the file and the fields that set the size.
void require_memory(uint64_t bytes, const std::string& what);

}  // namespace tessera
