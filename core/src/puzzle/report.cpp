// The Puzzle report page (report.hpp): the artefacts read back, their tables, and the two plots
// (frontier_plot.hpp, architecture_plot.hpp) in one HTML page that is also well-formed XML.
#include <tessera/puzzle/architecture_plot.hpp>
#include <tessera/puzzle/frontier_plot.hpp>
#include <tessera/puzzle/report.hpp>
#include <tessera/train/loss_plot.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <sstream>

namespace tessera::puzzle {

namespace {

namespace fs = std::filesystem;

// ---- numbers as text ----

std::string decimals(double v, int places) {
  if (!std::isfinite(v)) return "n/a";
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%.*f", places, v);
  return buffer;
}

std::string times(double v) {
  return std::isfinite(v) ? decimals(v, 3) + "\u00d7" : "n/a";
}

std::string percent(double share, int places = 1) {
  return std::isfinite(share) ? decimals(100.0 * share, places) + " %" : "n/a";
}

std::string grouped(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n);
  for (int at = static_cast<int>(digits.size()) - 3; at > 0; at -= 3)
    digits.insert(static_cast<size_t>(at), ",");
  return (n < 0 ? "-" : "") + digits;
}

std::string duration(double seconds) {
  if (!std::isfinite(seconds)) return "n/a";
  if (seconds == 0) return "0";
  const double a = std::fabs(seconds);
  if (a >= 60.0) {
    const auto whole = static_cast<int64_t>(std::llround(a));
    const std::string sign = seconds < 0 ? "-" : "";
    if (whole >= 3600)
      return sign + std::to_string(whole / 3600) + " h " + std::to_string(whole % 3600 / 60) +
             " min";
    return sign + std::to_string(whole / 60) + " min " + std::to_string(whole % 60) + " s";
  }
  if (a < 1e-3) return decimals(seconds * 1e6, 1) + " \u00b5s";
  if (a < 1.0) return decimals(seconds * 1e3, 3) + " ms";
  return decimals(seconds, 3) + " s";
}

std::string bytes(double n) {
  if (!std::isfinite(n)) return "n/a";
  if (n >= 1024.0 * 1024.0) return decimals(n / (1024.0 * 1024.0), 2) + " MiB";
  if (n >= 1024.0) return decimals(n / 1024.0, 1) + " KiB";
  return decimals(n, 0) + " B";
}

const char* part_name(ts_kind part) {
  return part == TS_KIND_ATTENTION ? "attention" : "FFN";
}

// ---- HTML pieces ----

// A table of text cells (escaped when written); numeric columns are right-aligned.
struct Table {
  std::string css_class;
  std::vector<std::string> headers;
  std::vector<bool> numeric;  // per column
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row_classes;  // per row; may be shorter

  void add(std::vector<std::string> cells, std::string row_class = "") {
    rows.push_back(std::move(cells));
    row_classes.resize(rows.size() - 1);
    row_classes.push_back(std::move(row_class));
  }

  std::string html() const {
    std::ostringstream t;
    t << "<table class=\"" << xml_escape(css_class) << "\">\n<thead><tr>";
    for (size_t c = 0; c < headers.size(); ++c)
      t << "<th" << (c < numeric.size() && numeric[c] ? " class=\"num\"" : "") << ">"
        << xml_escape(headers[c]) << "</th>";
    t << "</tr></thead>\n<tbody>\n";
    for (size_t r = 0; r < rows.size(); ++r) {
      t << "<tr";
      if (r < row_classes.size() && !row_classes[r].empty())
        t << " class=\"" << xml_escape(row_classes[r]) << "\"";
      t << ">";
      for (size_t c = 0; c < rows[r].size(); ++c)
        t << "<td" << (c < numeric.size() && numeric[c] ? " class=\"num\"" : "") << ">"
          << xml_escape(rows[r][c]) << "</td>";
      t << "</tr>\n";
    }
    t << "</tbody>\n</table>\n";
    return t.str();
  }
};

std::string command(const ReportInputs& in, const std::string& stage) {
  return "tessera puzzle " + stage + " " + in.config;
}

std::string section_open(const std::string& id, const std::string& title) {
  return "<section id=\"" + id + "\">\n<h2>" + xml_escape(title) + "</h2>\n";
}

// A section whose artefact is not there yet: what to run.
std::string missing_section(const ReportInputs& in, const std::string& id, const std::string& title,
                            const std::string& stage, const std::string& artefact) {
  return "<section id=\"" + id + "\" class=\"missing\" data-stage=\"" + stage + "\">\n<h2>" +
         xml_escape(title) + "</h2>\n<p class=\"missing\">Not yet: " + xml_escape(artefact) +
         " is not in the output folder. Run <code>" + xml_escape(command(in, stage)) +
         "</code>.</p>\n</section>\n";
}

std::string unreadable_section(const std::string& id, const std::string& title,
                               const std::string& stage, const std::string& error) {
  return "<section id=\"" + id + "\" class=\"unreadable\" data-stage=\"" + stage + "\">\n<h2>" +
         xml_escape(title) + "</h2>\n<p class=\"error\">" + xml_escape(error) +
         "</p>\n</section>\n";
}

// The section of artefact `a` when it is not read: missing or unreadable; empty when read.
template <typename T>
std::string absent_section(const ReportInputs& in, const ReportArtefact<T>& a,
                           const std::string& id, const std::string& title,
                           const std::string& stage, const std::string& artefact) {
  if (a.value) return "";
  if (!a.error.empty()) return unreadable_section(id, title, stage, a.error);
  return missing_section(in, id, title, stage, artefact);
}

// ---- per-variant figures, over the layers that offer a variant ----

// Variant names of a part in the order the library first lists them.
struct NameOrder {
  std::vector<std::pair<ts_kind, std::string>> keys;
  size_t index(ts_kind part, const std::string& name) {
    for (size_t i = 0; i < keys.size(); ++i)
      if (keys[i].first == part && keys[i].second == name) return i;
    keys.emplace_back(part, name);
    return keys.size() - 1;
  }
};

struct Summary {
  int layers = 0;
  double sum = 0, min = INFINITY, max = -INFINITY;
  int finite = 0;
  size_t max_layer = 0;
  void add(double v, size_t layer) {
    ++layers;
    if (!std::isfinite(v)) return;
    ++finite;
    sum += v;
    if (v < min) min = v;
    if (v > max) {
      max = v;
      max_layer = layer;
    }
  }
  double mean() const { return finite > 0 ? sum / finite : NAN; }
};

// ---- the sections ----

std::string stages_section(const ReportInputs& in) {
  Table t{"stages", {"stage", "artefact", "state"}, {}, {}, {}};
  auto state = [&](const auto& a, const std::string& stage, const std::string& artefact,
                   const std::string& done) {
    if (a.value) {
      t.add({stage, artefact, done}, "stage-done");
    } else if (!a.error.empty()) {
      t.add({stage, artefact, "unreadable: " + a.error}, "stage-unreadable");
    } else {
      t.add({stage, artefact, "not yet: " + command(in, stage)}, "stage-missing");
    }
  };
  std::string library_state = "done";
  if (in.library.value)
    library_state =
        std::to_string(in.library.value->layers.size()) + " layers" +
        (in.distills && !in.library_is_distilled ? " (the distilled library is not there yet)"
                                                 : "");
  state(in.library, "library", in.library_is_distilled ? "library-distilled/" : "library/",
        library_state);
  if (in.distills || in.distill.value || !in.distill.error.empty())
    state(in.distill, "distill", "library-distilled/distill.json",
          in.distill.value ? grouped(in.distill.value->tokens) + " tokens" : "");
  std::string scored = "done";
  if (in.scores.value)
    scored = grouped(in.scores.value->state.tokens) + " tokens" +
             (in.scores.value->complete ? "" : ", incomplete (run score again to resume)");
  state(in.scores, "score", "scores.json", scored);
  state(in.costs, "cost", "costs.json",
        in.costs.value ? std::to_string(in.costs.value->measurements) + " variant groups" : "");
  state(in.solutions, "solve", "solutions.json",
        in.solutions.value ? std::to_string(in.solutions.value->records.size()) + " searches" : "");
  state(in.evaluation, "evaluate", "evaluation.json",
        in.evaluation.value
            ? std::to_string(in.evaluation.value->children.size()) +
                  (in.evaluation.value->children.size() == 1 ? " child" : " children") + " measured"
            : "");
  return section_open("stages", "Stages") + t.html() + "</section>\n";
}

FrontierGroup group_of(const SolveRecord& r, const Solutions& s) {
  if (r.label == s.main) return FrontierGroup::kMain;
  if (r.label.rfind("frontier-", 0) == 0) return FrontierGroup::kFrontier;
  if (r.label.rfind("diverse-", 0) == 0) return FrontierGroup::kDiverse;
  return FrontierGroup::kCompared;
}

// The solve record an evaluated child was realised from.
const SolveRecord* record_of(const EvaluatedChild& c, const Solutions& s) {
  if (const SolveRecord* r = s.find(c.solution.empty() ? c.label : c.solution)) return r;
  return s.find(c.label);
}

std::string frontier_section(const ReportInputs& in) {
  if (!in.solutions.value)
    return absent_section(in, in.solutions, "frontier", "Accuracy against throughput", "solve",
                          "solutions.json");
  const Solutions& s = *in.solutions.value;
  std::vector<FrontierPoint> points;
  int32_t batch = 1;
  for (const SolveRecord& r : s.records) {
    if (r.label == s.main) batch = r.batch_size;
    if (!r.feasible) continue;
    points.push_back({r.label, group_of(r, s), r.predicted.decode_speedup, r.predicted.kl,
                      r.provider, std::nullopt});
  }
  std::ostringstream notes;
  if (in.evaluation.value) {
    for (const EvaluatedChild& c : in.evaluation.value->children) {
      const SolveRecord* r = record_of(c, s);
      const int32_t at = c.predicted ? c.predicted->batch : r ? r->batch_size : batch;
      const MeasuredSpeed* speed = c.speed_at(at);
      if (speed == nullptr) {
        notes << "<p class=\"note\">" << xml_escape(c.label) << " was not timed at batch " << at
              << ", the batch its budgets were set at: not drawn.</p>\n";
        continue;
      }
      FrontierPoint p{
          c.label, FrontierGroup::kMeasured, speed->decode_speedup, c.kl, c.provider, std::nullopt};
      if (r != nullptr && r->feasible) {
        p.predicted = std::make_pair(r->predicted.decode_speedup, r->predicted.kl);
      } else if (c.predicted) {
        p.predicted = std::make_pair(c.predicted->decode_speedup, c.predicted->kl);
      }
      points.push_back(std::move(p));
    }
  }
  FrontierPlotOptions options;
  options.title = "Accuracy against throughput (decode at batch " + std::to_string(batch) + ")";
  options.y_label = "KL to the parent";
  std::ostringstream out;
  out << section_open("frontier", "Accuracy against throughput") << "<figure>\n"
      << frontier_plot_svg(points, options) << "<figcaption>Each solution the search found, at "
      << "the decode speedup its measured parts predict (batch " << batch
      << ") and its summed replace-1-block KL, the search's objective. The line joins the "
      << "parent to the frontier: the main provider's solutions at each decode target.";
  if (in.evaluation.value) {
    out << " A diamond is a child as <code>evaluate</code> measured it: its decode speedup "
        << "generating at that batch and its KL to the parent per token of held-out text (a "
        << "different measure from the summed KL); the dashed line joins it to its "
        << "prediction.";
  } else {
    out << " No child measured yet: <code>" << xml_escape(command(in, "evaluate"))
        << "</code> adds the measured points.";
  }
  out << "</figcaption>\n</figure>\n" << notes.str() << "</section>\n";
  return out.str();
}

// Consecutive layers with the same choice, as "0-4" rows.
Table layer_runs(const Choice& choice) {
  Table t{"layers", {"layers", "attention", "FFN"}, {}, {}, {}};
  for (size_t l = 0; l < choice.size();) {
    size_t end = l + 1;
    while (end < choice.size() && choice[end] == choice[l]) ++end;
    t.add({end - l == 1 ? std::to_string(l) : std::to_string(l) + "-" + std::to_string(end - 1),
           choice[l].first, choice[l].second});
    l = end;
  }
  return t;
}

std::string architecture_section(const ReportInputs& in) {
  const std::string title = "The main child's architecture";
  if (!in.solutions.value)
    return absent_section(in, in.solutions, "architecture", title, "solve", "solutions.json");
  const Solutions& s = *in.solutions.value;
  const SolveRecord* main = s.find(s.main);
  std::ostringstream out;
  out << section_open("architecture", title);
  if (main == nullptr || !main->feasible) {
    out << "<p class=\"note\">The main solution ('" << xml_escape(s.main) << "') found no child"
        << (main != nullptr && !main->reason.empty() ? ": " + xml_escape(main->reason) : "")
        << ".</p>\n</section>\n";
    return out.str();
  }
  const std::vector<LayerVariants>& library = in.library.value->layers;
  ArchitecturePlotOptions options;
  options.title = "The main child ('" + s.main + "', " + main->provider +
                  "): " + std::to_string(main->choice.size()) + " layers";
  try {
    out << "<figure>\n"
        << architecture_plot_svg(architecture_of(library, main->choice), options)
        << "<figcaption>One column per layer: its attention above its FFN. A box's height is "
        << "its share of the parent block's parameters (a pruned FFN's: its width over the "
        << "parent's); the dashed outline is the parent's block.</figcaption>\n</figure>\n";
  } catch (const std::exception& e) {
    out << "<p class=\"error\">" << xml_escape(e.what()) << "</p>\n";
  }
  // How often each variant was chosen, then the layers in runs.
  for (const ts_kind part : {TS_KIND_ATTENTION, TS_KIND_FFN}) {
    std::vector<std::pair<std::string, int>> counts;
    for (const auto& [attention, ffn] : main->choice) {
      const std::string& name = part == TS_KIND_ATTENTION ? attention : ffn;
      auto it = std::find_if(counts.begin(), counts.end(),
                             [&](const auto& c) { return c.first == name; });
      if (it == counts.end()) {
        counts.emplace_back(name, 1);
      } else {
        ++it->second;
      }
    }
    out << "<p class=\"counts\">" << part_name(part) << ": ";
    for (size_t i = 0; i < counts.size(); ++i)
      out << (i ? ", " : "") << counts[i].second << " \u00d7 <code>" << xml_escape(counts[i].first)
          << "</code>";
    out << "</p>\n";
  }
  out << layer_runs(main->choice).html() << "</section>\n";
  return out.str();
}

std::string solutions_section(const ReportInputs& in) {
  const std::string title = "Solutions";
  if (!in.solutions.value)
    return absent_section(in, in.solutions, "solutions", title, "solve", "solutions.json");
  Table t{"solutions",
          {"label", "provider", "batch", "budgets", "found", "predicted KL", "decode", "prefill",
           "memory", "of the parent's", "search"},
          {false, false, true, false, false, true, true, true, true, true, true},
          {},
          {}};
  const Solutions& s = *in.solutions.value;
  for (const SolveRecord& r : s.records) {
    std::string budgets;
    auto add = [&](const std::string& b) { budgets += (budgets.empty() ? "" : ", ") + b; };
    if (r.decode_speedup > 0) add("decode " + decimals(r.decode_speedup, 2) + "\u00d7");
    if (r.prefill_speedup > 0) add("prefill " + decimals(r.prefill_speedup, 2) + "\u00d7");
    if (r.memory_fraction > 0) add("memory \u2264 " + percent(r.memory_fraction, 0));
    if (r.max_common >= 0) add("\u2264 " + std::to_string(r.max_common) + " choices in common");
    if (budgets.empty()) budgets = "none";
    const Prediction& p = r.predicted;
    if (r.feasible) {
      t.add({r.label, r.provider, std::to_string(r.batch_size), budgets, "yes", decimals(p.kl, 4),
             times(p.decode_speedup), times(p.prefill_speedup),
             bytes(static_cast<double>(p.memory_bytes)), percent(p.memory_fraction),
             duration(r.seconds)},
            r.label == s.main ? "main" : "");
    } else {
      t.add({r.label, r.provider, std::to_string(r.batch_size), budgets,
             "no" + (r.reason.empty() ? std::string{} : ": " + r.reason), "", "", "", "", "",
             duration(r.seconds)},
            r.label == s.main ? "main infeasible" : "infeasible");
    }
  }
  return section_open("solutions", title) +
         "<p class=\"note\">Predicted from the scores and the measured parts; decode and prefill "
         "are speedups against the parent, memory is weights plus the KV cache at the batch "
         "size. The main solution is in bold.</p>\n" +
         t.html() + "</section>\n";
}

std::string evaluation_section(const ReportInputs& in) {
  const std::string title = "Evaluation";
  if (!in.evaluation.value)
    return absent_section(in, in.evaluation, "evaluation", title, "evaluate", "evaluation.json");
  const Evaluation& e = *in.evaluation.value;
  const bool mmlu = e.parent_mmlu || std::any_of(e.children.begin(), e.children.end(),
                                                 [](const EvaluatedChild& c) { return c.mmlu; });
  auto mmlu_text = [](const std::optional<MmluFigures>& m) {
    return m ? percent(m->accuracy) + " of " + grouped(m->questions) : std::string{};
  };
  Table quality{"quality",
                {"model", "solution", "provider", "KL per token", "agreement", "perplexity"},
                {false, false, false, true, true, true},
                {},
                {}};
  if (mmlu) {
    quality.headers.emplace_back("MMLU");
    quality.numeric.push_back(true);
  }
  std::vector<std::string> parent_row = {"parent", "",      "",
                                         "0",      "100 %", decimals(e.parent_perplexity, 3)};
  if (mmlu) parent_row.push_back(mmlu_text(e.parent_mmlu));
  quality.add(parent_row);
  for (const EvaluatedChild& c : e.children) {
    std::vector<std::string> row = {
        c.label,           c.solution,           c.provider,
        decimals(c.kl, 4), percent(c.agreement), decimals(c.perplexity, 3)};
    if (mmlu) row.push_back(mmlu_text(c.mmlu));
    quality.add(row);
  }
  Table speed{"speed",
              {"child", "batch", "prefill: parent", "child", "speedup", "decode: parent", "child",
               "speedup"},
              {false, true, true, true, true, true, true, true},
              {},
              {}};
  Table predicted{
      "predicted",
      {"child", "batch", "summed KL (predicted)", "KL per token (measured)", "decode (predicted)",
       "decode (measured)", "prefill (predicted)", "prefill (measured)"},
      {false, true, true, true, true, true, true, true},
      {},
      {}};
  const Solutions* solutions = in.solutions.value ? &*in.solutions.value : nullptr;
  for (const EvaluatedChild& c : e.children) {
    for (const MeasuredSpeed& m : c.speed)
      speed.add({c.label, std::to_string(m.batch), duration(m.parent_prefill_s),
                 duration(m.child_prefill_s), times(m.prefill_speedup), duration(m.parent_decode_s),
                 duration(m.child_decode_s), times(m.decode_speedup)});
    std::optional<PredictedFigures> p = c.predicted;
    if (!p && solutions != nullptr)
      if (const SolveRecord* r = record_of(c, *solutions); r != nullptr && r->feasible)
        p = PredictedFigures{r->batch_size, r->predicted.kl, r->predicted.decode_speedup,
                             r->predicted.prefill_speedup};
    if (p) {
      const MeasuredSpeed* m = c.speed_at(p->batch);
      predicted.add({c.label, std::to_string(p->batch), decimals(p->kl, 4), decimals(c.kl, 4),
                     times(p->decode_speedup), m ? times(m->decode_speedup) : "not timed",
                     times(p->prefill_speedup), m ? times(m->prefill_speedup) : "not timed"});
    }
  }
  std::ostringstream out;
  out << section_open("evaluation", title) << "<p class=\"note\">Parent and children on "
      << grouped(e.tokens) << " held-out tokens after those the scores read"
      << (e.version == 1 ? " (evaluation.json version 1: the main child only)" : "") << ".</p>\n"
      << "<h3>Quality</h3>\n"
      << quality.html() << "<h3>Speed</h3>\n<p class=\"note\">The scenario's prompt (prefill) "
      << "and its generation (decode steps), parent and child alternating; medians.</p>\n"
      << speed.html();
  if (!predicted.rows.empty()) out << "<h3>Predicted and measured</h3>\n" << predicted.html();
  out << "</section>\n";
  return out.str();
}

std::string scores_section(const ReportInputs& in) {
  const std::string title = "Replace-1-block scores";
  if (!in.scores.value)
    return absent_section(in, in.scores, "scores", title, "score", "scores.json");
  const ScoreFile& f = *in.scores.value;
  const std::vector<LayerVariants>& library = in.library.value->layers;
  NameOrder order;
  std::vector<Summary> kl, agreed;
  for (size_t l = 0; l < library.size(); ++l)
    for (const ts_kind part : {TS_KIND_ATTENTION, TS_KIND_FFN})
      for (size_t i = 0; i < library[l].of(part).size(); ++i) {
        const size_t k = order.index(part, library[l].of(part)[i].name);
        kl.resize(order.keys.size());
        agreed.resize(order.keys.size());
        const ScoreSums& sums = f.state.layers[l].of(part)[i];
        kl[k].add(mean_kl(f.state, sums), l);
        agreed[k].add(agreement(f.state, sums), l);
      }
  Table t{
      "scores",
      {"part", "variant", "layers", "mean KL", "min KL", "max KL", "at layer", "mean agreement"},
      {false, false, true, true, true, true, true, true},
      {},
      {}};
  for (size_t k = 0; k < order.keys.size(); ++k)
    t.add({part_name(order.keys[k].first), order.keys[k].second, std::to_string(kl[k].layers),
           decimals(kl[k].mean(), 4), kl[k].finite ? decimals(kl[k].min, 4) : "n/a",
           kl[k].finite ? decimals(kl[k].max, 4) : "n/a",
           kl[k].finite && kl[k].max > 0 ? std::to_string(kl[k].max_layer) : "",
           percent(agreed[k].mean())});
  std::ostringstream out;
  out << section_open("scores", title) << "<p class=\"note\">Each variant in the otherwise "
      << "unchanged parent, on " << grouped(f.state.tokens) << " held-out tokens ("
      << f.state.batches << " of " << f.plan.batches << " batches of " << f.plan.batch_size
      << " \u00d7 " << f.plan.seq_len << (f.complete ? "" : "; incomplete") << ", "
      << duration(f.state.seconds) << "): KL(parent \u2016 child) per token and the share of "
      << "tokens whose argmax is the parent's, over the layers that offer the variant.</p>\n"
      << t.html() << "</section>\n";
  return out.str();
}

std::string costs_section(const ReportInputs& in) {
  const std::string title = "Measured costs";
  if (!in.costs.value) return absent_section(in, in.costs, "costs", title, "cost", "costs.json");
  const Costs& c = *in.costs.value;
  const std::vector<LayerVariants>& library = in.library.value->layers;
  const std::vector<int32_t>& batches = c.scenario.batch_sizes;
  Table t{"costs", {"part", "variant", "layers"}, {false, false, true}, {}, {}};
  for (const int32_t b : batches) {
    t.headers.push_back("decode step, b=" + std::to_string(b));
    t.numeric.push_back(true);
  }
  for (const int32_t b : batches) {
    t.headers.push_back("prefill, b=" + std::to_string(b));
    t.numeric.push_back(true);
  }
  for (const char* h : {"weights", "KV per token"}) {
    t.headers.emplace_back(h);
    t.numeric.push_back(true);
  }
  // The whole parent and its fixed part first.
  auto model_row = [&](const std::string& name, const std::vector<Timing>& decode,
                       const std::vector<Timing>& prefill) {
    std::vector<std::string> row = {"model", name, ""};
    for (size_t b = 0; b < batches.size(); ++b)
      row.push_back(b < decode.size() ? duration(decode[b].seconds) : "");
    for (size_t b = 0; b < batches.size(); ++b)
      row.push_back(b < prefill.size() ? duration(prefill[b].seconds) : "");
    row.emplace_back("");
    row.emplace_back("");
    t.add(row, "model");
  };
  model_row("the whole parent", c.whole_decode, c.whole_prefill);
  model_row("fixed part (embedding, norms, head)", c.fixed_decode, c.fixed_prefill);
  // Per variant name: the mean over its layers (one measurement serves them all).
  NameOrder order;
  struct Sums {
    int layers = 0;
    std::vector<double> decode, prefill;
    double weight_bytes = 0, kv_bytes = 0;
  };
  std::vector<Sums> sums;
  for (size_t l = 0; l < library.size(); ++l)
    for (const ts_kind part : {TS_KIND_ATTENTION, TS_KIND_FFN})
      for (size_t i = 0; i < library[l].of(part).size(); ++i) {
        const size_t k = order.index(part, library[l].of(part)[i].name);
        sums.resize(order.keys.size());
        Sums& s = sums[k];
        const VariantCost& v = c.layers[l].of(part)[i];
        s.decode.resize(batches.size());
        s.prefill.resize(batches.size());
        for (size_t b = 0; b < batches.size(); ++b) {
          if (b < v.decode.size()) s.decode[b] += v.decode[b].seconds;
          if (b < v.prefill.size()) s.prefill[b] += v.prefill[b].seconds;
        }
        s.weight_bytes += static_cast<double>(v.weight_bytes);
        s.kv_bytes += static_cast<double>(v.kv_bytes_per_token);
        ++s.layers;
      }
  for (size_t k = 0; k < order.keys.size(); ++k) {
    const Sums& s = sums[k];
    const double n = s.layers;
    std::vector<std::string> row = {part_name(order.keys[k].first), order.keys[k].second,
                                    std::to_string(s.layers)};
    for (const double d : s.decode) row.push_back(duration(d / n));
    for (const double p : s.prefill) row.push_back(duration(p / n));
    row.push_back(bytes(s.weight_bytes / n));
    row.push_back(s.kv_bytes > 0 ? bytes(s.kv_bytes / n) : "none");
    t.add(row);
  }
  std::ostringstream out;
  out << section_open("costs", title) << "<p class=\"note\">The scenario: a prompt of "
      << c.scenario.prefill_len << " tokens and " << c.scenario.decode_len
      << " generated; a decode step at context " << c.scenario.decode_context() << "; "
      << c.weight_dtype << " weights on " << c.threads << " threads; the median of "
      << c.scenario.repeats << " runs (" << duration(c.seconds)
      << " in all). A variant's time is per layer, timed in the whole model; a prefill is b "
      << "prompts.</p>\n"
      << t.html() << "</section>\n";
  return out.str();
}

std::string library_section(const ReportInputs& in) {
  const std::string title = "Block library";
  if (!in.library.value)
    return absent_section(in, in.library, "library", title, "library", "library/library.json");
  const LibraryIndex& index = *in.library.value;
  NameOrder order;
  struct Row {
    int layers = 0;
    std::string init;
    double parameters = 0;
    Summary fit;
  };
  std::vector<Row> rows;
  for (size_t l = 0; l < index.layers.size(); ++l)
    for (const ts_kind part : {TS_KIND_ATTENTION, TS_KIND_FFN})
      for (const Variant& v : index.layers[l].of(part)) {
        const size_t k = order.index(part, v.name);
        rows.resize(order.keys.size());
        Row& r = rows[k];
        ++r.layers;
        const std::string init(to_string(v.init));
        if (r.init.find(init) == std::string::npos) r.init += (r.init.empty() ? "" : ", ") + init;
        r.parameters += static_cast<double>(v.parameters);
        if (std::isfinite(v.fit_nmse)) r.fit.add(v.fit_nmse, l);
      }
  Table t{"library",
          {"part", "variant", "layers", "made by", "parameters per layer", "fit NMSE (mean)"},
          {false, false, true, false, true, true},
          {},
          {}};
  for (size_t k = 0; k < order.keys.size(); ++k) {
    const Row& r = rows[k];
    t.add({part_name(order.keys[k].first), order.keys[k].second, std::to_string(r.layers), r.init,
           grouped(static_cast<int64_t>(std::llround(r.parameters / r.layers))),
           r.fit.finite ? decimals(r.fit.mean(), 4) : ""});
  }
  std::ostringstream out;
  out << section_open("library", title) << "<p class=\"note\">Parent <code>"
      << xml_escape(index.parent_name) << "</code> (" << xml_escape(index.parent_path)
      << "): " << index.layers.size() << " layers, hidden size " << index.hidden_size
      << "; calibrated on " << grouped(index.calibration_tokens) << " tokens in "
      << decimals(index.calibration_seconds, 1) << " s"
      << (in.library_is_distilled ? "; the distilled library" : "") << ".</p>\n"
      << t.html();

  // Blockwise distillation: its own subsection, there when the config distils or it ran.
  if (in.distill.value) {
    const DistillSummary& d = *in.distill.value;
    NameOrder names;
    std::vector<Summary> before, after;
    for (size_t l = 0; l < d.layers.size(); ++l)
      for (const ts_kind part : {TS_KIND_ATTENTION, TS_KIND_FFN})
        for (const DistilledVariant& v : d.layers[l].of(part)) {
          const size_t k = names.index(part, v.name);
          before.resize(names.keys.size());
          after.resize(names.keys.size());
          before[k].add(v.before, l);
          after[k].add(v.after, l);
        }
    Table dt{"distill",
             {"part", "variant", "layers", "NMSE before", "after", "change"},
             {false, false, true, true, true, true},
             {},
             {}};
    for (size_t k = 0; k < names.keys.size(); ++k) {
      const double b = before[k].mean(), a = after[k].mean();
      dt.add({part_name(names.keys[k].first), names.keys[k].second, std::to_string(after[k].layers),
              decimals(b, 4), decimals(a, 4), std::isfinite(a / b) ? percent(a / b - 1.0) : "n/a"});
    }
    out << "<h3 id=\"distill\">Blockwise distillation</h3>\n<p class=\"note\">" << grouped(d.steps)
        << " steps, " << grouped(d.tokens) << " parent tokens, " << duration(d.seconds)
        << ". Held-out normalised MSE against the parent's block, the "
        << "mean over layers.</p>\n"
        << dt.html();
  } else if (!in.distill.error.empty()) {
    out << unreadable_section("distill", "Blockwise distillation", "distill", in.distill.error);
  } else if (in.distills) {
    out << missing_section(in, "distill", "Blockwise distillation", "distill",
                           "library-distilled/distill.json");
  }
  out << "</section>\n";
  return out.str();
}

// The page's opening figures: the parent, the main child's prediction and measurement.
std::string summary_table(const ReportInputs& in) {
  Table t{"figures", {"", ""}, {false, false}, {}, {}};
  if (in.library.value)
    t.add({"parent", in.library.value->parent_name + ", " +
                         std::to_string(in.library.value->layers.size()) + " layers"});
  if (in.solutions.value) {
    const Solutions& s = *in.solutions.value;
    if (const SolveRecord* r = s.find(s.main); r != nullptr && r->feasible)
      t.add({"main child, predicted",
             "summed KL " + decimals(r->predicted.kl, 4) + ", decode " +
                 times(r->predicted.decode_speedup) + " at batch " + std::to_string(r->batch_size) +
                 ", memory " + percent(r->predicted.memory_fraction) + " of the parent's"});
  }
  if (in.evaluation.value)
    for (const EvaluatedChild& c : in.evaluation.value->children) {
      std::string text = "KL " + decimals(c.kl, 4) + " per token, agreement " +
                         percent(c.agreement) + ", perplexity " +
                         decimals(in.evaluation.value->parent_perplexity, 2) + " \u2192 " +
                         decimals(c.perplexity, 2);
      for (const MeasuredSpeed& m : c.speed)
        text += "; decode " + times(m.decode_speedup) + " at batch " + std::to_string(m.batch);
      t.add({c.label + ", measured", text});
    }
  t.add({"output folder", in.output});
  // The figures table has no header row.
  std::string html = t.html();
  const size_t head = html.find("<thead>");
  const size_t body = html.find("<tbody>");
  if (head != std::string::npos && body != std::string::npos) html.erase(head, body - head);
  return html;
}

const char* kStyle =
    "body { font-family: sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em; "
    "color: #24292f; line-height: 1.4; }\n"
    "h1 { font-size: 1.7em; margin-bottom: 0.2em; }\n"
    "h2 { border-bottom: 1px solid #d0d7de; padding-bottom: 0.2em; margin-top: 1.8em; }\n"
    "h3 { margin-bottom: 0.3em; }\n"
    "table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }\n"
    "th, td { padding: 0.25em 1em 0.25em 0; border-bottom: 1px solid #d0d7de; text-align: left; "
    "vertical-align: top; }\n"
    "th { border-bottom: 2px solid #8c959f; vertical-align: bottom; }\n"
    "th.num, td.num { text-align: right; }\n"
    "td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }\n"
    "td:first-child { white-space: nowrap; }\n"
    "tr.main td { font-weight: bold; background: #ddf4ff; }\n"
    "tr.infeasible td, tr.stage-missing td { color: #57606a; }\n"
    "tr.stage-unreadable td { color: #cf222e; }\n"
    "table.figures td:first-child { font-weight: bold; padding-right: 2em; }\n"
    "code { background: #f6f8fa; padding: 0.1em 0.3em; border-radius: 3px; }\n"
    "p.note, figcaption, p.counts { color: #57606a; font-size: 0.9em; max-width: 60em; }\n"
    "p.missing { background: #fff8c5; border: 1px solid #d4a72c; padding: 0.5em 0.8em; }\n"
    "p.error { background: #ffebe9; border: 1px solid #ff8182; padding: 0.5em 0.8em; }\n"
    "figure { margin: 1em 0; }\n"
    "svg { max-width: 100%; height: auto; }\n";

}  // namespace

ReportInputs read_report_inputs(const PuzzleConfig& config) {
  ReportInputs in;
  in.config = config.source.string();
  in.output = config.output.string();
  in.distills = config.distill.tokens > 0;
  std::error_code ec;
  // Reads an artefact that is there; its error, not an exception, when it cannot be.
  auto read = [&](auto& into, const fs::path& path, auto&& reader) {
    if (!fs::exists(path, ec)) return;
    try {
      into.value = reader(path);
    } catch (const std::exception& e) {
      into.error = e.what();
    }
  };
  // The index the later stages read: the distilled library's, or the library's before it.
  const fs::path distilled = config.distilled_folder() / "library.json";
  if (in.distills && fs::exists(distilled, ec)) {
    read(in.library, distilled, read_library_index);
    in.library_is_distilled = true;
  } else {
    read(in.library, config.library_folder() / "library.json", read_library_index);
  }
  read(in.distill, config.distilled_folder() / "distill.json", read_distill_summary);
  read(in.evaluation, config.evaluation_path(), read_evaluation);
  // Scores, costs and solutions are read against the library's layers and variants.
  const std::vector<LayerVariants>* layers = in.library.value ? &in.library.value->layers : nullptr;
  auto against_library = [&](auto& into, const fs::path& path, auto&& reader) {
    if (!fs::exists(path, ec)) return;
    if (layers == nullptr) {
      into.error = path.string() +
                   " is there, but it is read against the block library's "
                   "index, which is not: run `tessera puzzle library " +
                   in.config + "`";
      return;
    }
    read(into, path, [&](const fs::path& p) { return reader(p, *layers); });
  };
  against_library(in.scores, config.scores_path(), read_scores);
  against_library(in.costs, config.costs_path(), read_costs);
  against_library(in.solutions, config.solutions_path(), read_solutions);
  return in;
}

std::string puzzle_report_html(const ReportInputs& in) {
  const std::string parent = in.library.value ? in.library.value->parent_name : "";
  const std::string title = "Puzzle report" + (parent.empty() ? "" : ": " + parent);
  std::ostringstream html;
  html << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<title>"
       << xml_escape(title) << "</title>\n<style>\n"
       << kStyle << "</style>\n</head>\n<body>\n<h1>" << xml_escape(title) << "</h1>\n"
       << "<p class=\"note\">Config <code>" << xml_escape(in.config) << "</code>; written by <code>"
       << xml_escape(command(in, "report")) << "</code>.</p>\n"
       << summary_table(in) << stages_section(in) << frontier_section(in)
       << architecture_section(in) << solutions_section(in) << evaluation_section(in)
       << scores_section(in) << costs_section(in) << library_section(in) << "</body>\n</html>\n";
  return html.str();
}

std::filesystem::path report_path(const PuzzleConfig& config) {
  return config.output / "report.html";
}

}  // namespace tessera::puzzle
