// Comparing a Model with golden greedy runs recorded by an independent implementation
// (tests/golden/models/*.json, written by the scripts beside them).
//
// Each golden case holds prompt ids, exactly 32 greedy tokens, the top-1 minus top-2 logit
// margin at each step, and the top-5 logits at steps 0..8 (step 0: the last prompt position;
// step k: the position of generated token k). The check:
//  - tokens: Generator (greedy decoder plugin, KV cache) must give the golden tokens. A
//    difference is allowed only at a step whose golden margin is below the logit tolerance (a
//    near-tie either side may win); the tokens after it are not compared (the contexts differ).
//  - logits: the prompt is prefilled in one batch, then the golden tokens are fed one at a time
//    (the decode path); at every recorded step each golden top-5 id's logit must be within the
//    tolerance, and no other id may beat the golden 5th value by more than the tolerance.
#pragma once

#include <gtest/gtest.h>
#include <tessera/engine/generator.hpp>
#include <tessera/engine/model.hpp>
#include <tessera/engine/plugin_registry.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace tessera::test {

struct GoldenStep {
  std::vector<int32_t> ids;  // top-5, largest first
  std::vector<double> logits;
};

struct GoldenCase {
  std::string name;
  std::vector<int32_t> prompt;
  std::vector<int32_t> greedy;
  std::vector<double> margins;
  std::vector<GoldenStep> top5;
};

inline nlohmann::json read_golden_json(const std::filesystem::path& path) {
  std::ifstream file(path);
  if (!file) throw std::runtime_error("cannot open " + path.string());
  return nlohmann::json::parse(file);
}

inline GoldenCase golden_case_from_json(const nlohmann::json& j) {
  GoldenCase c;
  c.name = j.at("name").get<std::string>();
  c.prompt = j.at("ids").get<std::vector<int32_t>>();
  c.greedy = j.at("greedy").get<std::vector<int32_t>>();
  c.margins = j.at("margins").get<std::vector<double>>();
  for (const auto& step : j.at("top5")) {
    c.top5.push_back(
        {step.at("ids").get<std::vector<int32_t>>(), step.at("logits").get<std::vector<double>>()});
  }
  return c;
}

// What a run measured, for the summary line and the tolerance's justification.
struct GoldenStats {
  double max_logit_diff = 0;
  int64_t logits_compared = 0;
  int tokens_compared = 0;  // up to the first allowed divergence of each case
  int cases_completed = 0;
  std::vector<std::string> allowed_divergences;
};

inline std::string describe_ids(const std::vector<int32_t>& ids, size_t first, size_t count) {
  std::ostringstream out;
  for (size_t i = first; i < std::min(ids.size(), first + count); ++i)
    out << (i > first ? "," : "") << ids[i];
  return out.str();
}

// One step's logits against the golden top-5.
inline void expect_step_matches(const float* logits, int32_t vocab, const GoldenStep& golden,
                                double golden_margin, double tolerance, const std::string& where,
                                GoldenStats& stats) {
  for (size_t k = 0; k < golden.ids.size(); ++k) {
    const int32_t id = golden.ids[k];
    ASSERT_TRUE(id >= 0 && id < vocab) << where << ": golden id " << id;
    const double diff = std::fabs(static_cast<double>(logits[id]) - golden.logits[k]);
    stats.max_logit_diff = std::max(stats.max_logit_diff, diff);
    ++stats.logits_compared;
    EXPECT_LE(diff, tolerance) << where << ": logit of token " << id << " (golden rank " << k + 1
                               << ") is " << logits[id] << ", golden " << golden.logits[k];
  }
  const double fifth = golden.logits.back();
  for (int32_t id = 0; id < vocab; ++id) {
    if (std::find(golden.ids.begin(), golden.ids.end(), id) != golden.ids.end()) continue;
    EXPECT_LE(logits[id], fifth + tolerance)
        << where << ": token " << id << " has logit " << logits[id]
        << ", above the golden 5th-ranked logit " << fifth << " by more than the tolerance";
  }
  const int32_t top = static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
  if (top != golden.ids[0]) {
    EXPECT_LT(golden_margin, tolerance)
        << where << ": top-1 is token " << top << ", golden " << golden.ids[0]
        << " with a margin of " << golden_margin << " (above the tolerance, so not a near-tie)";
  }
}

// Runs one golden case on `model` (slot 0) and records what it measured in `stats`.
inline void expect_matches_golden(Model& model, const PluginRegistry& registry,
                                  const GoldenCase& golden, double tolerance, GoldenStats& stats) {
  SCOPED_TRACE("golden case '" + golden.name + "'");
  ASSERT_FALSE(golden.prompt.empty());
  ASSERT_EQ(golden.margins.size(), golden.greedy.size());
  ASSERT_LE(golden.top5.size(), golden.greedy.size() + 1);
  const int32_t vocab = model.vocab();

  // Greedy generation through the decoder plugin.
  Generator generator(model, registry);
  GenerateOptions options;
  options.max_new_tokens = static_cast<int32_t>(golden.greedy.size());
  options.decoder.kind = "greedy";
  const GenerateResult result = generator.generate(golden.prompt, options);
  ASSERT_EQ(result.tokens.size(), golden.greedy.size())
      << "stopped early (an end token the golden run did not stop on?)";
  for (size_t s = 0; s < golden.greedy.size(); ++s) {
    ++stats.tokens_compared;
    if (result.tokens[s] == golden.greedy[s]) continue;
    const std::string what = golden.name + " step " + std::to_string(s) + ": Tessera " +
                             std::to_string(result.tokens[s]) + ", golden " +
                             std::to_string(golden.greedy[s]) + ", golden margin " +
                             std::to_string(golden.margins[s]);
    EXPECT_LT(golden.margins[s], tolerance)
        << "greedy tokens differ at " << what << "; the margin is not below the logit tolerance "
        << tolerance << ", so this is not a near-tie. Tessera continued "
        << describe_ids(result.tokens, s, 8) << ", golden " << describe_ids(golden.greedy, s, 8);
    // A near-tie: either token is right, and the rest follows a different context.
    if (golden.margins[s] < tolerance) stats.allowed_divergences.push_back(what);
    break;
  }

  // Logits, teacher-forced with the golden tokens.
  model.reset(0);
  std::vector<float> logits(static_cast<size_t>(vocab));
  ForwardBatch batch;
  batch.slots = {0};
  batch.offsets = {0, static_cast<int32_t>(golden.prompt.size())};
  batch.tokens = golden.prompt;
  batch.last_only = true;
  model.forward(batch, logits.data(), nullptr);
  for (size_t step = 0; step < golden.top5.size(); ++step) {
    if (step > 0) {
      batch.offsets = {0, 1};
      batch.tokens = {golden.greedy[step - 1]};
      model.forward(batch, logits.data(), nullptr);
    }
    ASSERT_NO_FATAL_FAILURE(
        expect_step_matches(logits.data(), vocab, golden.top5[step], golden.margins[step],
                            tolerance, golden.name + " step " + std::to_string(step), stats));
  }
  ++stats.cases_completed;
}

inline void print_golden_summary(const std::string& what, const GoldenStats& stats,
                                 double tolerance) {
  std::printf("%s: %d tokens, %lld logits compared; max |logit diff| %.3g (tolerance %.3g)\n",
              what.c_str(), stats.tokens_compared, static_cast<long long>(stats.logits_compared),
              stats.max_logit_diff, tolerance);
  for (const auto& d : stats.allowed_divergences)
    std::printf("  allowed near-tie divergence: %s\n", d.c_str());
}

}  // namespace tessera::test
