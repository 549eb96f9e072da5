// The loss plot (SVG by hand) and the report page; the SVG's structure is in loss_plot.hpp.
#include <tessera/train/loss_plot.hpp>
#include <tessera/train/plot_axis.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

namespace tessera {

namespace {

constexpr const char* kPalette[] = {"#1f6feb", "#d1242f", "#2da44e", "#8250df", "#bf8700"};

std::string loss_value_text(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return tick_text(v);
}

// Ticks for a log axis spanning [10^lo, 10^hi]: 1-2-5 per decade, only the decades when there
// are many, linear ticks when less than one decade shows.
std::vector<double> log_ticks(double lo, double hi) {
  std::vector<double> ticks;
  for (const bool decades_only : {false, true}) {
    ticks.clear();
    for (double k = std::floor(lo); k <= std::ceil(hi); k += 1.0) {
      for (const double m : {1.0, 2.0, 5.0}) {
        if (decades_only && m != 1.0) continue;
        const double v = m * std::pow(10.0, k);
        const double t = std::log10(v);
        if (t >= lo - 1e-9 && t <= hi + 1e-9) ticks.push_back(v);
      }
    }
    if (ticks.size() <= 8) break;
  }
  if (ticks.size() < 2) ticks = linear_ticks(std::pow(10.0, lo), std::pow(10.0, hi), 4.0);
  ticks.erase(std::remove_if(ticks.begin(), ticks.end(), [](double v) { return !(v > 0.0); }),
              ticks.end());
  return ticks;
}

}  // namespace

std::string xml_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        // Control characters other than tab and newlines are not allowed in XML 1.0.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n' && c != '\r') {
          out += ' ';
        } else {
          out += c;
        }
    }
  }
  return out;
}

std::string loss_plot_svg(const std::vector<LossCurve>& curves, const PlotOptions& options) {
  const bool log = options.log_scale;
  auto drawable = [log](double y) { return std::isfinite(y) && (!log || y > 0.0); };
  auto transform = [log](double y) { return log ? std::log10(y) : y; };

  // Ranges: x over every point, y over the drawable ones.
  double x_lo = std::numeric_limits<double>::infinity();
  double x_hi = -x_lo;
  double t_lo = x_lo;
  double t_hi = -x_lo;
  size_t drawn = 0;
  bool any_nonfinite = false;
  for (const LossCurve& curve : curves) {
    for (const auto& [x, y] : curve.points) {
      if (!std::isfinite(x)) continue;
      x_lo = std::min(x_lo, x);
      x_hi = std::max(x_hi, x);
      if (drawable(y)) {
        t_lo = std::min(t_lo, transform(y));
        t_hi = std::max(t_hi, transform(y));
        ++drawn;
      } else {
        any_nonfinite = true;
      }
    }
  }
  if (!(x_hi >= x_lo)) {
    x_lo = 0.0;
    x_hi = 1.0;
  } else if (x_hi == x_lo) {
    x_lo -= 1.0;
    x_hi += 1.0;
  }
  if (drawn == 0) {
    t_lo = log ? -1.0 : 0.0;
    t_hi = 1.0;
  } else if (t_hi == t_lo) {
    const double pad = log ? 0.1 : std::max(std::fabs(t_lo) * 0.05, 0.5);
    t_lo -= pad;
    t_hi += pad;
  } else {
    const double pad = (t_hi - t_lo) * 0.05;
    t_lo -= pad;
    t_hi += pad;
  }

  const double width = std::max(options.width, 200);
  const double height = std::max(options.height, 150);
  const double left = 72.0;
  const double right = 24.0;
  const double top = 48.0;
  const double bottom = 52.0;
  const double plot_w = width - left - right;
  const double plot_h = height - top - bottom;
  auto px = [&](double x) { return left + (x - x_lo) / (x_hi - x_lo) * plot_w; };
  auto py = [&](double t) { return top + (1.0 - (t - t_lo) / (t_hi - t_lo)) * plot_h; };

  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" viewBox=\"0 0 " << width << " " << height
      << "\" font-family=\"sans-serif\" font-size=\"12\" data-scale=\"" << (log ? "log" : "linear")
      << "\">\n";
  svg << "<title>" << xml_escape(options.title) << "</title>\n";
  svg << "<rect width=\"" << width << "\" height=\"" << height << "\" fill=\"#ffffff\"/>\n";
  svg << "<text class=\"title\" x=\"" << svg_number(left) << "\" y=\"22\" font-size=\"15\">"
      << xml_escape(options.title) << (log ? " (log scale)" : "") << "</text>\n";

  // Grid, ticks and labels.
  svg << "<g class=\"axes\" stroke=\"#d0d7de\" stroke-width=\"1\">\n";
  const std::vector<double> y_ticks = log ? log_ticks(t_lo, t_hi) : linear_ticks(t_lo, t_hi);
  for (const double v : y_ticks) {
    const double y = py(transform(v));
    svg << "<line x1=\"" << svg_number(left) << "\" y1=\"" << svg_number(y) << "\" x2=\""
        << svg_number(left + plot_w) << "\" y2=\"" << svg_number(y) << "\"/>\n";
  }
  std::vector<double> x_ticks = linear_ticks(x_lo, x_hi, 6.0);
  for (const double v : x_ticks) {
    const double x = px(v);
    svg << "<line x1=\"" << svg_number(x) << "\" y1=\"" << svg_number(top) << "\" x2=\""
        << svg_number(x) << "\" y2=\"" << svg_number(top + plot_h) << "\"/>\n";
  }
  svg << "<rect x=\"" << svg_number(left) << "\" y=\"" << svg_number(top) << "\" width=\""
      << svg_number(plot_w) << "\" height=\"" << svg_number(plot_h)
      << "\" fill=\"none\" stroke=\"#57606a\"/>\n";
  svg << "</g>\n<g class=\"labels\" fill=\"#24292f\">\n";
  for (const double v : y_ticks) {
    svg << "<text x=\"" << svg_number(left - 6) << "\" y=\"" << svg_number(py(transform(v)) + 4)
        << "\" text-anchor=\"end\">" << tick_text(v) << "</text>\n";
  }
  for (const double v : x_ticks) {
    svg << "<text x=\"" << svg_number(px(v)) << "\" y=\"" << svg_number(top + plot_h + 16)
        << "\" text-anchor=\"middle\">" << tick_text(v) << "</text>\n";
  }
  svg << "<text x=\"" << svg_number(left + plot_w / 2) << "\" y=\"" << svg_number(height - 12)
      << "\" text-anchor=\"middle\">" << xml_escape(options.x_label) << "</text>\n";
  svg << "<text x=\"16\" y=\"" << svg_number(top + plot_h / 2) << "\" text-anchor=\"middle\" "
      << "transform=\"rotate(-90 16 " << svg_number(top + plot_h / 2) << ")\">"
      << xml_escape(options.y_label) << "</text>\n";
  if (drawn == 0) {
    svg << "<text class=\"note\" x=\"" << svg_number(left + plot_w / 2) << "\" y=\""
        << svg_number(top + plot_h / 2) << "\" text-anchor=\"middle\">no "
        << (log ? "positive finite" : "finite") << " loss to draw</text>\n";
  }
  svg << "</g>\n";

  // The curves.
  for (size_t c = 0; c < curves.size(); ++c) {
    const LossCurve& curve = curves[c];
    const std::string color =
        curve.color.empty() ? kPalette[c % std::size(kPalette)] : xml_escape(curve.color);
    size_t finite = 0;
    size_t nonfinite = 0;
    std::ostringstream body;
    std::vector<std::pair<double, double>> run;
    auto flush = [&] {
      if (run.size() == 1) {
        body << "<circle class=\"lone\" cx=\"" << svg_number(run[0].first) << "\" cy=\""
             << svg_number(run[0].second) << "\" r=\"2.5\" fill=\"" << color << "\"/>\n";
      } else if (run.size() > 1) {
        body << "<polyline class=\"line\" fill=\"none\" stroke=\"" << color
             << "\" stroke-width=\"1.5\" stroke-linejoin=\"round\" points=\"";
        for (size_t i = 0; i < run.size(); ++i) {
          body << (i ? " " : "") << svg_number(run[i].first) << "," << svg_number(run[i].second);
        }
        body << "\"/>\n";
      }
      run.clear();
    };
    std::ostringstream markers;
    for (const auto& [x, y] : curve.points) {
      if (!std::isfinite(x)) continue;
      if (drawable(y)) {
        ++finite;
        run.emplace_back(px(x), py(transform(y)));
        if (curve.markers) {
          markers << "<circle class=\"marker\" cx=\"" << svg_number(px(x)) << "\" cy=\""
                  << svg_number(py(transform(y))) << "\" r=\"3\" fill=\"" << color << "\"/>\n";
        }
        continue;
      }
      ++nonfinite;
      flush();
      const bool low = (std::isinf(y) && y < 0) || (log && !std::isnan(y) && y <= 0.0);
      const double cx = px(x);
      const double cy = low ? top + plot_h - 6.0 : top + 6.0;
      body << "<path class=\"nonfinite\" stroke=\"" << color
           << "\" stroke-width=\"2\" fill=\"none\" d=\"M" << svg_number(cx - 4) << " "
           << svg_number(cy - 4) << " L" << svg_number(cx + 4) << " " << svg_number(cy + 4) << " M"
           << svg_number(cx - 4) << " " << svg_number(cy + 4) << " L" << svg_number(cx + 4) << " "
           << svg_number(cy - 4) << "\"><title>step " << tick_text(x) << ": loss "
           << loss_value_text(y) << "</title></path>\n";
    }
    flush();
    svg << "<g class=\"curve\" data-name=\"" << xml_escape(curve.name) << "\" data-points=\""
        << finite << "\" data-nonfinite=\"" << nonfinite << "\">\n"
        << body.str() << markers.str() << "</g>\n";
  }

  // The legend, right-aligned in the top margin: a swatch (a line, or the "x" of points that
  // cannot be drawn) and a label per entry.
  struct Entry {
    std::string label;
    std::string color;  // empty: the "x" entry
  };
  std::vector<Entry> entries;
  for (size_t c = 0; c < curves.size(); ++c) {
    entries.push_back({curves[c].name, curves[c].color.empty() ? kPalette[c % std::size(kPalette)]
                                                               : xml_escape(curves[c].color)});
  }
  if (any_nonfinite) entries.push_back({log ? "not finite or <= 0" : "not finite", ""});
  double legend_width = 0.0;
  for (const Entry& e : entries) legend_width += 28.0 + 7.0 * static_cast<double>(e.label.size());
  double x = width - right - legend_width;
  svg << "<g class=\"legend\" fill=\"#24292f\">\n";
  for (const Entry& e : entries) {
    if (e.color.empty()) {
      svg << "<path stroke=\"#57606a\" stroke-width=\"2\" d=\"M" << svg_number(x + 4) << " 18 L"
          << svg_number(x + 12) << " 26 M" << svg_number(x + 4) << " 26 L" << svg_number(x + 12)
          << " 18\"/>\n";
    } else {
      svg << "<line x1=\"" << svg_number(x) << "\" y1=\"22\" x2=\"" << svg_number(x + 16)
          << "\" y2=\"22\" stroke=\"" << e.color << "\" stroke-width=\"2\"/>\n";
    }
    svg << "<text x=\"" << svg_number(x + 20) << "\" y=\"26\">" << xml_escape(e.label)
        << "</text>\n";
    x += 28.0 + 7.0 * static_cast<double>(e.label.size());
  }
  svg << "</g>\n</svg>\n";
  return svg.str();
}

std::string report_html(const ReportPage& page) {
  std::ostringstream html;
  html << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<title>"
       << xml_escape(page.title) << "</title>\n<style>\n"
       << "body { font-family: sans-serif; margin: 2em auto; max-width: 62em; color: #24292f; }\n"
       << "table { border-collapse: collapse; }\n"
       << "td { padding: 0.2em 1.2em 0.2em 0; border-bottom: 1px solid #d0d7de; }\n"
       << "td.value { font-family: monospace; }\n"
       << "pre { background: #f6f8fa; padding: 1em; overflow-x: auto; }\n"
       << "figure { margin: 1em 0; }\n"
       << "</style>\n</head>\n<body>\n<h1>" << xml_escape(page.title) << "</h1>\n";
  html << "<h2>Final figures</h2>\n<table class=\"figures\">\n";
  for (const ReportFigure& f : page.figures) {
    html << "<tr><td>" << xml_escape(f.name) << "</td><td class=\"value\">" << xml_escape(f.value)
         << "</td></tr>\n";
  }
  html << "</table>\n<h2>Loss</h2>\n";
  for (const std::string& plot : page.plots) html << "<figure>\n" << plot << "</figure>\n";
  html << "<h2>Config";
  if (!page.config_name.empty()) html << ": <code>" << xml_escape(page.config_name) << "</code>";
  html << "</h2>\n<pre class=\"config\">" << xml_escape(page.config_text) << "</pre>\n";
  html << "</body>\n</html>\n";
  return html.str();
}

}  // namespace tessera
