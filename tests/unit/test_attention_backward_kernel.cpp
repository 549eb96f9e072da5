// The SDK's attention kernels of training for one head: the blocked backward (keys in blocks
// of 16) against the row-at-a-time backward on the same forward, for lengths around the block
// size and two head sizes; the dispatcher's choice for masked heads; the tiled forward with
// its softmax statistics against the one-query-at-a-time forward.
#include <tessera/cpu/backward_ops.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "model_fixtures.hpp"

namespace tessera::test {
namespace {

struct HeadCase {
  int64_t n = 0, hd = 0;
  std::vector<float> q, k, v, o, d_o;
  std::vector<cpu::AttentionPartial> stats;
  std::vector<uint8_t> mask;

  HeadCase(int64_t tokens, int64_t head_dim, uint64_t seed, bool masked = false)
      : n(tokens), hd(head_dim) {
    Rng rng(seed);
    auto fill = [&](std::vector<float>& x) {
      x.resize(static_cast<size_t>(n * hd));
      for (float& e : x) e = rng.normal();
    };
    fill(q);
    fill(k);
    fill(v);
    fill(d_o);
    o.assign(static_cast<size_t>(n * hd), 0.0f);
    stats.resize(static_cast<size_t>(n));
    if (masked) {  // a tree: each token sees itself and the even tokens before it
      mask.assign(static_cast<size_t>(n * n), 0);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j <= i; ++j)
          mask[static_cast<size_t>(i * n + j)] = j == i || j % 2 == 0;
    }
    cpu::attention_forward_stats(head(), q.data(), hd, 0, n, o.data(), hd, stats.data());
  }

  cpu::AttentionHead head() const {
    cpu::AttentionHead h;
    h.k = k.data();
    h.v = v.data();
    h.row_stride = hd;
    h.head_dim = hd;
    h.n_new = n;
    h.mask = mask.empty() ? nullptr : mask.data();
    h.scale = 1.0f / std::sqrt(static_cast<float>(hd));
    return h;
  }

  struct Grads {
    std::vector<float> dq, dk, dv;
  };
  template <class Kernel>
  Grads run(Kernel kernel) const {
    Grads g;
    g.dq.assign(static_cast<size_t>(n * hd), 7.0f);  // written, not added to
    g.dk.assign(static_cast<size_t>(n * hd), 0.5f);  // added to
    g.dv.assign(static_cast<size_t>(n * hd), -0.5f);
    kernel(head(), q.data(), o.data(), d_o.data(), hd, stats.data(), g.dq.data(), g.dk.data(),
           g.dv.data(), hd);
    return g;
  }
};

// max |got - want| / max(max |want|, 1): one token's dq is 0 (dS = p (dp - D) = 0).
double max_relative(const std::vector<float>& got, const std::vector<float>& want) {
  double diff = 0, scale = 1;
  for (size_t i = 0; i < want.size(); ++i) {
    diff = std::max(diff, static_cast<double>(std::fabs(got[i] - want[i])));
    scale = std::max(scale, static_cast<double>(std::fabs(want[i])));
  }
  return diff / scale;
}

#if TESSERA_CPU_AVX2
TEST(AttentionBackwardKernel, BlockedEqualsRowsAroundTheBlockSize) {
  for (const int64_t hd : {16, 64})
    for (const int64_t n : {1, 5, 15, 16, 17, 33, 70}) {
      const HeadCase c(n, hd, 100 + static_cast<uint64_t>(n * hd));
      const auto rows = c.run(cpu::attention_backward_head_rows);
      const auto blocked = c.run(cpu::attention_backward_head_blocked);
      EXPECT_LT(max_relative(blocked.dq, rows.dq), 1e-5) << "dq, n " << n << " hd " << hd;
      EXPECT_LT(max_relative(blocked.dk, rows.dk), 1e-5) << "dk, n " << n << " hd " << hd;
      EXPECT_LT(max_relative(blocked.dv, rows.dv), 1e-5) << "dv, n " << n << " hd " << hd;
      // Run twice: the same bits.
      const auto again = c.run(cpu::attention_backward_head_blocked);
      EXPECT_EQ(again.dq, blocked.dq);
      EXPECT_EQ(again.dk, blocked.dk);
    }
}
#endif

TEST(AttentionBackwardKernel, TiledForwardStatsEqualTheRowForward) {
  // attention_forward_stats in tiles of 16 against attention_chunk one query at a time, from
  // a first query inside the sequence and with counts that leave a short tail.
  for (const int64_t count : {3, 4, 16, 21, 37}) {
    const HeadCase c(45, 32, 50 + static_cast<uint64_t>(count));
    const int64_t first = 45 - count;
    std::vector<float> o(static_cast<size_t>(count * c.hd)), o_rows = o;
    std::vector<cpu::AttentionPartial> stats(static_cast<size_t>(count)), rows(stats.size());
    cpu::attention_forward_stats(c.head(), c.q.data() + first * c.hd, c.hd, first, count, o.data(),
                                 c.hd, stats.data());
    for (int64_t t = 0; t < count; ++t)
      rows[static_cast<size_t>(t)] = cpu::detail::attention_chunk<cpu::F32Elems>(
          c.head(), c.q.data() + (first + t) * c.hd, first + t, 0, first + t + 1,
          o_rows.data() + t * c.hd);
    EXPECT_LT(max_relative(o, o_rows), 1e-5) << "count " << count;
    for (size_t t = 0; t < stats.size(); ++t) {
      EXPECT_NEAR(stats[t].max_score, rows[t].max_score, 1e-5f) << "count " << count << " " << t;
      EXPECT_NEAR(stats[t].sum, rows[t].sum, 1e-5f * rows[t].sum) << "count " << count << " " << t;
    }
  }
}

TEST(AttentionBackwardKernel, MaskedHeadsAndOddHeadSizesTakeTheRowKernel) {
  for (const auto& [hd, masked] : {std::pair<int64_t, bool>{16, true}, {8, false}, {24, false}}) {
    const HeadCase c(21, hd, 7, masked);
    const auto dispatched = c.run(cpu::attention_backward_head);
    const auto rows = c.run(cpu::attention_backward_head_rows);
    EXPECT_EQ(dispatched.dq, rows.dq) << "head_dim " << hd;
    EXPECT_EQ(dispatched.dk, rows.dk) << "head_dim " << hd;
    EXPECT_EQ(dispatched.dv, rows.dv) << "head_dim " << hd;
  }
}

}  // namespace
}  // namespace tessera::test
