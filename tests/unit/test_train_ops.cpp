// The trainer's host operations and losses: the f32 implementations (train/ops.hpp,
// losses.hpp) against the f64 definitions (train/reference.hpp), and the f64 definitions'
// gradients against central finite differences of their own forward passes, for several
// shapes. Each test prints its largest errors ("[train-ops]" lines).
#include "model_fixtures.hpp"

#include <tessera/engine/rng.hpp>
#include <tessera/train/losses.hpp>
#include <tessera/train/ops.hpp>
#include <tessera/train/reference.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace tessera::test {
namespace {

namespace ref = train::reference;
using Vec = ref::Vec;

Vec random_vec(size_t n, uint64_t seed, double scale = 1.0, double offset = 0.0) {
  Rng rng(seed);
  Vec v(n);
  for (double& x : v) x = offset + scale * rng.normal();
  return v;
}

std::vector<float> to_f32(const Vec& v) {
  return {v.begin(), v.end()};
}

Vec to_f64(const std::vector<float>& v) {
  return {v.begin(), v.end()};
}

// The f32 rounding of v, back in f64: references fed exactly what the f32 code sees.
Vec rounded(const Vec& v) {
  return to_f64(to_f32(v));
}

// max |a - b| / max |b|.
double rel_error(const Vec& a, const Vec& b) {
  double diff = 0, scale = 1e-300;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::fabs(a[i] - b[i]));
    scale = std::max(scale, std::fabs(b[i]));
  }
  return diff / scale;
}

// Central differences of f at x, every element: (f(x + h e_i) - f(x - h e_i)) / 2h.
Vec finite_differences(const std::function<double(const Vec&)>& f, Vec x, double h = 1e-6) {
  Vec g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double keep = x[i];
    x[i] = keep + h;
    const double up = f(x);
    x[i] = keep - h;
    const double down = f(x);
    x[i] = keep;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

void report(const std::string& what, double fd_error, double f32_error) {
  std::printf("[train-ops] %-40s f64 vs finite differences %.2e, f32 vs f64 %.2e\n", what.c_str(),
              fd_error, f32_error);
}

struct Shape {
  int64_t rows, cols;
};
const Shape kShapes[] = {{1, 1}, {1, 5}, {3, 8}, {5, 17}, {4, 64}};

// --------------------------------------------------------------------- rmsnorm

TEST(TrainOps, RmsNormBackwardMatchesReferenceAndFiniteDifferences) {
  for (const Shape& s : kShapes) {
    // One column is x / |x| * w: a gradient of order eps / |x|, below what a relative error of
    // finite differences or of f32 can measure.
    if (s.cols == 1) continue;
    const auto n = static_cast<size_t>(s.rows * s.cols);
    const double eps = 1e-5;
    const Vec x = rounded(random_vec(n, 1 + n, 1.3, 0.2));
    const Vec w = rounded(random_vec(static_cast<size_t>(s.cols), 2 + n, 0.1, 1.0));
    const Vec gy = rounded(random_vec(n, 3 + n));
    // The reference's gradients against finite differences of sum(gy * rmsnorm(x, w)).
    Vec gx, gw;
    ref::rmsnorm_backward(x, w, eps, gy, s.rows, s.cols, gx, gw);
    const Vec fd_x = finite_differences(
        [&](const Vec& xv) { return dot(gy, ref::rmsnorm(xv, w, eps, s.rows, s.cols)); }, x);
    const Vec fd_w = finite_differences(
        [&](const Vec& wv) { return dot(gy, ref::rmsnorm(x, wv, eps, s.rows, s.cols)); }, w);
    const double fd_error = std::max(rel_error(gx, fd_x), rel_error(gw, fd_w));
    EXPECT_LT(fd_error, 1e-7) << s.rows << "x" << s.cols;

    // The f32 forward and backward against the reference.
    const std::vector<float> xf = to_f32(x), wf = to_f32(w), gyf = to_f32(gy);
    std::vector<float> y(n), inv(static_cast<size_t>(s.rows)), gxf(n),
        gwf(static_cast<size_t>(s.cols), 0.5f);
    train::rmsnorm_forward(test_pool().host(), xf.data(), wf.data(), eps, s.rows, s.cols, y.data(),
                           inv.data());
    const double forward_error = rel_error(to_f64(y), ref::rmsnorm(x, w, eps, s.rows, s.cols));
    EXPECT_LT(forward_error, 1e-6);
    train::rmsnorm_backward(test_pool().host(), xf.data(), wf.data(), inv.data(), gyf.data(),
                            s.rows, s.cols, gxf.data(), gwf.data());
    Vec gw_added = gw;
    for (double& v : gw_added) v += 0.5;  // grad_w is added to
    const double f32_error = std::max(rel_error(to_f64(gxf), gx), rel_error(to_f64(gwf), gw_added));
    EXPECT_LT(f32_error, 2e-5) << s.rows << "x" << s.cols;
    report("rmsnorm " + std::to_string(s.rows) + "x" + std::to_string(s.cols), fd_error, f32_error);

    // grad_x may replace grad_y in place.
    std::vector<float> in_place = gyf;
    train::rmsnorm_backward(test_pool().host(), xf.data(), wf.data(), inv.data(), in_place.data(),
                            s.rows, s.cols, in_place.data(), nullptr);
    EXPECT_EQ(in_place, gxf);
  }
}

TEST(TrainOps, RmsNormForwardIsTheModelsNorm) {
  // The same arithmetic as reference::rmsnorm's f32 definition the model is tested against.
  const Vec x = rounded(random_vec(3 * 16, 9)), w = rounded(random_vec(16, 10, 0.1, 1.0));
  std::vector<float> a(48), b(48);
  train::rmsnorm_forward(nullptr, to_f32(x).data(), to_f32(w).data(), 1e-5, 3, 16, a.data(),
                         nullptr);
  reference::rmsnorm(to_f32(x).data(), to_f32(w).data(), 1e-5, 3, 16, b.data());
  EXPECT_LT(max_abs_diff(a, b), 1e-6f);
}

// ------------------------------------------------------------------- embedding

TEST(TrainOps, EmbeddingBackwardScatterAddsRepeatedTokens) {
  const int64_t vocab = 7, dim = 5;
  const std::vector<int32_t> tokens = {3, 0, 3, 6, 3, 1};
  const auto n = static_cast<int64_t>(tokens.size());
  const Vec table = rounded(random_vec(static_cast<size_t>(vocab * dim), 11));
  const Vec gx = rounded(random_vec(static_cast<size_t>(n * dim), 12));
  const Vec g = ref::embedding_backward(tokens, gx, vocab, dim);
  // sum(gx * table[tokens]) is linear in the table: its differences are exact up to rounding.
  const Vec fd = finite_differences(
      [&](const Vec& t) {
        double s = 0;
        for (int64_t i = 0; i < n; ++i)
          for (int64_t c = 0; c < dim; ++c) s += gx[i * dim + c] * t[tokens[i] * dim + c];
        return s;
      },
      table);
  const double fd_error = rel_error(g, fd);
  EXPECT_LT(fd_error, 1e-8);
  std::vector<float> gf(static_cast<size_t>(vocab * dim), 0.0f);
  train::embedding_backward(tokens.data(), n, to_f32(gx).data(), dim, gf.data());
  const double f32_error = rel_error(to_f64(gf), g);
  EXPECT_LT(f32_error, 1e-6);
  // Rows of tokens not in the batch stay zero.
  for (int64_t c = 0; c < dim; ++c) EXPECT_EQ(gf[static_cast<size_t>(2 * dim + c)], 0.0f);
  report("embedding 6 tokens, vocab 7", fd_error, f32_error);
}

// --------------------------------------------------------------------- lm head

TEST(TrainOps, LmHeadBackwardMatchesReferenceAndFiniteDifferences) {
  const struct {
    int64_t n, vocab, hidden;
  } cases[] = {{1, 3, 2}, {4, 11, 8}, {9, 37, 16}, {17, 5, 33}};
  for (const auto& c : cases) {
    const Vec h = rounded(random_vec(static_cast<size_t>(c.n * c.hidden), 20 + c.n));
    const Vec w = rounded(random_vec(static_cast<size_t>(c.vocab * c.hidden), 21 + c.n, 0.3));
    const Vec gl = rounded(random_vec(static_cast<size_t>(c.n * c.vocab), 22 + c.n));
    Vec gh, gw;
    ref::lm_head_backward(h, w, gl, c.n, c.vocab, c.hidden, gh, gw);
    const Vec fd_h = finite_differences(
        [&](const Vec& hv) { return dot(gl, ref::lm_head(hv, w, c.n, c.vocab, c.hidden)); }, h);
    const Vec fd_w = finite_differences(
        [&](const Vec& wv) { return dot(gl, ref::lm_head(h, wv, c.n, c.vocab, c.hidden)); }, w);
    const double fd_error = std::max(rel_error(gh, fd_h), rel_error(gw, fd_w));
    EXPECT_LT(fd_error, 1e-8);

    const std::vector<float> hf = to_f32(h), wf = to_f32(w), glf = to_f32(gl);
    const cpu::MatrixView view = cpu::matrix_view(wf.data(), c.vocab, c.hidden);
    std::vector<float> logits(static_cast<size_t>(c.n * c.vocab));
    train::lm_head_forward(test_pool().host(), hf.data(), c.n, view, logits.data());
    EXPECT_LT(rel_error(to_f64(logits), ref::lm_head(h, w, c.n, c.vocab, c.hidden)), 1e-5);
    std::vector<float> ghf(static_cast<size_t>(c.n * c.hidden)), gwf(wf.size(), 0.0f);
    train::lm_head_backward(test_pool().host(), hf.data(), glf.data(), c.n, view, ghf.data(),
                            gwf.data());
    const double f32_error = std::max(rel_error(to_f64(ghf), gh), rel_error(to_f64(gwf), gw));
    EXPECT_LT(f32_error, 1e-5);
    report("lm head n " + std::to_string(c.n) + ", vocab " + std::to_string(c.vocab) + ", hidden " +
               std::to_string(c.hidden),
           fd_error, f32_error);
  }
}

TEST(TrainOps, LmHeadInBf16ReadsTheRoundedWeights) {
  const int64_t n = 3, vocab = 9, hidden = 8;
  const Vec h = rounded(random_vec(static_cast<size_t>(n * hidden), 30));
  const Vec w = random_vec(static_cast<size_t>(vocab * hidden), 31, 0.3);
  const Vec gl = rounded(random_vec(static_cast<size_t>(n * vocab), 32));
  std::vector<uint16_t> wb(w.size());
  const std::vector<float> wf = to_f32(w);
  convert(wf.data(), TS_F32, wb.data(), TS_BF16, static_cast<int64_t>(wb.size()));
  std::vector<float> w_rounded(w.size());
  convert(wb.data(), TS_BF16, w_rounded.data(), TS_F32, static_cast<int64_t>(wb.size()));
  Vec gh, gw;
  ref::lm_head_backward(h, to_f64(w_rounded), gl, n, vocab, hidden, gh, gw);
  const cpu::MatrixView view{wb.data(), TS_BF16, vocab, hidden, hidden};
  std::vector<float> ghf(static_cast<size_t>(n * hidden)), gwf(w.size(), 0.0f);
  train::lm_head_backward(nullptr, to_f32(h).data(), to_f32(gl).data(), n, view, ghf.data(),
                          gwf.data());
  EXPECT_LT(rel_error(to_f64(ghf), gh), 1e-5);
  EXPECT_LT(rel_error(to_f64(gwf), gw), 1e-5);
}

// Tied embeddings: the table E is both the embedding and the lm head, so its gradient is the
// scatter-add of the gradient at the embedding's output plus the lm head's weight gradient.
TEST(TrainOps, TiedEmbeddingGetsBothGradients) {
  const int64_t vocab = 6, dim = 4;
  const std::vector<int32_t> tokens = {2, 5, 2, 0};
  const auto n = static_cast<int64_t>(tokens.size());
  const Vec table = rounded(random_vec(static_cast<size_t>(vocab * dim), 40, 0.5));
  const Vec gl = rounded(random_vec(static_cast<size_t>(n * vocab), 41));
  // loss(E) = sum(gl * (E[tokens] E^T))
  auto loss = [&](const Vec& e) {
    Vec h(static_cast<size_t>(n * dim));
    for (int64_t t = 0; t < n; ++t)
      for (int64_t c = 0; c < dim; ++c) h[t * dim + c] = e[tokens[t] * dim + c];
    return dot(gl, ref::lm_head(h, e, n, vocab, dim));
  };
  const Vec fd = finite_differences(loss, table);
  // The f32 ops as the trainer composes them.
  const std::vector<float> ef = to_f32(table);
  std::vector<float> h(static_cast<size_t>(n * dim)), gh(h.size()), ge(ef.size(), 0.0f);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t c = 0; c < dim; ++c) h[t * dim + c] = ef[tokens[t] * dim + c];
  train::lm_head_backward(nullptr, h.data(), to_f32(gl).data(), n,
                          cpu::matrix_view(ef.data(), vocab, dim), gh.data(), ge.data());
  train::embedding_backward(tokens.data(), n, gh.data(), dim, ge.data());
  const double error = rel_error(to_f64(ge), fd);
  EXPECT_LT(error, 1e-5);
  report("tied embedding + lm head", error, error);
}

// x + f(x) with f = rmsnorm: the residual passes the gradient to both branches.
TEST(TrainOps, ResidualAddPassesTheGradientToBothBranches) {
  const int64_t rows = 3, dim = 6;
  const Vec x = rounded(random_vec(static_cast<size_t>(rows * dim), 50));
  const Vec w = rounded(random_vec(static_cast<size_t>(dim), 51, 0.1, 1.0));
  const Vec g = rounded(random_vec(x.size(), 52));
  auto loss = [&](const Vec& xv) {
    Vec out = ref::rmsnorm(xv, w, 1e-5, rows, dim);
    for (size_t i = 0; i < out.size(); ++i) out[i] += xv[i];
    return dot(g, out);
  };
  const Vec fd = finite_differences(loss, x);
  const std::vector<float> xf = to_f32(x), wf = to_f32(w);
  std::vector<float> y(xf.size()), inv(static_cast<size_t>(rows)), gx(xf.size());
  train::rmsnorm_forward(nullptr, xf.data(), wf.data(), 1e-5, rows, dim, y.data(), inv.data());
  std::vector<float> sum = xf;
  train::residual_add(sum.data(), y.data(), static_cast<int64_t>(sum.size()));
  train::rmsnorm_backward(nullptr, xf.data(), wf.data(), inv.data(), to_f32(g).data(), rows, dim,
                          gx.data(), nullptr);
  std::vector<float> total = to_f32(g);  // the residual path
  train::residual_add(total.data(), gx.data(), static_cast<int64_t>(total.size()));
  const double error = rel_error(to_f64(total), fd);
  EXPECT_LT(error, 1e-5);
  report("residual over rmsnorm", error, error);
}

// ---------------------------------------------------------------------- losses

TEST(TrainLosses, CrossEntropyMatchesReferenceAndFiniteDifferences) {
  const Shape shapes[] = {{1, 2}, {4, 7}, {9, 50}, {3, 300}};
  for (const Shape& s : shapes) {
    const Vec logits = rounded(random_vec(static_cast<size_t>(s.rows * s.cols), 60 + s.rows, 2.0));
    std::vector<int32_t> targets;
    Rng rng(61);
    for (int64_t r = 0; r < s.rows; ++r)
      targets.push_back(r % 3 == 2
                            ? train::kIgnoreIndex
                            : static_cast<int32_t>(rng.next() % static_cast<uint64_t>(s.cols)));
    Vec g;
    const double value =
        ref::cross_entropy(logits, s.rows, s.cols, targets, train::kIgnoreIndex, &g);
    const Vec fd = finite_differences(
        [&](const Vec& z) {
          return ref::cross_entropy(z, s.rows, s.cols, targets, train::kIgnoreIndex, nullptr);
        },
        logits);
    const double fd_error = rel_error(g, fd);
    EXPECT_LT(fd_error, 1e-7);

    std::vector<float> zf = to_f32(logits), gf(zf.size());
    int64_t counted = 0;
    const double scale = 0.25;
    const double f32_value =
        train::cross_entropy(test_pool().host(), zf.data(), s.rows, s.cols, targets.data(),
                             train::kIgnoreIndex, gf.data(), scale, &counted);
    EXPECT_NEAR(f32_value, value, 1e-6 * std::max(1.0, std::fabs(value)));
    EXPECT_EQ(counted, static_cast<int64_t>(std::count_if(targets.begin(), targets.end(),
                                                          [](int32_t t) { return t >= 0; })));
    Vec scaled = g;
    for (double& v : scaled) v *= scale;
    const double f32_error = rel_error(to_f64(gf), scaled);
    EXPECT_LT(f32_error, 1e-5);
    report("cross-entropy " + std::to_string(s.rows) + "x" + std::to_string(s.cols), fd_error,
           f32_error);
    // In place over the logits: the same gradient.
    train::cross_entropy(nullptr, zf.data(), s.rows, s.cols, targets.data(), train::kIgnoreIndex,
                         zf.data(), scale, nullptr);
    EXPECT_EQ(zf, gf);
  }
}

TEST(TrainLosses, CrossEntropyRejectsATargetOutsideTheVocabulary) {
  const std::vector<float> logits(6, 0.0f);
  const std::vector<int32_t> targets = {1, 3};
  const std::string message = error_of([&] {
    train::cross_entropy(nullptr, logits.data(), 2, 3, targets.data(), train::kIgnoreIndex, nullptr,
                         1.0, nullptr);
  });
  EXPECT_NE(message.find("target 3 of row 1 is outside [0, 3)"), std::string::npos) << message;
}

TEST(TrainLosses, KlDivergenceMatchesReferenceAndFiniteDifferences) {
  const Shape shapes[] = {{1, 2}, {3, 9}, {6, 40}};
  for (const Shape& s : shapes)
    for (const double t : {1.0, 2.0, 0.5}) {
      const auto n = static_cast<size_t>(s.rows * s.cols);
      const Vec student = rounded(random_vec(n, 70 + n, 1.5));
      const Vec teacher = rounded(random_vec(n, 71 + n, 1.5));
      Vec g;
      const double value = ref::kl_divergence(student, teacher, s.rows, s.cols, t, &g);
      const Vec fd = finite_differences(
          [&](const Vec& z) { return ref::kl_divergence(z, teacher, s.rows, s.cols, t, nullptr); },
          student);
      const double fd_error = rel_error(g, fd);
      EXPECT_LT(fd_error, 1e-6);
      EXPECT_GT(value, 0.0);
      EXPECT_NEAR(ref::kl_divergence(teacher, teacher, s.rows, s.cols, t, nullptr), 0.0, 1e-12);

      std::vector<float> sf = to_f32(student), gf(n);
      const double f32_value = train::kl_divergence(
          test_pool().host(), sf.data(), to_f32(teacher).data(), s.rows, s.cols, t, gf.data(), 1.0);
      EXPECT_NEAR(f32_value, value, 1e-6 * std::max(1.0, value));
      const double f32_error = rel_error(to_f64(gf), g);
      EXPECT_LT(f32_error, 1e-5);
      char what[64];
      std::snprintf(what, sizeof(what), "kl %lldx%lld T=%.1f", static_cast<long long>(s.rows),
                    static_cast<long long>(s.cols), t);
      report(what, fd_error, f32_error);
    }
}

TEST(TrainLosses, CosineDistanceMatchesReferenceAndFiniteDifferences) {
  const Shape shapes[] = {{1, 2}, {3, 8}, {7, 33}};
  for (const Shape& s : shapes) {
    const auto n = static_cast<size_t>(s.rows * s.cols);
    const Vec a = rounded(random_vec(n, 80 + n)), b = rounded(random_vec(n, 81 + n));
    Vec g;
    const double value = ref::cosine_distance(a, b, s.rows, s.cols, &g);
    const Vec fd = finite_differences(
        [&](const Vec& av) { return ref::cosine_distance(av, b, s.rows, s.cols, nullptr); }, a);
    const double fd_error = rel_error(g, fd);
    EXPECT_LT(fd_error, 1e-7);
    EXPECT_NEAR(ref::cosine_distance(a, a, s.rows, s.cols, nullptr), 0.0, 1e-12);
    std::vector<float> gf(n, 0.0f);
    const double f32_value = train::cosine_distance(
        test_pool().host(), to_f32(a).data(), to_f32(b).data(), s.rows, s.cols, gf.data(), 1.0);
    EXPECT_NEAR(f32_value, value, 1e-6 * std::max(1.0, value));
    const double f32_error = rel_error(to_f64(gf), g);
    EXPECT_LT(f32_error, 1e-5);
    report("cosine " + std::to_string(s.rows) + "x" + std::to_string(s.cols), fd_error, f32_error);
  }
}

TEST(TrainLosses, NormalisedMseMatchesReferenceAndFiniteDifferences) {
  for (const size_t n : {1u, 10u, 257u, 5000u}) {
    const Vec child = rounded(random_vec(n, 90 + n)), parent = rounded(random_vec(n, 91 + n));
    Vec g;
    const double value = ref::normalised_mse(child, parent, &g);
    const Vec fd = finite_differences(
        [&](const Vec& c) { return ref::normalised_mse(c, parent, nullptr); }, child);
    const double fd_error = rel_error(g, fd);
    EXPECT_LT(fd_error, 1e-6);  // a sum of n terms: rounding of order n * 1e-16 / h
    // MSE(parent, child) / MSE(parent, 0): a child of zeros scores exactly 1.
    EXPECT_NEAR(ref::normalised_mse(Vec(n, 0.0), parent, nullptr), 1.0, 1e-12);
    std::vector<float> gf(n);
    const double f32_value = train::normalised_mse(to_f32(child).data(), to_f32(parent).data(),
                                                   static_cast<int64_t>(n), gf.data(), 1.0);
    EXPECT_NEAR(f32_value, value, 1e-9 * std::max(1.0, value));
    const double f32_error = rel_error(to_f64(gf), g);
    EXPECT_LT(f32_error, 1e-6);
    report("normalised mse n " + std::to_string(n), fd_error, f32_error);
  }
  const std::vector<float> zeros(4, 0.0f), child(4, 1.0f);
  EXPECT_NE(error_of([&] {
              train::normalised_mse(child.data(), zeros.data(), 4, nullptr, 1.0);
            }).find("all zeros"),
            std::string::npos);
}

TEST(TrainLosses, SumsDoNotDependOnTheThreadCount) {
  const int64_t rows = 37, vocab = 29;
  const std::vector<float> z = to_f32(random_vec(static_cast<size_t>(rows * vocab), 100, 2.0));
  const std::vector<float> t = to_f32(random_vec(z.size(), 101, 2.0));
  std::vector<int32_t> targets(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r)
    targets[static_cast<size_t>(r)] = static_cast<int32_t>(r % vocab);
  ThreadPool one(1), three(3);
  for (ThreadPool* pool : {&one, &three}) {
    std::vector<float> g1(z.size()), g2(z.size());
    const double ce = train::cross_entropy(pool->host(), z.data(), rows, vocab, targets.data(),
                                           train::kIgnoreIndex, g1.data(), 1.0, nullptr);
    const double kl =
        train::kl_divergence(pool->host(), z.data(), t.data(), rows, vocab, 2.0, g2.data(), 1.0);
    static double first_ce = ce, first_kl = kl;
    static std::vector<float> first_g1 = g1, first_g2 = g2;
    EXPECT_EQ(ce, first_ce);
    EXPECT_EQ(kl, first_kl);
    EXPECT_EQ(g1, first_g1);
    EXPECT_EQ(g2, first_g2);
  }
}

}  // namespace
}  // namespace tessera::test
