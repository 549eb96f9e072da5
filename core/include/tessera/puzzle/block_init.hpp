// Initialising Puzzle's cheaper blocks from the parent's (reference: puzzle.md, "Building the
// block library"), from statistics gathered over calibration tokens:
//
//   pruned SwiGLU   keep the intermediate channels of highest contribution
//                   C_i = mean over tokens |h_i| * ||W_down[:, i]||_2, h = silu(x Wg^T) * (x Wu^T)
//   fewer KV heads  mean-pool the K and V projection heads of each group being merged
//   linear block    least squares: W = argmin sum_t |W x_t - y_t|^2 (+ ridge), x the block's
//                   normalised input, y the parent block's output
//
// Weights are row-major [out, in] as the blocks declare them (y = x W^T). Statistics are summed
// in double over the tokens, in token order per call, so a library does not depend on the
// thread count.
#pragma once

#include <tessera/abi.h>

#include <cstdint>
#include <vector>

namespace tessera::puzzle {

// Sums for the least-squares fit of a [hidden, hidden] linear map x -> y.
class LinearFitStats {
 public:
  explicit LinearFitStats(int64_t hidden = 0);
  // Adds n tokens: x, y f32 [n, hidden]. host may be NULL (one thread).
  void add(const ts_host* host, const float* x, const float* y, int64_t n);
  int64_t hidden() const { return hidden_; }
  int64_t tokens() const { return tokens_; }
  const std::vector<double>& xx() const { return xx_; }  // [hidden, hidden] sum x^T x
  const std::vector<double>& yx() const { return yx_; }  // [hidden, hidden] sum y^T x
  double yy() const { return yy_; }                      // sum |y|^2

 private:
  int64_t hidden_ = 0, tokens_ = 0;
  std::vector<double> xx_, yx_;
  double yy_ = 0;
  std::vector<float> scratch_;
};

struct LinearFit {
  std::vector<float> weight;  // [hidden, hidden], y ~ x W^T
  // sum |W x - y|^2 / sum |y|^2 over the calibration tokens (the fit's normalised MSE).
  double nmse = 0;
};

// Solves W (X^T X + lambda I) = Y^T X by Cholesky in double, lambda = ridge * trace(X^T X) /
// hidden (ridge > 0 keeps a rank-deficient calibration set solvable). Throws Error when there
// are no tokens or the regularised system is not positive definite.
LinearFit least_squares_linear(const LinearFitStats& stats, double ridge);

// Sums |h_i| over calibration tokens for a SwiGLU FFN's intermediate channels.
class ChannelStats {
 public:
  explicit ChannelStats(int64_t intermediate = 0);
  // x: the FFN's normalised input f32 [n, hidden]; gate, up: f32 [intermediate, hidden].
  void add(const ts_host* host, const float* x, int64_t n, int64_t hidden, const float* gate,
           const float* up);
  int64_t tokens() const { return tokens_; }
  const std::vector<double>& abs_sum() const { return abs_sum_; }

 private:
  int64_t tokens_ = 0;
  std::vector<double> abs_sum_;
  std::vector<float> g_, u_;
};

// C_i = abs_sum_i / tokens * ||down[:, i]||_2; down f32 [hidden, intermediate].
std::vector<double> channel_contributions(const ChannelStats& stats, const float* down,
                                          int64_t hidden);

// The `width` channels of highest contribution, in ascending index order (ties: the lower
// index is kept). Throws Error unless 0 < width <= contributions.size().
std::vector<int32_t> top_channels(const std::vector<double>& contributions, int64_t width);

struct SwigluWeights {
  std::vector<float> gate, up;  // [width, hidden]
  std::vector<float> down;      // [hidden, width]
};

// The rows of gate and up and the columns of down that `channels` name (ascending, distinct,
// each < intermediate).
SwigluWeights prune_swiglu(const float* gate, const float* up, const float* down, int64_t hidden,
                           int64_t intermediate, const std::vector<int32_t>& channels);

// A K or V projection [kv_heads * head_dim, hidden] with its heads mean-pooled into new_kv_heads
// (new_kv_heads divides kv_heads): new head j is the mean of heads j*g .. j*g+g-1, g =
// kv_heads / new_kv_heads, which keeps every query head on the kv head its group mapped to.
std::vector<float> mean_pool_heads(const float* w, int64_t kv_heads, int64_t head_dim,
                                   int64_t hidden, int64_t new_kv_heads);

}  // namespace tessera::puzzle
