// The accuracy-versus-throughput plot (SVG by hand); its structure is in frontier_plot.hpp.
#include <tessera/puzzle/frontier_plot.hpp>
#include <tessera/train/loss_plot.hpp>
#include <tessera/train/plot_axis.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace tessera::puzzle {

namespace {

constexpr const char* kText = "#24292f";
constexpr const char* kParentColor = "#57606a";
constexpr double kLabelFont = 11.0;
constexpr double kCharWidth = 6.4;  // a generous average for the 11 px sans-serif labels

const char* color_of(FrontierGroup group) {
  switch (group) {
    case FrontierGroup::kMain:
      return "#1f6feb";
    case FrontierGroup::kCompared:
      return "#bf8700";
    case FrontierGroup::kFrontier:
      return "#2da44e";
    case FrontierGroup::kDiverse:
      return "#8250df";
    case FrontierGroup::kMeasured:
      return "#d1242f";
  }
  return kText;
}

const char* legend_of(FrontierGroup group) {
  switch (group) {
    case FrontierGroup::kMain:
      return "main solution";
    case FrontierGroup::kCompared:
      return "other providers";
    case FrontierGroup::kFrontier:
      return "frontier";
    case FrontierGroup::kDiverse:
      return "diverse solutions";
    case FrontierGroup::kMeasured:
      return "measured (evaluate)";
  }
  return "";
}

std::string number_attribute(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.6g", v);
  return buffer;
}

std::string point_title(const std::string& label, const std::string& provider, double speedup,
                        double kl) {
  char figures[96];
  std::snprintf(figures, sizeof(figures), ": decode %.3fx, KL %.4f", speedup, kl);
  return label + (provider.empty() ? "" : " (" + provider + ")") + figures;
}

// A marker's shape, centred on (x, y): the group decides it, so that groups differ without
// colour too. `attributes` (class and data-*) and `title` go on the one element.
std::string marker_svg(const char* shape_of, double x, double y, const std::string& attributes,
                       const std::string& title, const char* fill) {
  std::ostringstream m;
  const std::string shape = shape_of;
  const std::string close = "><title>" + xml_escape(title) + "</title></";
  if (shape == "circle" || shape == "big-circle") {
    const double r = shape == "circle" ? 5.0 : 7.0;
    m << "<circle " << attributes << " cx=\"" << svg_number(x) << "\" cy=\"" << svg_number(y)
      << "\" r=\"" << svg_number(r) << "\" fill=\"" << fill
      << "\" stroke=\"#ffffff\" stroke-width=\"1.5\"" << close << "circle>\n";
  } else if (shape == "square") {
    m << "<rect " << attributes << " x=\"" << svg_number(x - 5) << "\" y=\"" << svg_number(y - 5)
      << "\" width=\"10\" height=\"10\" fill=\"" << fill
      << "\" stroke=\"#ffffff\" stroke-width=\"1\"" << close << "rect>\n";
  } else {
    // A triangle pointing up, or a diamond.
    const bool diamond = shape == "diamond";
    const double s = diamond ? 7.5 : 6.5;
    std::string points;
    if (diamond) {
      points = svg_number(x) + "," + svg_number(y - s) + " " + svg_number(x + s) + "," +
               svg_number(y) + " " + svg_number(x) + "," + svg_number(y + s) + " " +
               svg_number(x - s) + "," + svg_number(y);
    } else {
      points = svg_number(x) + "," + svg_number(y - s) + " " + svg_number(x + s) + "," +
               svg_number(y + s * 0.8) + " " + svg_number(x - s) + "," + svg_number(y + s * 0.8);
    }
    m << "<polygon " << attributes << " points=\"" << points << "\" fill=\"" << fill
      << "\" stroke=\"#ffffff\" stroke-width=\"1.2\"" << close << "polygon>\n";
  }
  return m.str();
}

const char* shape_of(FrontierGroup group) {
  switch (group) {
    case FrontierGroup::kMain:
      return "big-circle";
    case FrontierGroup::kCompared:
      return "square";
    case FrontierGroup::kFrontier:
      return "circle";
    case FrontierGroup::kDiverse:
      return "triangle";
    case FrontierGroup::kMeasured:
      return "diamond";
  }
  return "circle";
}

struct Box {
  double x0, y0, x1, y1;
  bool overlaps(const Box& o) const { return x0 < o.x1 && o.x0 < x1 && y0 < o.y1 && o.y0 < y1; }
};

// A label for the points drawn at one place.
struct LabelGroup {
  double x = 0, y = 0;  // the points' place
  std::string text;
  std::string color;
  int priority = 0;  // lower: placed first, nearest its point
  std::vector<size_t> members;
};

int priority_of(FrontierGroup group) {
  switch (group) {
    case FrontierGroup::kMain:
      return 0;
    case FrontierGroup::kMeasured:
      return 1;
    case FrontierGroup::kFrontier:
      return 2;
    case FrontierGroup::kCompared:
      return 3;
    case FrontierGroup::kDiverse:
      return 4;
  }
  return 5;
}

}  // namespace

const char* to_string(FrontierGroup group) {
  switch (group) {
    case FrontierGroup::kMain:
      return "main";
    case FrontierGroup::kCompared:
      return "compared";
    case FrontierGroup::kFrontier:
      return "frontier";
    case FrontierGroup::kDiverse:
      return "diverse";
    case FrontierGroup::kMeasured:
      return "measured";
  }
  return "?";
}

std::string frontier_plot_svg(const std::vector<FrontierPoint>& all,
                              const FrontierPlotOptions& options) {
  std::vector<FrontierPoint> points;
  for (const FrontierPoint& p : all)
    if (std::isfinite(p.speedup) && std::isfinite(p.kl)) points.push_back(p);
  const size_t left_out = all.size() - points.size();

  // Ranges: the parent (1, 0) and every point, with a margin.
  double x_lo = 1.0, x_hi = 1.0, y_hi = 0.0;
  for (const FrontierPoint& p : points) {
    x_lo = std::min(x_lo, p.speedup);
    x_hi = std::max(x_hi, p.speedup);
    y_hi = std::max(y_hi, p.kl);
    if (p.predicted && std::isfinite(p.predicted->first) && std::isfinite(p.predicted->second)) {
      x_lo = std::min(x_lo, p.predicted->first);
      x_hi = std::max(x_hi, p.predicted->first);
      y_hi = std::max(y_hi, p.predicted->second);
    }
  }
  if (x_hi - x_lo < 0.1) x_hi = x_lo + 0.1;
  const double x_pad = (x_hi - x_lo) * 0.06;
  x_lo -= x_pad;
  x_hi += x_pad;
  y_hi = y_hi > 0 ? y_hi * 1.08 : 1.0;
  const double y_lo = -y_hi * 0.03;

  const double width = std::max(options.width, 300);
  const double height = std::max(options.height, 200);
  const double left = 68.0, right = 24.0, top = 62.0, bottom = 50.0;
  const double plot_w = width - left - right;
  const double plot_h = height - top - bottom;
  auto px = [&](double x) { return left + (x - x_lo) / (x_hi - x_lo) * plot_w; };
  auto py = [&](double y) { return top + (1.0 - (y - y_lo) / (y_hi - y_lo)) * plot_h; };

  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"frontier-plot\" width=\"" << width
      << "\" height=\"" << height << "\" viewBox=\"0 0 " << width << " " << height
      << "\" font-family=\"sans-serif\" font-size=\"12\" data-points=\"" << points.size()
      << "\" data-left-out=\"" << left_out << "\">\n";
  svg << "<title>" << xml_escape(options.title) << "</title>\n";
  svg << "<rect width=\"" << width << "\" height=\"" << height << "\" fill=\"#ffffff\"/>\n";
  svg << "<text class=\"title\" x=\"" << svg_number(left) << "\" y=\"22\" font-size=\"15\">"
      << xml_escape(options.title) << "</text>\n";

  // Grid, ticks and axis labels.
  const std::vector<double> x_ticks = linear_ticks(x_lo, x_hi, 8.0);
  const std::vector<double> y_ticks = linear_ticks(std::max(0.0, y_lo), y_hi, 6.0);
  svg << "<g class=\"axes\" stroke=\"#d0d7de\" stroke-width=\"1\">\n";
  for (const double v : y_ticks)
    svg << "<line x1=\"" << svg_number(left) << "\" y1=\"" << svg_number(py(v)) << "\" x2=\""
        << svg_number(left + plot_w) << "\" y2=\"" << svg_number(py(v)) << "\"/>\n";
  for (const double v : x_ticks)
    svg << "<line x1=\"" << svg_number(px(v)) << "\" y1=\"" << svg_number(top) << "\" x2=\""
        << svg_number(px(v)) << "\" y2=\"" << svg_number(top + plot_h) << "\"/>\n";
  svg << "<rect x=\"" << svg_number(left) << "\" y=\"" << svg_number(top) << "\" width=\""
      << svg_number(plot_w) << "\" height=\"" << svg_number(plot_h)
      << "\" fill=\"none\" stroke=\"#57606a\"/>\n</g>\n";
  svg << "<g class=\"labels\" fill=\"" << kText << "\">\n";
  for (const double v : y_ticks)
    svg << "<text x=\"" << svg_number(left - 6) << "\" y=\"" << svg_number(py(v) + 4)
        << "\" text-anchor=\"end\">" << tick_text(v) << "</text>\n";
  for (const double v : x_ticks)
    svg << "<text x=\"" << svg_number(px(v)) << "\" y=\"" << svg_number(top + plot_h + 16)
        << "\" text-anchor=\"middle\">" << tick_text(v) << "x</text>\n";
  svg << "<text x=\"" << svg_number(left + plot_w / 2) << "\" y=\"" << svg_number(height - 12)
      << "\" text-anchor=\"middle\">" << xml_escape(options.x_label) << "</text>\n";
  svg << "<text x=\"16\" y=\"" << svg_number(top + plot_h / 2)
      << "\" text-anchor=\"middle\" transform=\"rotate(-90 16 " << svg_number(top + plot_h / 2)
      << ")\">" << xml_escape(options.y_label) << "</text>\n";
  if (points.empty())
    svg << "<text class=\"note\" x=\"" << svg_number(left + plot_w / 2) << "\" y=\""
        << svg_number(top + plot_h / 2) << "\" text-anchor=\"middle\">no solution to draw</text>\n";
  svg << "</g>\n";

  // The frontier: the parent, then the main solution and the frontier's by speedup.
  std::vector<std::pair<double, double>> line = {{1.0, 0.0}};
  for (const FrontierPoint& p : points)
    if (p.group == FrontierGroup::kMain || p.group == FrontierGroup::kFrontier)
      line.emplace_back(p.speedup, p.kl);
  std::sort(line.begin() + 1, line.end());
  if (line.size() > 1) {
    svg << "<polyline class=\"frontier-line\" fill=\"none\" stroke=\""
        << color_of(FrontierGroup::kFrontier)
        << "\" stroke-width=\"1.5\" stroke-opacity=\"0.7\" points=\"";
    for (size_t i = 0; i < line.size(); ++i)
      svg << (i ? " " : "") << svg_number(px(line[i].first)) << ","
          << svg_number(py(line[i].second));
    svg << "\"/>\n";
  }
  // Each measured child's link to what its solution was predicted to give.
  for (const FrontierPoint& p : points)
    if (p.predicted && std::isfinite(p.predicted->first) && std::isfinite(p.predicted->second))
      svg << "<line class=\"prediction-link\" data-label=\"" << xml_escape(p.label) << "\" x1=\""
          << svg_number(px(p.predicted->first)) << "\" y1=\"" << svg_number(py(p.predicted->second))
          << "\" x2=\"" << svg_number(px(p.speedup)) << "\" y2=\"" << svg_number(py(p.kl))
          << "\" stroke=\"" << color_of(FrontierGroup::kMeasured)
          << "\" stroke-width=\"1\" stroke-dasharray=\"4 3\"/>\n";

  // The markers: the parent, then by group so that the main solution and the measured
  // children are drawn last, on top.
  svg << "<g class=\"points\">\n";
  svg << marker_svg("circle", px(1.0), py(0.0),
                    "class=\"parent\" data-label=\"parent\" data-group=\"parent\" "
                    "data-speedup=\"1\" data-kl=\"0\"",
                    "the parent: decode 1x, KL 0", kParentColor);
  for (const FrontierGroup group :
       {FrontierGroup::kCompared, FrontierGroup::kDiverse, FrontierGroup::kFrontier,
        FrontierGroup::kMain, FrontierGroup::kMeasured})
    for (const FrontierPoint& p : points) {
      if (p.group != group) continue;
      std::string attributes =
          std::string("class=\"") + (group == FrontierGroup::kMeasured ? "measured" : "solution") +
          "\" data-label=\"" + xml_escape(p.label) + "\" data-group=\"" + to_string(group) +
          "\" data-speedup=\"" + number_attribute(p.speedup) + "\" data-kl=\"" +
          number_attribute(p.kl) + "\"";
      if (!p.provider.empty()) attributes += " data-provider=\"" + xml_escape(p.provider) + "\"";
      svg << marker_svg(shape_of(group), px(p.speedup), py(p.kl), attributes,
                        point_title(p.label, p.provider, p.speedup, p.kl), color_of(group));
    }
  svg << "</g>\n";

  // Labels: points drawn at one place share one ("main = exact = lagrangian"); each is put at
  // the first free place beside its point, further up or down (with a leader line) when the
  // places near it are taken.
  std::vector<LabelGroup> groups;
  groups.push_back({px(1.0), py(0.0), "parent", kParentColor, 6, {}});
  for (size_t i = 0; i < points.size(); ++i) {
    const double x = px(points[i].speedup), y = py(points[i].kl);
    auto same = std::find_if(groups.begin(), groups.end(), [&](const LabelGroup& g) {
      return std::fabs(g.x - x) < 1.5 && std::fabs(g.y - y) < 1.5;
    });
    if (same == groups.end()) {
      groups.push_back(
          {x, y, points[i].label, color_of(points[i].group), priority_of(points[i].group), {i}});
    } else {
      same->text += " = " + points[i].label;
      // The label takes the colour of its most important point.
      if (priority_of(points[i].group) < same->priority) {
        same->priority = priority_of(points[i].group);
        same->color = color_of(points[i].group);
      }
      same->members.push_back(i);
    }
  }
  std::stable_sort(groups.begin(), groups.end(), [](const LabelGroup& a, const LabelGroup& b) {
    return a.priority < b.priority;
  });
  std::vector<Box> taken;
  taken.reserve(2 * groups.size());  // each group's markers, then its label
  for (const LabelGroup& g : groups) taken.push_back({g.x - 7, g.y - 7, g.x + 7, g.y + 7});
  svg << "<g class=\"point-labels\" font-size=\"" << svg_number(kLabelFont) << "\">\n";
  for (const LabelGroup& g : groups) {
    const double w = kCharWidth * static_cast<double>(g.text.size());
    const Box own{g.x - 7, g.y - 7, g.x + 7, g.y + 7};
    double label_x = g.x + 10, baseline = g.y + 4;
    bool leader = false, placed = false;
    for (int ring = 0; ring <= 12 && !placed; ++ring) {
      for (const int sign : {-1, 1}) {
        if (ring == 0 && sign > 0) continue;
        const double dy = sign * ring * 14.0;
        for (const bool right_side : {true, false}) {
          const double dx = ring == 0 ? 10.0 : 22.0;
          const double x0 = right_side ? g.x + dx : g.x - dx - w;
          const double b = g.y + 4 + dy;
          const Box box{x0 - 1, b - 10, x0 + w + 1, b + 3};
          if (box.x0 < left + 1 || box.x1 > width - 2 || box.y0 < top + 1 ||
              box.y1 > top + plot_h - 1)
            continue;
          const bool clear = std::none_of(taken.begin(), taken.end(), [&](const Box& t) {
            return !(t.x0 == own.x0 && t.y0 == own.y0) && t.overlaps(box);
          });
          if (!clear) continue;
          label_x = x0;
          baseline = b;
          leader = ring > 0;
          placed = true;
          taken.push_back(box);
          break;
        }
        if (placed) break;
      }
    }
    if (leader) {
      const double end_x = label_x > g.x ? label_x - 2 : label_x + w + 2;
      svg << "<line class=\"leader\" x1=\"" << svg_number(g.x) << "\" y1=\"" << svg_number(g.y)
          << "\" x2=\"" << svg_number(end_x) << "\" y2=\"" << svg_number(baseline - 4)
          << "\" stroke=\"#8c959f\" stroke-width=\"0.8\"/>\n";
    }
    svg << "<text class=\"point-label\" x=\"" << svg_number(label_x) << "\" y=\""
        << svg_number(baseline) << "\" fill=\"" << g.color << "\">" << xml_escape(g.text)
        << "</text>\n";
  }
  svg << "</g>\n";

  // The legend, under the title: a marker and a name per group present, and the parent.
  svg << "<g class=\"legend\" fill=\"" << kText << "\">\n";
  double x = left;
  const double legend_y = 42.0;
  auto entry = [&](const char* shape, const char* color, const std::string& name) {
    svg << marker_svg(shape, x + 6, legend_y - 4, "class=\"swatch\"", name, color);
    svg << "<text x=\"" << svg_number(x + 16) << "\" y=\"" << svg_number(legend_y) << "\">"
        << xml_escape(name) << "</text>\n";
    x += 30.0 + 6.6 * static_cast<double>(name.size());
  };
  entry("circle", kParentColor, "parent");
  for (const FrontierGroup group :
       {FrontierGroup::kMain, FrontierGroup::kFrontier, FrontierGroup::kCompared,
        FrontierGroup::kDiverse, FrontierGroup::kMeasured})
    if (std::any_of(points.begin(), points.end(),
                    [&](const FrontierPoint& p) { return p.group == group; }))
      entry(shape_of(group), color_of(group), legend_of(group));
  svg << "</g>\n</svg>\n";
  return svg.str();
}

}  // namespace tessera::puzzle
