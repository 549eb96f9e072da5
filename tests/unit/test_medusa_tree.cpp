// MedusaTree: paths in, nodes in depth order, masks of ancestors, the built-in trees, and every
// malformed text refused with where it is wrong.
#include <tessera/decoding/medusa_tree.hpp>
#include <tessera/decoding/medusa_tree_choice.hpp>

#include <gtest/gtest.h>

#include <string>

namespace tessera::decoding {
namespace {

std::string error_of(const std::string& text) {
  try {
    parse_medusa_tree(text);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "<no exception>";
}

TEST(MedusaTree, ThePapersTreeHasItsShape) {
  const MedusaTree t = parse_medusa_tree("mc_sim_7b_63");
  EXPECT_EQ(t.size(), 64);
  EXPECT_EQ(t.depth(), 4);
  EXPECT_EQ(t.nodes_per_depth(), (std::vector<int32_t>{1, 10, 28, 23, 2}));
  EXPECT_EQ(t.leaves(), 42);
  EXPECT_EQ(t.ranks_per_head(), (std::vector<int32_t>{10, 10, 10, 2}));
}

TEST(MedusaTree, NodesComeInDepthOrderWithTheirParents) {
  const MedusaTree t = parse_medusa_tree("[[1, 0], [0], [1], [0, 0], [0, 0, 3]]");
  ASSERT_EQ(t.size(), 6);
  // Sorted: [0], [1], [0,0], [1,0], [0,0,3].
  EXPECT_EQ(t.node(1).rank, 0);
  EXPECT_EQ(t.node(2).rank, 1);
  EXPECT_EQ(t.node(3).parent, 1);
  EXPECT_EQ(t.node(4).parent, 2);
  EXPECT_EQ(t.node(5).parent, 3);
  EXPECT_EQ(t.node(5).rank, 3);
  EXPECT_EQ(t.node(5).depth, 3);
  for (int32_t i = 1; i < t.size(); ++i) EXPECT_LT(t.node(i).parent, i);
  EXPECT_EQ(t.text(), "[[0], [1], [0, 0], [1, 0], [0, 0, 3]]");
  EXPECT_EQ(parse_medusa_tree(t.text()).text(), t.text());
}

TEST(MedusaTree, TheMaskShowsEachNodeItsAncestorsAndItself) {
  const MedusaTree t = parse_medusa_tree("[[0], [1], [0, 0], [1, 0]]");
  const std::vector<uint8_t> m = t.mask();
  const std::vector<uint8_t> want = {
      1, 0, 0, 0, 0,  // root
      1, 1, 0, 0, 0,  // [0]
      1, 0, 1, 0, 0,  // [1]
      1, 1, 0, 1, 0,  // [0, 0]
      1, 0, 1, 0, 1,  // [1, 0]
  };
  EXPECT_EQ(m, want);
}

TEST(MedusaTree, PrefixesAndDepthCutsStayTrees) {
  const MedusaTree t = parse_medusa_tree("mc_sim_7b_63");
  for (int32_t n = 1; n <= t.size(); ++n) {
    const MedusaTree p = t.prefix(n);
    EXPECT_EQ(p.size(), n);
    EXPECT_NO_THROW(parse_medusa_tree(p.text())) << "prefix of " << n;
  }
  EXPECT_EQ(t.cut_depth(2).size(), 1 + 10 + 28);
  EXPECT_EQ(t.cut_depth(0).size(), 1);
  EXPECT_EQ(parse_medusa_tree("chain-3").text(), "[[0], [0, 0], [0, 0, 0]]");
  EXPECT_EQ(parse_medusa_tree("none").size(), 1);
  EXPECT_EQ(parse_medusa_tree("[]").size(), 1);
}

TEST(MedusaTree, MalformedTreesAreRefusedSayingWhere) {
  EXPECT_NE(error_of("[[0], [0, 0, 0]]").find("path [0, 0, 0] has no parent [0, 0]"),
            std::string::npos);
  EXPECT_NE(error_of("[[0], [0]]").find("path [0] is listed twice"), std::string::npos);
  EXPECT_NE(error_of("[[0], [x]]").find("at character 8"), std::string::npos);
  EXPECT_NE(error_of("[[0]] extra").find("unexpected text after the list"), std::string::npos);
  EXPECT_NE(error_of("[[0], []]").find("expected an index"), std::string::npos);
  EXPECT_NE(error_of("[[0]").find("expected ']'"), std::string::npos);
  EXPECT_NE(error_of("chain-").find("expected chain-N"), std::string::npos);
  EXPECT_NE(error_of("mc_sim").find("expected '['"), std::string::npos);
  EXPECT_NE(error_of("[[12345]]").find("expected ']' at character 7"), std::string::npos);
}

}  // namespace
}  // namespace tessera::decoding

namespace tessera::decoding {
namespace {

TEST(MedusaTreeChoice, NodesComeBestFirstAndTheFastestTreeWins) {
  // Head 0 is right half the time at rank 0, a quarter at rank 1; head 1 a fifth at rank 0.
  const std::vector<std::vector<double>> acc = {{0.5, 0.25, 0.1}, {0.2, 0.1}};
  const auto paths = medusa_best_paths(acc, 5);
  ASSERT_EQ(paths.size(), 5u);
  EXPECT_EQ(paths[0].first, (std::vector<int32_t>{0}));
  EXPECT_DOUBLE_EQ(paths[0].second, 0.5);
  EXPECT_EQ(paths[1].first, (std::vector<int32_t>{1}));
  EXPECT_EQ(paths[2].first, (std::vector<int32_t>{0, 0}));  // 0.1, tied with [2]: [0, 0] < [2]
  EXPECT_DOUBLE_EQ(paths[2].second, 0.1);
  EXPECT_EQ(paths[3].first, (std::vector<int32_t>{2}));
  // Free verification: the biggest tree; verification as dear as a step per token: none.
  const MedusaTreeChoice flat = choose_medusa_tree(acc, std::vector<double>(6, 1.0));
  EXPECT_EQ(flat.tree.size(), 6);
  EXPECT_NEAR(flat.expected, 1 + 0.5 + 0.25 + 0.1 + 0.1 + 0.05, 1e-12);
  EXPECT_NEAR(flat.speedup, flat.expected, 1e-12);
  const MedusaTreeChoice dear = choose_medusa_tree(acc, {1.0, 2.0, 3.0, 4.0});
  EXPECT_EQ(dear.tree.size(), 1);
  EXPECT_DOUBLE_EQ(dear.speedup, 1.0);
  // Two tokens cost 1.2 steps: 1.5 / 1.2 = 1.25x beats 1.75 / 1.6 and the rest.
  const MedusaTreeChoice mid = choose_medusa_tree(acc, {1.0, 1.2, 1.6, 2.0});
  EXPECT_EQ(mid.tree.text(), "[[0]]");
  EXPECT_NEAR(mid.speedup, 1.25, 1e-12);
  EXPECT_THROW(choose_medusa_tree(acc, {}), std::invalid_argument);
  EXPECT_THROW(choose_medusa_tree(acc, {1.0, 0.0}), std::invalid_argument);
}

}  // namespace
}  // namespace tessera::decoding
