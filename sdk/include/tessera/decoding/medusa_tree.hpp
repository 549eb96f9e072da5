// A Medusa candidate tree: a list of paths of top-k indices ("medusa_choices"). Path
// [i0, i1, ..., id-1] is the node at depth d that takes head 0's candidate i0 after the root,
// head 1's candidate i1 after that, and so on; the root (depth 0) is the base model's own next
// token. Header-only: the decoder plugin and the tree search share it.
//
//   MedusaTree t = parse_medusa_tree("[[0], [0, 0], [1]]");
//   t.size();          // 4 tokens: the root and three nodes
//   t.mask();          // [4][4]: node i sees its ancestors and itself
//
// Nodes are kept in depth order (then by path), so every node's parent comes before it and
// any prefix of the node list is a tree too (a pass cut short keeps a valid tree).
#pragma once

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace tessera::decoding {

struct MedusaNode {
  int32_t parent = -1;  // index of the parent node; -1 for the root
  int32_t depth = 0;    // 0 for the root; a node at depth d reads head d - 1
  int32_t rank = 0;     // which of its head's candidates (0: the most likely)
};

class MedusaTree {
 public:
  MedusaTree() : nodes_{MedusaNode{}} {}  // the root alone

  // From paths in any order; each path's prefixes must be paths too.
  explicit MedusaTree(std::vector<std::vector<int32_t>> paths) {
    std::sort(paths.begin(), paths.end(), [](const auto& a, const auto& b) {
      return a.size() != b.size() ? a.size() < b.size() : a < b;
    });
    nodes_.assign(1, MedusaNode{});
    std::map<std::vector<int32_t>, int32_t> index;
    index[{}] = 0;
    for (const std::vector<int32_t>& p : paths) {
      if (p.empty()) throw std::invalid_argument("medusa tree: a path is empty");
      for (int32_t r : p)
        if (r < 0)
          throw std::invalid_argument("medusa tree: path " + path_text(p) +
                                      " holds a negative index");
      if (index.count(p) != 0)
        throw std::invalid_argument("medusa tree: path " + path_text(p) + " is listed twice");
      const std::vector<int32_t> parent(p.begin(), p.end() - 1);
      const auto it = index.find(parent);
      if (it == index.end())
        throw std::invalid_argument("medusa tree: path " + path_text(p) + " has no parent " +
                                    path_text(parent) + " in the tree");
      index[p] = static_cast<int32_t>(nodes_.size());
      nodes_.push_back({it->second, static_cast<int32_t>(p.size()), p.back()});
    }
    paths_ = std::move(paths);
  }

  int32_t size() const { return static_cast<int32_t>(nodes_.size()); }
  const MedusaNode& node(int32_t i) const { return nodes_[static_cast<size_t>(i)]; }
  const std::vector<std::vector<int32_t>>& paths() const { return paths_; }
  int32_t depth() const { return nodes_.back().depth; }
  // Candidates each head must offer: the largest rank at each depth + 1 (index d - 1).
  std::vector<int32_t> ranks_per_head() const {
    std::vector<int32_t> r(static_cast<size_t>(depth()), 0);
    for (const MedusaNode& n : nodes_)
      if (n.depth > 0)
        r[static_cast<size_t>(n.depth - 1)] =
            std::max(r[static_cast<size_t>(n.depth - 1)], n.rank + 1);
    return r;
  }
  // Nodes per depth, the root's depth 0 included.
  std::vector<int32_t> nodes_per_depth() const {
    std::vector<int32_t> c(static_cast<size_t>(depth() + 1), 0);
    for (const MedusaNode& n : nodes_) ++c[static_cast<size_t>(n.depth)];
    return c;
  }
  int32_t leaves() const {
    std::vector<bool> inner(nodes_.size(), false);
    for (const MedusaNode& n : nodes_)
      if (n.parent >= 0) inner[static_cast<size_t>(n.parent)] = true;
    return static_cast<int32_t>(std::count(inner.begin(), inner.end(), false));
  }
  // The first n nodes (n >= 1): still a tree, since parents come first.
  MedusaTree prefix(int32_t n) const {
    MedusaTree t = *this;
    n = std::clamp(n, 1, size());
    t.nodes_.resize(static_cast<size_t>(n));
    t.paths_.resize(static_cast<size_t>(n - 1));
    return t;
  }
  // The nodes at depth <= d.
  MedusaTree cut_depth(int32_t d) const {
    int32_t n = 0;
    while (n < size() && nodes_[static_cast<size_t>(n)].depth <= d) ++n;
    return prefix(n);
  }
  // Row i, column j: whether node i attends to node j (j is i or an ancestor of i).
  std::vector<uint8_t> mask() const {
    const auto n = static_cast<size_t>(size());
    std::vector<uint8_t> m(n * n, 0);
    for (size_t i = 0; i < n; ++i)
      for (int32_t j = static_cast<int32_t>(i); j >= 0; j = nodes_[static_cast<size_t>(j)].parent)
        m[i * n + static_cast<size_t>(j)] = 1;
    return m;
  }
  std::string text() const {
    std::string s = "[";
    for (size_t i = 0; i < paths_.size(); ++i) (s += i ? ", " : "") += path_text(paths_[i]);
    return s + "]";
  }

  static std::string path_text(const std::vector<int32_t>& p) {
    std::string s = "[";
    for (size_t i = 0; i < p.size(); ++i) (s += i ? ", " : "") += std::to_string(p[i]);
    return s + "]";
  }

 private:
  std::vector<MedusaNode> nodes_;
  std::vector<std::vector<int32_t>> paths_;  // sorted as the nodes after the root
};

// The tree of the Medusa paper for Vicuna-7B on an A100 ("mc_sim_7b_63"): 63 nodes and the root,
// depth 4, 10/28/23/2 nodes per depth.
inline const char* medusa_tree_mc_sim_7b_63() {
  return "[[0], [0, 0], [1], [0, 1], [2], [0, 0, 0], [1, 0], [0, 2], [3], [0, 3], [4], [0, 4], "
         "[2, 0], [0, 5], [0, 0, 1], [5], [0, 6], [6], [0, 7], [0, 1, 0], [1, 1], [7], [0, 8], "
         "[0, 0, 2], [3, 0], [0, 9], [8], [9], [1, 0, 0], [0, 2, 0], [1, 2], [0, 0, 3], [4, 0], "
         "[2, 1], [0, 0, 4], [0, 0, 5], [0, 0, 0, 0], [0, 1, 1], [0, 0, 6], [0, 3, 0], [5, 0], "
         "[1, 3], [0, 0, 7], [0, 0, 8], [0, 0, 9], [6, 0], [0, 4, 0], [1, 4], [7, 0], [0, 1, 2], "
         "[2, 0, 0], [3, 1], [2, 2], [8, 0], [0, 5, 0], [1, 5], [1, 0, 1], [0, 2, 1], [9, 0], "
         "[0, 6, 0], [0, 0, 0, 1], [1, 6], [0, 7, 0]]";
}

// A chain of the heads' top candidates: [[0], [0, 0], ...] of `depth` nodes.
inline std::string medusa_chain_text(int32_t depth) {
  std::string s = "[";
  for (int32_t d = 1; d <= depth; ++d) {
    s += d > 1 ? ", [" : "[";
    for (int32_t i = 0; i < d; ++i) s += i ? ", 0" : "0";
    s += "]";
  }
  return s + "]";
}

// Parses "[[0], [0, 0], [1]]" (JSON's nested lists of integers), or a name: "mc_sim_7b_63",
// "chain-N" (a chain of N nodes) or "none" (the root alone). Throws std::invalid_argument saying
// where the text is wrong.
inline MedusaTree parse_medusa_tree(std::string_view text) {
  if (text == "mc_sim_7b_63") return parse_medusa_tree(medusa_tree_mc_sim_7b_63());
  if (text == "none") return MedusaTree{};
  if (text.substr(0, 6) == "chain-") {
    const std::string n(text.substr(6));
    if (n.empty() || n.size() > 2 || !std::all_of(n.begin(), n.end(), [](char c) {
          return std::isdigit(static_cast<unsigned char>(c));
        }))
      throw std::invalid_argument("medusa tree '" + std::string(text) +
                                  "': expected chain-N with N from 1 to 99");
    return parse_medusa_tree(medusa_chain_text(std::stoi(n)));
  }
  size_t at = 0;
  const auto fail = [&](const std::string& what) -> void {
    throw std::invalid_argument("medusa tree: " + what + " at character " + std::to_string(at + 1) +
                                " of '" + std::string(text.substr(0, 80)) +
                                (text.size() > 80 ? "...'" : "'") +
                                "; expected a list of paths such as [[0], [0, 0], [1]], or "
                                "mc_sim_7b_63, chain-N, none");
  };
  const auto skip = [&] {
    while (at < text.size() && std::isspace(static_cast<unsigned char>(text[at]))) ++at;
  };
  const auto expect = [&](char c) {
    skip();
    if (at >= text.size() || text[at] != c) fail(std::string("expected '") + c + "'");
    ++at;
  };
  std::vector<std::vector<int32_t>> paths;
  expect('[');
  skip();
  if (at < text.size() && text[at] == ']') {
    ++at;
  } else {
    for (;;) {
      expect('[');
      std::vector<int32_t> path;
      for (;;) {
        skip();
        const size_t start = at;
        while (at < text.size() && std::isdigit(static_cast<unsigned char>(text[at])) &&
               at - start < 4)
          ++at;
        if (at == start) fail("expected an index (0 to 9999)");
        path.push_back(std::stoi(std::string(text.substr(start, at - start))));
        skip();
        if (at < text.size() && text[at] == ',') {
          ++at;
          continue;
        }
        expect(']');
        break;
      }
      paths.push_back(std::move(path));
      skip();
      if (at < text.size() && text[at] == ',') {
        ++at;
        continue;
      }
      expect(']');
      break;
    }
  }
  skip();
  if (at != text.size()) fail("unexpected text after the list");
  return MedusaTree(std::move(paths));
}

}  // namespace tessera::decoding
