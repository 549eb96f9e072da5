// The end-of-run report: the loss curves (train and held-out against step) as a self-contained
// SVG written by hand, and an HTML page that embeds it with the run's config and final figures.
//
// The SVG's structure is meant to be read back by tools and tests: each curve is a
// <g class="curve" data-name="..." data-points="F" data-nonfinite="K"> holding its finite
// points as <polyline class="line"> runs (a run of one point is a <circle class="lone">), an
// optional <circle class="marker"> per finite point, and one <path class="nonfinite"> per
// point that cannot be drawn (NaN or infinite loss, or a loss <= 0 on a log scale): an "x" at
// the top edge (the bottom edge for -inf and, on a log scale, for losses <= 0), titled
// "step N: loss nan".
#pragma once

#include <string>
#include <vector>

namespace tessera {

struct LossCurve {
  std::string name;   // the legend's text, and data-name
  std::string color;  // any SVG colour; empty: one of a fixed palette by position
  std::vector<std::pair<double, double>> points;  // (step, loss), in step order
  bool markers = false;                           // a dot on every point (held-out losses)
};

struct PlotOptions {
  std::string title = "Loss";
  bool log_scale = false;  // logarithmic loss axis
  int width = 760;
  int height = 420;
  std::string x_label = "step";
  std::string y_label = "loss";
};

std::string loss_plot_svg(const std::vector<LossCurve>& curves, const PlotOptions& options = {});

struct ReportFigure {
  std::string name;
  std::string value;
};

struct ReportPage {
  std::string title;
  std::vector<ReportFigure> figures;  // the final figures, in order
  std::vector<std::string> plots;     // SVG documents, embedded in order
  std::string config_name;            // the config's file name
  std::string config_text;            // shown as written
};

// A self-contained HTML page (no scripts, no external files) that is also well-formed XML.
std::string report_html(const ReportPage& page);

// Escapes &, <, >, " and ' for XML and HTML text and attributes.
std::string xml_escape(const std::string& text);

}  // namespace tessera
