// The instruction sets a kernel test runs on, and a scope that caps the kernels at one.
#pragma once

#include <tessera/cpu/isa.hpp>

#include <vector>

namespace tessera::test {

// Every instruction set this CPU runs: the kernels are tested on each.
inline std::vector<cpu::Isa> isas_to_test() {
  std::vector<cpu::Isa> isas = {cpu::Isa::avx2};
  if (cpu::supported_isa() == cpu::Isa::avx512) isas.push_back(cpu::Isa::avx512);
  return isas;
}

// Caps the kernels at one instruction set for a scope.
struct IsaScope {
  explicit IsaScope(cpu::Isa isa) { cpu::set_isa_limit(isa); }
  ~IsaScope() { cpu::set_isa_limit(cpu::Isa::avx512); }
  IsaScope(const IsaScope&) = delete;
  IsaScope& operator=(const IsaScope&) = delete;
};

}  // namespace tessera::test
