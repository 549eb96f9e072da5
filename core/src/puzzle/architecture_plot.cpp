// The child's architecture as a picture (SVG by hand); its structure is in
// architecture_plot.hpp.
#include <tessera/engine/error.hpp>
#include <tessera/puzzle/architecture_plot.hpp>
#include <tessera/train/loss_plot.hpp>
#include <tessera/train/plot_axis.hpp>

#include <algorithm>
#include <cstdio>
#include <sstream>

namespace tessera::puzzle {

namespace {

constexpr const char* kText = "#24292f";

const char* fill_of(BlockKind kind) {
  switch (kind) {
    case BlockKind::kParent:
      return "#54aeff";
    case BlockKind::kPruned:
      return "#fb8f44";
    case BlockKind::kLinear:
      return "#a475f9";
    case BlockKind::kNoop:
      return "#eaeef2";
  }
  return "#ffffff";
}

const char* legend_of(BlockKind kind) {
  switch (kind) {
    case BlockKind::kParent:
      return "the parent's block";
    case BlockKind::kPruned:
      return "pruned (fewer KV heads, a narrower FFN)";
    case BlockKind::kLinear:
      return "linear map";
    case BlockKind::kNoop:
      return "no-op (skipped)";
  }
  return "";
}

ArchitectureBlock block_of(const std::vector<Variant>& variants, const std::string& name,
                           size_t layer, ts_kind part) {
  const auto chosen = std::find_if(variants.begin(), variants.end(),
                                   [&](const Variant& v) { return v.name == name; });
  if (chosen == variants.end())
    throw Error("layer " + std::to_string(layer) + " has no " +
                (part == TS_KIND_ATTENTION ? "attention" : "FFN") + " variant '" + name + "'");
  // The parent's block is the measure; a library without it (no fraction 1) uses its largest.
  int64_t reference = 0;
  const auto parent = std::find_if(variants.begin(), variants.end(),
                                   [](const Variant& v) { return v.init == VariantInit::kParent; });
  if (parent != variants.end()) {
    reference = parent->parameters;
  } else {
    for (const Variant& v : variants) reference = std::max(reference, v.parameters);
  }
  ArchitectureBlock b;
  b.variant = name;
  if (chosen->init == VariantInit::kParent) {
    b.kind = BlockKind::kParent;
  } else if (chosen->block.kind == "noop") {
    b.kind = BlockKind::kNoop;
  } else if (chosen->block.kind == "linear") {
    b.kind = BlockKind::kLinear;
  } else {
    b.kind = BlockKind::kPruned;
  }
  if (b.kind == BlockKind::kNoop) {
    b.fraction = 0;
  } else if (reference > 0) {
    b.fraction = static_cast<double>(chosen->parameters) / static_cast<double>(reference);
  } else {
    b.fraction = 1;
  }
  // The part of the name that says what differs: "kv1" of gqa_kv1, "768" of swiglu_768.
  if (name.rfind("gqa_", 0) == 0) {
    b.caption = name.substr(4);
  } else if (name.rfind("swiglu_", 0) == 0) {
    b.caption = name.substr(7);
  } else if (name == "linear") {
    b.caption = "lin";
  } else if (name != "noop") {
    b.caption = name;
  }
  return b;
}

std::string percent(double fraction) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.0f%%", 100.0 * fraction);
  return buffer;
}

}  // namespace

const char* to_string(BlockKind kind) {
  switch (kind) {
    case BlockKind::kParent:
      return "parent";
    case BlockKind::kPruned:
      return "pruned";
    case BlockKind::kLinear:
      return "linear";
    case BlockKind::kNoop:
      return "noop";
  }
  return "?";
}

std::vector<ArchitectureLayer> architecture_of(
    const std::vector<LayerVariants>& library,
    const std::vector<std::pair<std::string, std::string>>& choice) {
  if (choice.size() != library.size())
    throw Error("the choice has " + std::to_string(choice.size()) + " layers but the library " +
                std::to_string(library.size()));
  std::vector<ArchitectureLayer> layers;
  for (size_t l = 0; l < library.size(); ++l)
    layers.push_back({block_of(library[l].attention, choice[l].first, l, TS_KIND_ATTENTION),
                      block_of(library[l].ffn, choice[l].second, l, TS_KIND_FFN)});
  return layers;
}

std::string architecture_plot_svg(const std::vector<ArchitectureLayer>& layers,
                                  const ArchitecturePlotOptions& options) {
  const double left = 78.0, right = 16.0;
  // Columns share the width, up to 40 px each: a model of few layers gets a narrower picture.
  const double most = std::max(options.width, 300);
  const double n = static_cast<double>(std::max<size_t>(layers.size(), 1));
  const double column = std::min((most - left - right) / n, 40.0);
  const double width = std::max(left + n * column + right, 560.0);
  const double attention_top = 66.0, attention_h = 70.0;
  const double ffn_top = attention_top + attention_h + 12.0, ffn_h = 100.0;
  const double numbers_y = ffn_top + ffn_h + 16.0;
  const double height = numbers_y + 14.0;
  const double box_w = std::max(column * 0.78, 1.0);
  const bool captions = column >= 13.0;
  const int number_every = column >= 18.0 ? 1 : column >= 7.0 ? 5 : 10;

  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"architecture-plot\" width=\"" << width
      << "\" height=\"" << height << "\" viewBox=\"0 0 " << width << " " << height
      << "\" font-family=\"sans-serif\" font-size=\"12\" data-layers=\"" << layers.size()
      << "\">\n";
  svg << "<title>" << xml_escape(options.title) << "</title>\n";
  svg << "<rect width=\"" << width << "\" height=\"" << height << "\" fill=\"#ffffff\"/>\n";
  svg << "<text class=\"title\" x=\"" << svg_number(left) << "\" y=\"22\" font-size=\"15\">"
      << xml_escape(options.title) << "</text>\n";

  // The legend, under the title.
  svg << "<g class=\"legend\" fill=\"" << kText << "\">\n";
  double x = left;
  for (const BlockKind kind :
       {BlockKind::kParent, BlockKind::kPruned, BlockKind::kLinear, BlockKind::kNoop}) {
    const std::string name = legend_of(kind);
    svg << "<rect class=\"swatch\" data-kind=\"" << to_string(kind) << "\" x=\"" << svg_number(x)
        << "\" y=\"35\" width=\"12\" height=\"12\" fill=\"" << fill_of(kind)
        << "\" stroke=\"#57606a\" stroke-width=\"0.6\"/>\n<text x=\"" << svg_number(x + 17)
        << "\" y=\"45\">" << xml_escape(name) << "</text>\n";
    x += 34.0 + 6.4 * static_cast<double>(name.size());
  }
  svg << "</g>\n";

  // Row names and the layers' numbers.
  svg << "<g class=\"labels\" fill=\"" << kText << "\">\n";
  svg << "<text x=\"" << svg_number(left - 8) << "\" y=\""
      << svg_number(attention_top + attention_h / 2 + 4)
      << "\" text-anchor=\"end\">attention</text>\n";
  svg << "<text x=\"" << svg_number(left - 8) << "\" y=\"" << svg_number(ffn_top + ffn_h / 2 + 4)
      << "\" text-anchor=\"end\">FFN</text>\n";
  svg << "<text x=\"" << svg_number(left - 8) << "\" y=\"" << svg_number(numbers_y)
      << "\" text-anchor=\"end\" font-size=\"10\">layer</text>\n";
  for (size_t l = 0; l < layers.size(); ++l)
    if (l % static_cast<size_t>(number_every) == 0 || l + 1 == layers.size())
      svg << "<text x=\"" << svg_number(left + (static_cast<double>(l) + 0.5) * column) << "\" y=\""
          << svg_number(numbers_y) << "\" text-anchor=\"middle\" font-size=\"10\">" << l
          << "</text>\n";
  svg << "</g>\n";

  // Per layer and part: the parent block's outline, then the chosen block from the row's
  // bottom up, as tall as its share of the parent's parameters (a no-op: the whole outline,
  // greyed).
  svg << "<g class=\"blocks\">\n";
  for (size_t l = 0; l < layers.size(); ++l) {
    const double bx = left + static_cast<double>(l) * column + (column - box_w) / 2;
    for (const bool attention : {true, false}) {
      const ArchitectureBlock& b = attention ? layers[l].attention : layers[l].ffn;
      const double row_top = attention ? attention_top : ffn_top;
      const double row_h = attention ? attention_h : ffn_h;
      const double h =
          b.kind == BlockKind::kNoop ? row_h : std::max(2.0, std::min(b.fraction, 1.5) * row_h);
      const double y = row_top + row_h - h;
      svg << "<rect class=\"parent-outline\" x=\"" << svg_number(bx) << "\" y=\""
          << svg_number(row_top) << "\" width=\"" << svg_number(box_w) << "\" height=\""
          << svg_number(row_h) << "\" fill=\"none\" stroke=\"#afb8c1\" stroke-width=\"0.8\" "
          << "stroke-dasharray=\"3 2\"/>\n";
      const std::string part = attention ? "attention" : "ffn";
      svg << "<rect class=\"block\" data-layer=\"" << l << "\" data-part=\"" << part
          << "\" data-variant=\"" << xml_escape(b.variant) << "\" data-kind=\"" << to_string(b.kind)
          << "\" data-fraction=\"" << tick_text(b.fraction) << "\" x=\"" << svg_number(bx)
          << "\" y=\"" << svg_number(y) << "\" width=\"" << svg_number(box_w) << "\" height=\""
          << svg_number(h) << "\" fill=\"" << fill_of(b.kind)
          << "\" stroke=\"#57606a\" stroke-width=\"0.6\"><title>layer " << l << " "
          << (attention ? "attention" : "FFN") << ": " << xml_escape(b.variant) << " ("
          << to_string(b.kind) << ", " << percent(b.fraction)
          << " of the parent block's parameters)</title></rect>\n";
      if (captions && !b.caption.empty()) {
        const double tx = bx + box_w / 2 + 3.5;
        const double ty = row_top + row_h - 4;
        svg << "<text class=\"caption\" x=\"" << svg_number(tx) << "\" y=\"" << svg_number(ty)
            << "\" font-size=\"10\" fill=\"" << kText << "\" transform=\"rotate(-90 "
            << svg_number(tx) << " " << svg_number(ty) << ")\">" << xml_escape(b.caption)
            << "</text>\n";
      }
    }
  }
  svg << "</g>\n</svg>\n";
  return svg.str();
}

}  // namespace tessera::puzzle
