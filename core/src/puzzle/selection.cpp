#include <tessera/engine/error.hpp>
#include <tessera/puzzle/selection.hpp>

#include <algorithm>
#include <sstream>

#include "json_artefact.hpp"

namespace tessera::puzzle {

namespace {

size_t index_of(const std::vector<Variant>& list, const std::string& name, size_t layer,
                const char* part) {
  for (size_t i = 0; i < list.size(); ++i)
    if (list[i].name == name) return i;
  throw Error("layer " + std::to_string(layer) + " has no " + part + " variant '" + name + "'");
}

// A variant's memory at the batch size: its weights and its KV cache for the scenario.
int64_t memory_of(const VariantCost& c, const Scenario& s, int32_t batch) {
  return c.weight_bytes +
         static_cast<int64_t>(batch) * (s.prefill_len + s.decode_len) * c.kv_bytes_per_token;
}

void check_batch(const Costs& costs, size_t batch) {
  if (batch >= costs.scenario.batch_sizes.size())
    throw Error("batch index " + std::to_string(batch) + " is outside the scenario's " +
                std::to_string(costs.scenario.batch_sizes.size()) + " batch sizes");
}

}  // namespace

Choice parent_choice(const std::vector<LayerVariants>& library) {
  Choice c;
  for (const LayerVariants& lv : library) {
    std::pair<std::string, std::string> p;
    for (const Variant& v : lv.attention)
      if (v.init == VariantInit::kParent) p.first = v.name;
    for (const Variant& v : lv.ffn)
      if (v.init == VariantInit::kParent) p.second = v.name;
    c.push_back(std::move(p));
  }
  return c;
}

Prediction predict(const Choice& choice, const std::vector<LayerVariants>& library,
                   const ScoreState& scores, const Costs& costs, size_t batch) {
  check_batch(costs, batch);
  if (choice.size() != library.size())
    throw Error("a choice of " + std::to_string(choice.size()) + " layers for a library of " +
                std::to_string(library.size()));
  const int32_t b = costs.scenario.batch_sizes[batch];
  const auto totals = [&](const Choice& c, Prediction& p) {
    p.decode_s = costs.fixed_decode[batch].seconds;
    p.prefill_s = costs.fixed_prefill[batch].seconds;
    for (size_t l = 0; l < library.size(); ++l) {
      const size_t a = index_of(library[l].attention, c[l].first, l, "attention");
      const size_t f = index_of(library[l].ffn, c[l].second, l, "FFN");
      for (const auto& [part, i] : {std::pair{TS_KIND_ATTENTION, a}, std::pair{TS_KIND_FFN, f}}) {
        const VariantCost& vc = costs.layers[l].of(part)[i];
        p.decode_s += vc.decode[batch].seconds;
        p.prefill_s += vc.prefill[batch].seconds;
        p.memory_bytes += memory_of(vc, costs.scenario, b);
        p.kl += mean_kl(scores, scores.layers[l].of(part)[i]);
      }
    }
  };
  Prediction p, parent;
  totals(choice, p);
  totals(parent_choice(library), parent);
  p.decode_speedup = parent.decode_s / p.decode_s;
  p.prefill_speedup = parent.prefill_s / p.prefill_s;
  p.memory_fraction = parent.memory_bytes > 0 ? static_cast<double>(p.memory_bytes) /
                                                    static_cast<double>(parent.memory_bytes)
                                              : 0.0;
  return p;
}

std::string selection_problem(const std::vector<LayerVariants>& library, const ScoreState& scores,
                              const Costs& costs, const Constraints& k,
                              const std::string& description) {
  check_batch(costs, k.batch);
  if (k.decode_speedup < 0 || k.prefill_speedup < 0 || k.memory_fraction < 0)
    throw Error("a speedup or memory fraction is negative");
  const int32_t b = costs.scenario.batch_sizes[k.batch];
  const Prediction parent = predict(parent_choice(library), library, scores, costs, k.batch);
  ojson doc;
  doc["problem"] = "puzzle.block_selection";
  doc["description"] = description;
  ojson budgets = ojson::object();
  if (k.decode_speedup > 0)
    budgets["decode_s"] =
        std::max(0.0, parent.decode_s / k.decode_speedup - costs.fixed_decode[k.batch].seconds);
  if (k.prefill_speedup > 0)
    budgets["prefill_s"] =
        std::max(0.0, parent.prefill_s / k.prefill_speedup - costs.fixed_prefill[k.batch].seconds);
  if (k.memory_fraction > 0)
    budgets["memory_bytes"] = k.memory_fraction * static_cast<double>(parent.memory_bytes);
  doc["budgets"] = budgets;
  doc["layers"] = per_variant_json(library, [&](size_t l, ts_kind part, size_t i) {
    const VariantCost& c = costs.layers[l].of(part)[i];
    return ojson{{"score", mean_kl(scores, scores.layers[l].of(part)[i])},
                 {"costs",
                  {{"decode_s", c.decode[k.batch].seconds},
                   {"prefill_s", c.prefill[k.batch].seconds},
                   {"memory_bytes", static_cast<double>(memory_of(c, costs.scenario, b))}}}};
  });
  if (k.max_common >= 0 && !k.earlier.empty()) {
    ojson earlier = ojson::array();
    for (const Choice& c : k.earlier) {
      ojson one = ojson::array();
      for (const auto& [a, f] : c) one.push_back({{"attention", a}, {"ffn", f}});
      earlier.push_back(std::move(one));
    }
    doc["diversity"] = {{"max_common", k.max_common}, {"solutions", std::move(earlier)}};
  }
  return doc.dump(1) + "\n";
}

std::string unreachable_target(const std::vector<LayerVariants>& library, const ScoreState& scores,
                               const Costs& costs, const Constraints& k) {
  check_batch(costs, k.batch);
  const Prediction parent = predict(parent_choice(library), library, scores, costs, k.batch);
  const auto check = [&](const char* what, double speedup, double whole,
                         double fixed) -> std::string {
    if (speedup <= 0 || whole / speedup > fixed) return "";
    std::ostringstream out;
    out << what << "_speedup " << speedup << " needs a " << what << " of " << whole / speedup * 1e3
        << " ms, but the model outside its blocks (embedding, norms, head) takes " << fixed * 1e3
        << " ms; no choice of blocks reaches it (the most is " << whole / fixed
        << "x, every block a no-op)";
    return out.str();
  };
  std::string reason =
      check("decode", k.decode_speedup, parent.decode_s, costs.fixed_decode[k.batch].seconds);
  if (reason.empty())
    reason =
        check("prefill", k.prefill_speedup, parent.prefill_s, costs.fixed_prefill[k.batch].seconds);
  return reason;
}

Selection parse_selection(const std::string& text, const std::vector<LayerVariants>& library) {
  ojson j;
  try {
    j = ojson::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(std::string("the search's solution is not valid JSON: ") + e.what());
  }
  Selection s;
  const auto status = j.find("status");
  if (!j.is_object() || status == j.end() || !status->is_string())
    throw Error("the search's solution has no \"status\"");
  if (*status == "infeasible") {
    const auto reason = j.find("reason");
    s.reason = reason != j.end() && reason->is_string() ? reason->get<std::string>() : "";
    return s;
  }
  const auto layers = j.find("layers");
  if (layers == j.end() || !layers->is_array() || layers->size() != library.size())
    throw Error("the search's solution does not give one choice per layer of the " +
                std::to_string(library.size()) + "-layer library");
  for (size_t l = 0; l < library.size(); ++l) {
    const ojson& e = (*layers)[l];
    if (!e.is_object() || !e.contains("attention") || !e.contains("ffn") ||
        !e["attention"].is_string() || !e["ffn"].is_string())
      throw Error("the search's solution: layers[" + std::to_string(l) +
                  "] must name an attention and an FFN variant");
    s.choice.emplace_back(e["attention"].get<std::string>(), e["ffn"].get<std::string>());
    (void)index_of(library[l].attention, s.choice.back().first, l, "attention");
    (void)index_of(library[l].ffn, s.choice.back().second, l, "FFN");
  }
  s.feasible = true;
  return s;
}

int32_t common_choices(const Choice& a, const Choice& b) {
  int32_t n = 0;
  for (size_t l = 0; l < std::min(a.size(), b.size()); ++l)
    n += (a[l].first == b[l].first ? 1 : 0) + (a[l].second == b[l].second ? 1 : 0);
  return n;
}

}  // namespace tessera::puzzle
