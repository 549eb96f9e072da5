// What the conformance suites share: one case run with its error measured, and the model
// parameters every block under test is given.
#pragma once

#include <tessera/engine/params.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <utility>

#include "conformance.hpp"

namespace tessera::cli {

// Adds |got - want| over n values to a running max, and the largest |want| to the case's
// scale. A NaN from the plugin makes the error infinite: it must fail, not slip through a
// comparison.
template <class Got, class Want>
void accumulate_error(const Got* got, const Want* want, size_t n, double& max_abs,
                      double& max_ref) {
  for (size_t i = 0; i < n; ++i) {
    const double d = std::fabs(static_cast<double>(got[i]) - static_cast<double>(want[i]));
    max_abs = std::isnan(d) ? INFINITY : std::max(max_abs, d);
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(want[i])));
  }
}

// An exception type no case throws: run_case's default, letting nothing through.
struct NothingPassesThrough {};

// Runs body(max_abs, max_ref); an exception it throws becomes the case's error, except one
// of type PassThrough, which goes on to the caller. Passes when nothing was thrown and
// max_abs / max_ref is within the tolerance.
template <class PassThrough = NothingPassesThrough, class F>
CaseResult run_case(std::string name, double tolerance, F&& body) {
  CaseResult r;
  r.name = std::move(name);
  r.tolerance = tolerance;
  double max_abs = 0, max_ref = 0;
  try {
    body(max_abs, max_ref);
  } catch (const PassThrough&) {
    throw;
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  r.max_abs = max_abs;
  r.max_rel = max_abs / std::max(max_ref, 1e-30);
  r.passed = r.error.empty() && r.max_rel <= r.tolerance;
  return r;
}

// The model parameters of a block under test (vocabulary 256, RoPE theta 10000, eps 1e-5).
inline void set_model_params(ParamList& p, int32_t hidden, int32_t heads, int32_t head_dim,
                             int32_t kv, int32_t inter, int32_t max_seq) {
  p.set("hidden_size", int64_t{hidden});
  p.set("num_heads", int64_t{heads});
  p.set("head_dim", int64_t{head_dim});
  p.set("kv_heads", int64_t{kv});
  p.set("intermediate_size", int64_t{inter});
  p.set("rope_theta", 10000.0);
  p.set("rms_norm_eps", 1e-5);
  p.set("max_seq_len", int64_t{max_seq});
  p.set("vocab_size", int64_t{256});
}

}  // namespace tessera::cli
