// Tensor parallelism in one process: each rank is a thread with its own Model, and the
// ranks meet through the parallel-local provider. The CPU blocks split heads, FFN rows and
// linear columns by the communicator's rank and all-reduce their partial outputs, so the
// ranks must give the logits and greedy tokens of one unsharded model. Every rank holds
// the whole weight store (sharded loading comes later).
#include <gtest/gtest.h>

#include <tessera/engine/generator.hpp>
#include <tessera/engine/parallel.hpp>

#include <exception>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "model_fixtures.hpp"

namespace tessera::test {
namespace {

// Relative to the logits' largest magnitude: the ranks sum partial products in another
// order than one rank does.
constexpr float kRelativeTolerance = 1e-5f;

// A model whose heads, KV heads and widths three ranks can split: 6 query heads, KV heads
// 6, 1 and 3, FFN widths 96 and 40 (not a multiple of 3), linear blocks of hidden 48.
std::string three_way_manifest_text() {
  return R"([model]
name = "three-way"
hidden_size = 48
num_layers = 5
num_heads = 6
head_dim = 8
num_kv_heads = 3
intermediate_size = 96
vocab_size = 97
max_seq_len = 64
eos_token_id = 3

[weights]
format = "random"
seed = 5

[[layers]]
range = "0"
attention = { kind = "gqa", kv_heads = 6 }
ffn = { kind = "swiglu" }

[[layers]]
range = "1"
attention = { kind = "gqa", kv_heads = 1 }
ffn = { kind = "swiglu", intermediate_size = 40 }

[[layers]]
range = "2"
attention = { kind = "linear" }
ffn = { kind = "linear" }

[[layers]]
range = "3"
attention = { kind = "noop" }
ffn = { kind = "swiglu" }

[[layers]]
range = "4"
attention = { kind = "gqa" }
ffn = { kind = "noop" }
)";
}

std::string with_parallel(const std::string& text, int world, int rank, const std::string& group) {
  return text + "\n[runtime.parallel]\nkind = \"local\"\nworld = " + std::to_string(world) +
         "\nrank = " + std::to_string(rank) + "\ngroup = \"" + group + "\"\ntimeout_s = 30\n";
}

// What one rank (or the single model) computes: the prompt's logits, the logits of three
// more tokens fed one at a time, and a greedy continuation in a second slot.
struct RankOutput {
  std::vector<float> prompt_logits;
  std::vector<float> step_logits;
  std::vector<int32_t> greedy;
  int32_t kv_heads = 0;        // layer 0's, held by this rank
  int64_t ffn_parameters = 0;  // layer 0's, held by this rank
  std::string error;
};

const std::vector<int32_t> kPrompt{1, 17, 42, 9, 5, 0, 63, 88, 8, 23};

RankOutput run_model(const Manifest& manifest, const WeightStore& weights,
                     const ts_comm* comm = nullptr) {
  RankOutput out;
  ThreadPool pool(1);
  ModelOptions options;
  options.slots = 2;
  options.comm = comm;
  Model model(manifest, plugins(), weights, pool, options);
  out.kv_heads = model.kv_cache().layer_shape(0).kv_heads;
  out.ffn_parameters = model.ffn(0).info().parameters;
  out.prompt_logits = run_logits(model, one_sequence(kPrompt));
  for (int32_t token : {4, 44, 90}) {
    const std::vector<float> step = run_logits(model, one_sequence({token}));
    out.step_logits.insert(out.step_logits.end(), step.begin(), step.end());
  }
  Generator generator(model, plugins());
  GenerateOptions greedy;
  greedy.max_new_tokens = 12;
  out.greedy = generator.generate(kPrompt, greedy).tokens;
  return out;
}

// Runs `world` ranks, each on its own thread; make(rank) returns its output.
template <class Make>
std::vector<RankOutput> run_ranks(int world, Make&& make) {
  std::vector<RankOutput> outputs(static_cast<size_t>(world));
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      try {
        outputs[static_cast<size_t>(r)] = make(r);
      } catch (const std::exception& e) {
        outputs[static_cast<size_t>(r)].error = e.what();
      }
    });
  for (std::thread& t : threads) t.join();
  return outputs;
}

void expect_same_as_one_rank(const RankOutput& one, const std::vector<RankOutput>& ranks) {
  ASSERT_TRUE(one.error.empty()) << one.error;
  ASSERT_GT(max_abs(one.prompt_logits), 0.1f);
  ASSERT_FALSE(one.greedy.empty());
  for (size_t r = 0; r < ranks.size(); ++r) {
    const RankOutput& got = ranks[r];
    ASSERT_TRUE(got.error.empty()) << "rank " << r << ": " << got.error;
    // Each rank holds its part of the heads and FFN rows.
    EXPECT_EQ(got.kv_heads * static_cast<int32_t>(ranks.size()), one.kv_heads) << "rank " << r;
    EXPECT_EQ(got.ffn_parameters * static_cast<int64_t>(ranks.size()), one.ffn_parameters)
        << "rank " << r;
    EXPECT_LE(max_abs_diff(got.prompt_logits, one.prompt_logits),
              kRelativeTolerance * max_abs(one.prompt_logits))
        << "rank " << r;
    EXPECT_LE(max_abs_diff(got.step_logits, one.step_logits),
              kRelativeTolerance * max_abs(one.step_logits))
        << "rank " << r;
    EXPECT_EQ(got.greedy, one.greedy) << "rank " << r;
    // The ranks sum in the same order, so they agree bit for bit.
    EXPECT_EQ(got.prompt_logits, ranks[0].prompt_logits) << "rank " << r;
  }
}

TEST(ModelSharded, TwoRanksFromTheManifestEqualOneRank) {
  const Manifest single = hetero_manifest();
  const WeightStore weights = init_random_weights(single, plugins(), 7);
  const RankOutput one = run_model(single, weights);
  const std::vector<RankOutput> ranks = run_ranks(2, [&](int rank) {
    const Manifest m = parse_manifest(
        with_parallel(hetero_manifest_text(), 2, rank, "model-two-ranks"), "two.toml", ".");
    return run_model(m, weights);
  });
  expect_same_as_one_rank(one, ranks);
}

// The same through ModelOptions::comm, from a communicator the caller makes.
TEST(ModelSharded, ThreeRanksFromCallerCommunicatorsEqualOneRank) {
  const Manifest single = parse_manifest(three_way_manifest_text(), "three.toml", ".");
  const WeightStore weights = init_random_weights(single, plugins(), 5);
  const RankOutput one = run_model(single, weights);
  const std::vector<RankOutput> ranks = run_ranks(3, [&](int rank) {
    BlockSpec spec;
    spec.kind = "local";
    spec.params.set("world", int64_t{3});
    spec.params.set("rank", int64_t{rank});
    spec.params.set("group", std::string("model-three-ranks"));
    spec.params.set("timeout_s", 30.0);
    const std::unique_ptr<Parallel> parallel = make_parallel(plugins(), spec, nullptr);
    return run_model(single, weights, &parallel->comm());
  });
  expect_same_as_one_rank(one, ranks);
}

TEST(ModelSharded, ShapesThatCannotBeSplitAreRefusedOnEveryRank) {
  // Four query heads do not split over three ranks.
  const Manifest single = hetero_manifest();
  const WeightStore weights = init_random_weights(single, plugins(), 7);
  const std::vector<RankOutput> ranks = run_ranks(3, [&](int rank) {
    const Manifest m = parse_manifest(
        with_parallel(hetero_manifest_text(), 3, rank, "model-unsplittable"), "three.toml", ".");
    return run_model(m, weights);
  });
  for (const RankOutput& r : ranks)
    EXPECT_NE(r.error.find("cannot be split over 3 ranks"), std::string::npos) << r.error;
}

}  // namespace
}  // namespace tessera::test
