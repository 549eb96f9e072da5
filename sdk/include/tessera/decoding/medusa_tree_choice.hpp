// Choosing a Medusa tree for a machine: the tree that maximises expected tokens per second,
// not per step. Header-only, so that a search strategy or a tool can use it.
//
// Inputs:
//   accuracy[k][r]  the probability that head k's candidate of rank r is the base model's
//                   choice (measured on held-out text; not cumulative);
//   step_seconds[n - 1]  the time of one decoding step that verifies n tokens (the root and
//                   n - 1 nodes), heads included; step_seconds[0] is plain greedy's step.
// A node's acceptance is estimated as the product of its path's accuracies (heads taken as
// independent). Nodes are added best first (Medusa's construction): a tree of n tokens holds
// the n - 1 likeliest paths, and its expected tokens per step are 1 + the sum of their
// probabilities. The tree chosen maximises that over step_seconds[n - 1].
#pragma once

#include <tessera/decoding/medusa_tree.hpp>

#include <cstdint>
#include <queue>
#include <stdexcept>
#include <vector>

namespace tessera::decoding {

struct MedusaTreeChoice {
  MedusaTree tree;
  std::vector<double> expected_tokens;    // [n - 1]: per step with the best tree of n tokens
  std::vector<double> tokens_per_second;  // [n - 1]: expected_tokens / step_seconds
  double expected = 1.0;                  // of the chosen tree
  double speedup = 1.0;                   // predicted, over plain greedy (step_seconds[0])
};

// The best-first order of nodes for these accuracies, up to max_nodes paths (ties: the
// lexicographically smaller path first).
inline std::vector<std::pair<std::vector<int32_t>, double>> medusa_best_paths(
    const std::vector<std::vector<double>>& accuracy, int32_t max_nodes) {
  struct Item {
    double p;
    std::vector<int32_t> path;
    bool operator<(const Item& o) const { return p < o.p || (p == o.p && path > o.path); }
  };
  std::vector<std::pair<std::vector<int32_t>, double>> out;
  if (accuracy.empty() || accuracy[0].empty()) return out;
  const auto acc = [&](size_t head, size_t rank) {
    return head < accuracy.size() && rank < accuracy[head].size() ? accuracy[head][rank] : 0.0;
  };
  std::priority_queue<Item> frontier;
  frontier.push({acc(0, 0), {0}});
  while (!frontier.empty() && static_cast<int32_t>(out.size()) < max_nodes) {
    Item it = frontier.top();
    frontier.pop();
    if (it.p <= 0) break;
    const size_t d = it.path.size() - 1;  // head of this node
    const auto r = static_cast<size_t>(it.path.back());
    const double parent = acc(d, r) > 0 ? it.p / acc(d, r) : 0.0;
    // Its next sibling, and its first child.
    std::vector<int32_t> sibling = it.path;
    ++sibling.back();
    frontier.push({parent * acc(d, r + 1), sibling});
    std::vector<int32_t> child = it.path;
    child.push_back(0);
    frontier.push({it.p * acc(d + 1, 0), child});
    out.emplace_back(std::move(it.path), it.p);
  }
  return out;
}

inline MedusaTreeChoice choose_medusa_tree(const std::vector<std::vector<double>>& accuracy,
                                           const std::vector<double>& step_seconds) {
  if (step_seconds.empty()) throw std::invalid_argument("medusa tree choice: no step times");
  for (double s : step_seconds)
    if (!(s > 0)) throw std::invalid_argument("medusa tree choice: a step time is not > 0");
  const auto max_tokens = static_cast<int32_t>(step_seconds.size());
  const auto paths = medusa_best_paths(accuracy, max_tokens - 1);
  MedusaTreeChoice c;
  double expected = 1.0;
  size_t best = 0;
  for (int32_t n = 1; n <= max_tokens; ++n) {
    if (n > 1) {
      if (static_cast<size_t>(n - 2) >= paths.size()) break;
      expected += paths[static_cast<size_t>(n - 2)].second;
    }
    c.expected_tokens.push_back(expected);
    c.tokens_per_second.push_back(expected / step_seconds[static_cast<size_t>(n - 1)]);
    if (c.tokens_per_second.back() > c.tokens_per_second[best])
      best = c.tokens_per_second.size() - 1;
  }
  std::vector<std::vector<int32_t>> chosen;
  for (size_t i = 0; i < best; ++i) chosen.push_back(paths[i].first);
  c.tree = MedusaTree(chosen);
  c.expected = c.expected_tokens[best];
  c.speedup = c.tokens_per_second[best] * step_seconds[0];
  return c;
}

}  // namespace tessera::decoding
