// MedusaTree: paths in, nodes in depth order, masks of ancestors, the built-in trees, and every
// malformed text refused with where it is wrong.
#include <tessera/decoding/medusa_tree.hpp>

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
