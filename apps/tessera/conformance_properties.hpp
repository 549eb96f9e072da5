// Property checks for any block kind whose provider declares its weights (describe): the
// block gets random weights by its own declaration and must agree with itself, whatever it
// computes. They run for kinds without a reference (a plugin's own) and, in addition to the
// reference checks, for the built-in ones.
#pragma once

#include <tessera/engine/block.hpp>
#include <tessera/engine/plugin_registry.hpp>
#include <tessera/engine/tensor.hpp>
#include <tessera/engine/thread_pool.hpp>

#include <cstdint>
#include <map>
#include <string>

#include "conformance.hpp"

namespace tessera::cli {

// Appends the provider's cases to report.cases: info() agrees with describe, reruns are
// bitwise equal, outputs are finite, a batch of sequences equals each sequence alone, a
// prefill in one call equals the same tokens fed in chunks and one by one through the KV
// cache, and a chain tree mask equals the causal mask. Returns false, adding nothing, when
// the provider has no describe (or is not a cpu block provider).
// The hidden size of the property checks' blocks.
constexpr int32_t kPropertyHidden = 64;

// The parameters the property checks give a block: a small model's fields (hidden 64, 4 heads
// of 16, 2 KV heads, intermediate 96, ...), then those given with --param.
ParamList property_params(const ConformanceOptions& options);

// Every weight `layout` declares, drawn by the host's laws (as init_random_weights does for a
// model), by block-local name.
std::map<std::string, Tensor> declared_weights(const BlockLayout& layout, uint64_t seed);

bool check_block_properties(const ProviderRef& provider, const ConformanceOptions& options,
                            ThreadPool& pool, uint64_t seed, ConformanceReport& report);

}  // namespace tessera::cli
