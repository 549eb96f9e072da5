// The Puzzle report's accuracy-versus-throughput plot: every solution the search found at its
// predicted decode speedup (x) and predicted KL (y, the summed replace-1-block KL), the
// frontier's solutions joined by a line from the parent (speedup 1, KL 0), and each evaluated
// child at what was measured, joined by a dashed line to its prediction. A self-contained SVG
// written by hand.
//
// Its structure is meant to be read back by tools and tests: every point is one element
// (circle, rect or polygon) with class "solution", "measured" or "parent" and data-label,
// data-group, data-speedup, data-kl (and data-provider where known); the line is
// <polyline class="frontier-line">, a prediction's link <line class="prediction-link">, and
// each label a <text class="point-label"> (points that coincide share one label).
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace tessera::puzzle {

enum class FrontierGroup {
  kMain,      // the main solution
  kCompared,  // the same problem given to another provider
  kFrontier,  // the main provider at another decode speedup
  kDiverse,   // other solutions at the main budget
  kMeasured,  // an evaluated child, as measured
};

// "main", "compared", "frontier", "diverse", "measured": data-group's value.
const char* to_string(FrontierGroup group);

struct FrontierPoint {
  std::string label;
  FrontierGroup group = FrontierGroup::kCompared;
  double speedup = 1;  // decode speedup against the parent
  double kl = 0;
  std::string provider;  // the search provider; may be empty
  // A measured child: where its solution was predicted, as (speedup, kl).
  std::optional<std::pair<double, double>> predicted;
};

struct FrontierPlotOptions {
  std::string title = "Accuracy against throughput";
  std::string x_label = "decode speedup against the parent";
  std::string y_label = "KL to the parent";
  int width = 900;
  int height = 480;
};

// Points that are not finite are left out (and counted in the root's data-left-out).
std::string frontier_plot_svg(const std::vector<FrontierPoint>& points,
                              const FrontierPlotOptions& options = {});

}  // namespace tessera::puzzle
