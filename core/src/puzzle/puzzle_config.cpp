#include <tessera/engine/error.hpp>
#include <tessera/engine/input_file.hpp>
#include <tessera/engine/toml_reader.hpp>
#include <tessera/puzzle/puzzle_config.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

namespace tessera::puzzle {

namespace {

namespace fs = std::filesystem;
using namespace toml_fields;

fs::path required_path(const Reader& r, const toml::table& t, std::string_view key,
                       const std::string& where, const fs::path& base_dir,
                       const std::string& what) {
  const std::optional<std::string> s = get_string(r, t, key, where);
  if (!s)
    r.fail(t.source(), "missing required key '" + std::string(key) + "' in " + where + ": " + what);
  if (s->empty()) r.fail(t.get(key)->source(), key_in(key, where) + " is empty; expected " + what);
  return config_path(base_dir, *s);
}

std::string number_text(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

// An array of numbers, each checked by `ok`.
template <typename T, typename Ok>
std::vector<T> number_list(const Reader& r, const toml::table& t, std::string_view key,
                           const std::string& where, const std::string& expected, Ok ok) {
  const toml::node* node = t.get(key);
  const toml::array* list = node->as_array();
  if (list == nullptr || list->empty())
    r.fail(node->source(), key_in(key, where) + " must be a non-empty array of " + expected +
                               ", got " + (list ? "an empty array" : type_description(*node)));
  std::vector<T> out;
  for (const toml::node& item : *list) {
    std::optional<double> v;
    if (const auto* i = item.as_integer()) v = static_cast<double>(i->get());
    if (const auto* f = item.as_floating_point()) v = f->get();
    if (!v || !ok(*v) || (std::is_integral_v<T> && std::floor(*v) != *v))
      r.fail(item.source(), key_in(key, where) + " holds " +
                                (v ? number_text(*v) : std::string(type_description(item))) +
                                "; expected " + expected);
    out.push_back(static_cast<T>(*v));
  }
  return out;
}

void parse_library(const Reader& r, const toml::table& root, PuzzleConfig& config) {
  const std::string where = "[library]";
  const toml::table* t = get_table(r, root, "library", "the document", " ([library])");
  if (t == nullptr) return;  // every key has a default
  check_keys(r, *t, where,
             {"ffn_fractions", "ffn_width_multiple", "kv_heads", "attention_linear",
              "attention_noop", "ffn_linear", "ffn_noop", "ridge", "calibration_tokens"});
  LibrarySection& s = config.library;
  LibraryOptions& o = s.options;
  if (t->contains("ffn_fractions")) {
    o.ffn_fractions = number_list<double>(r, *t, "ffn_fractions", where,
                                          "fractions in (0, 1] of the parent's FFN width",
                                          [](double v) { return v > 0.0 && v <= 1.0; });
  }
  o.ffn_width_multiple =
      get_int32(r, *t, "ffn_width_multiple", where, 1).value_or(o.ffn_width_multiple);
  if (t->contains("kv_heads")) {
    o.kv_heads = number_list<int32_t>(r, *t, "kv_heads", where, "KV-head counts >= 1",
                                      [](double v) { return v >= 1.0 && v <= 1 << 20; });
  }
  o.attention_linear = get_bool(r, *t, "attention_linear", where).value_or(o.attention_linear);
  o.attention_noop = get_bool(r, *t, "attention_noop", where).value_or(o.attention_noop);
  o.ffn_linear = get_bool(r, *t, "ffn_linear", where).value_or(o.ffn_linear);
  o.ffn_noop = get_bool(r, *t, "ffn_noop", where).value_or(o.ffn_noop);
  if (const std::optional<double> ridge = get_number(r, *t, "ridge", where)) {
    if (!(std::isfinite(*ridge) && *ridge > 0.0 && *ridge < 1.0))
      r.fail(t->get("ridge")->source(), key_in("ridge", where) + " is " + number_text(*ridge) +
                                            "; expected a number in (0, 1)");
    o.ridge = *ridge;
  }
  if (const std::optional<int64_t> n = get_int(r, *t, "calibration_tokens", where)) {
    if (*n < 1)
      r.fail(t->get("calibration_tokens")->source(), key_in("calibration_tokens", where) + " is " +
                                                         std::to_string(*n) +
                                                         "; expected an integer >= 1");
    s.calibration_tokens = *n;
  }
}

void parse_score(const Reader& r, const toml::table& root, PuzzleConfig& config) {
  const std::string where = "[score]";
  const toml::table* t = get_table(r, root, "score", "the document", " ([score])");
  if (t == nullptr) return;
  check_keys(r, *t, where, {"tokens"});
  if (const std::optional<int64_t> n = get_int(r, *t, "tokens", where)) {
    if (*n < 1)
      r.fail(t->get("tokens")->source(),
             key_in("tokens", where) + " is " + std::to_string(*n) + "; expected an integer >= 1");
    config.score.tokens = *n;
  }
}

void parse_cost(const Reader& r, const toml::table& root, PuzzleConfig& config) {
  const std::string where = "[cost]";
  const toml::table* t = get_table(r, root, "cost", "the document", " ([cost])");
  if (t == nullptr) return;
  check_keys(r, *t, where,
             {"prefill_len", "decode_len", "batch_sizes", "repeats", "weight_dtype", "threads"});
  CostSection& c = config.cost;
  Scenario& s = c.scenario;
  s.prefill_len = get_int32(r, *t, "prefill_len", where, 1).value_or(s.prefill_len);
  s.decode_len = get_int32(r, *t, "decode_len", where, 1).value_or(s.decode_len);
  s.repeats = get_int32(r, *t, "repeats", where, 1, 1000).value_or(s.repeats);
  c.threads = get_int32(r, *t, "threads", where, 0, 4096).value_or(c.threads);
  if (t->contains("batch_sizes")) {
    s.batch_sizes = number_list<int32_t>(r, *t, "batch_sizes", where, "batch sizes >= 1",
                                         [](double v) { return v >= 1.0 && v <= 4096; });
  }
  if (const std::optional<std::string> dtype =
          get_choice(r, *t, "weight_dtype", where, {"f32", "f16", "bf16"})) {
    c.weight_dtype = *dtype == "f32" ? TS_F32 : *dtype == "f16" ? TS_F16 : TS_BF16;
  }
}

std::vector<std::string> string_list(const Reader& r, const toml::table& t, std::string_view key,
                                     const std::string& where, const std::string& what) {
  const toml::node* node = t.get(key);
  const toml::array* list = node->as_array();
  if (list == nullptr)
    r.fail(node->source(), key_in(key, where) + " must be an array of " + what + ", got " +
                               type_description(*node));
  std::vector<std::string> out;
  for (const toml::node& item : *list) {
    const auto* text = item.as_string();
    if (text == nullptr || text->get().empty())
      r.fail(item.source(), key_in(key, where) + " holds " + std::string(type_description(item)) +
                                "; expected non-empty " + what);
    out.push_back(text->get());
  }
  return out;
}

void parse_solve(const Reader& r, const toml::table& root, PuzzleConfig& config) {
  const std::string where = "[solve]";
  const toml::table* t = get_table(r, root, "solve", "the document", " ([solve])");
  if (t == nullptr) return;
  check_keys(r, *t, where,
             {"provider", "plugin", "compare", "batch_size", "decode_speedup", "prefill_speedup",
              "memory_fraction", "frontier", "solutions", "diversity"});
  SolveSection& s = config.solve;
  if (const std::optional<std::string> p = get_string(r, *t, "provider", where)) {
    if (p->empty()) r.fail(t->get("provider")->source(), key_in("provider", where) + " is empty");
    s.provider = *p;
  }
  s.plugin = get_string(r, *t, "plugin", where).value_or(s.plugin);
  if (t->contains("compare")) s.compare = string_list(r, *t, "compare", where, "provider names");
  s.batch_size = get_int32(r, *t, "batch_size", where, 1, 4096).value_or(s.batch_size);
  const auto ratio = [&](std::string_view key, double& value, bool zero_ok, const char* expected) {
    if (const std::optional<double> v = get_number(r, *t, key, where)) {
      if (!std::isfinite(*v) || *v < 0 || (*v == 0 && !zero_ok))
        r.fail(t->get(key)->source(),
               key_in(key, where) + " is " + number_text(*v) + "; expected " + expected);
      value = *v;
    }
  };
  ratio("decode_speedup", s.decode_speedup, true, "a number > 0 (0: no decode budget)");
  ratio("prefill_speedup", s.prefill_speedup, true, "a number > 0 (0: no prefill budget)");
  ratio("memory_fraction", s.memory_fraction, true, "a number > 0 (0: no memory budget)");
  ratio("diversity", s.diversity, true, "a share in [0, 1]");
  if (s.diversity > 1)
    r.fail(t->get("diversity")->source(), key_in("diversity", where) + " is " +
                                              number_text(s.diversity) +
                                              "; expected a share in [0, 1]");
  if (t->contains("frontier")) {
    s.frontier = number_list<double>(r, *t, "frontier", where, "decode speedups > 0",
                                     [](double v) { return v > 0.0 && std::isfinite(v); });
  }
  s.solutions = get_int32(r, *t, "solutions", where, 1, 100).value_or(s.solutions);
}

// The keys every distillation stage shares (DistillRun).
void parse_distill_run(const Reader& r, const toml::table& t, const std::string& where,
                       DistillRun& run) {
  const auto count = [&](std::string_view key, int64_t& value) {
    if (const std::optional<int64_t> n = get_int(r, t, key, where)) {
      if (*n < 0)
        r.fail(t.get(key)->source(),
               key_in(key, where) + " is " + std::to_string(*n) + "; expected an integer >= 0");
      value = *n;
    }
  };
  count("tokens", run.tokens);
  count("warmup_steps", run.warmup_steps);
  count("checkpoint_every", run.checkpoint_every);
  count("eval_every", run.eval_every);
  if (const std::optional<double> lr = get_number(r, t, "lr", where)) {
    if (!(std::isfinite(*lr) && *lr > 0.0 && *lr < 1.0))
      r.fail(t.get("lr")->source(),
             key_in("lr", where) + " is " + number_text(*lr) + "; expected a number in (0, 1)");
    run.lr = *lr;
  }
  run.eval_batches = get_int32(r, t, "eval_batches", where, 1, 100000).value_or(run.eval_batches);
}

void parse_distill(const Reader& r, const toml::table& root, PuzzleConfig& config) {
  const std::string where = "[distill]";
  const toml::table* t = get_table(r, root, "distill", "the document", " ([distill])");
  if (t == nullptr) return;
  check_keys(r, *t, where,
             {"tokens", "lr", "warmup_steps", "checkpoint_every", "eval_every", "eval_batches"});
  parse_distill_run(r, *t, where, config.distill);
}

void parse_evaluate(const Reader& r, const toml::table& root, PuzzleConfig& config,
                    const fs::path& base_dir) {
  const std::string where = "[evaluate]";
  const toml::table* t = get_table(r, root, "evaluate", "the document", " ([evaluate])");
  if (t == nullptr) return;
  check_keys(
      r, *t, where,
      {"tokens", "repeats", "children", "mmlu", "mmlu_per_subject", "folders", "skip_tokens"});
  EvaluateSection& e = config.evaluate;
  if (const std::optional<int64_t> n = get_int(r, *t, "tokens", where)) {
    if (*n < 1)
      r.fail(t->get("tokens")->source(),
             key_in("tokens", where) + " is " + std::to_string(*n) + "; expected an integer >= 1");
    e.tokens = *n;
  }
  e.repeats = get_int32(r, *t, "repeats", where, 1, 1000).value_or(e.repeats);
  if (t->contains("children"))
    e.children = string_list(r, *t, "children", where, "solution labels");
  if (const std::optional<std::string> path = get_string(r, *t, "mmlu", where);
      path && !path->empty())
    e.mmlu = config_path(base_dir, *path);
  e.mmlu_per_subject =
      get_int32(r, *t, "mmlu_per_subject", where, 0, 1000000).value_or(e.mmlu_per_subject);
  if (const std::optional<int64_t> n = get_int(r, *t, "skip_tokens", where)) {
    if (*n < 0)
      r.fail(t->get("skip_tokens")->source(), key_in("skip_tokens", where) + " is " +
                                                  std::to_string(*n) +
                                                  "; expected an integer >= 0");
    e.skip_tokens = *n;
  }
  if (const toml::table* folders =
          get_table(r, *t, "folders", where, " of label = \"folder\" (children made elsewhere)")) {
    for (const auto& [key, node] : *folders) {
      const std::string label(key.str());
      const auto* text = node.as_string();
      if (text == nullptr || text->get().empty())
        r.fail(node.source(), key_in(label, "[evaluate.folders]") + " is " +
                                  std::string(type_description(node)) +
                                  "; expected a model folder's path");
      for (const std::string& taken : e.children)
        if (taken == label)
          r.fail(key.source(), "[evaluate.folders] names '" + label +
                                   "', which [evaluate] children names too; give it another "
                                   "label");
      e.folders.emplace_back(label, config_path(base_dir, text->get()));
    }
  }
}

void parse_global_distill(const Reader& r, const toml::table& root, PuzzleConfig& config) {
  const std::string where = "[global_distill]";
  const toml::table* t =
      get_table(r, root, "global_distill", "the document", " ([global_distill])");
  if (t == nullptr) return;
  check_keys(r, *t, where,
             {"tokens", "lr", "warmup_steps", "kl", "cosine", "checkpoint_every", "eval_every",
              "eval_batches"});
  GlobalDistillSection& g = config.global_distill;
  parse_distill_run(r, *t, where, g);
  const auto weight = [&](std::string_view key, double& value) {
    if (const std::optional<double> w = get_number(r, *t, key, where)) {
      if (!(std::isfinite(*w) && *w >= 0.0))
        r.fail(t->get(key)->source(),
               key_in(key, where) + " is " + number_text(*w) + "; expected a weight >= 0");
      value = *w;
    }
  };
  weight("kl", g.kl);
  weight("cosine", g.cosine);
  if (g.kl == 0.0 && g.cosine == 0.0)
    r.fail(t->source(), where +
                            " has kl = 0 and cosine = 0: the loss would be 0; give either a "
                            "weight above 0");
}

}  // namespace

PuzzleConfig parse_puzzle_config(std::string_view text, const std::string& source_name,
                                 const fs::path& base_dir) {
  const toml::table root = parse_document(text, source_name);
  const Reader r(source_name);
  check_keys(r, root, "the top level",
             {"puzzle", "data", "library", "distill", "score", "cost", "solve", "global_distill",
              "evaluate"});
  PuzzleConfig config;
  config.source = source_name;
  const toml::table* p = get_table(r, root, "puzzle", "the document", " ([puzzle])");
  if (p == nullptr)
    r.fail(root.source(),
           "missing [puzzle] table; it needs parent (the model to rebuild) and "
           "output (the run's folder)");
  check_keys(r, *p, "[puzzle]", {"parent", "output"});
  config.parent = required_path(r, *p, "parent", "[puzzle]", base_dir,
                                "the parent model (a GGUF file, a Hugging Face folder or a "
                                "manifest)");
  config.output = required_path(r, *p, "output", "[puzzle]", base_dir,
                                "the run's folder, where every stage writes its artefact");
  config.data = parse_data_table(text, source_name, base_dir);
  parse_library(r, root, config);
  parse_distill(r, root, config);
  parse_score(r, root, config);
  parse_cost(r, root, config);
  parse_solve(r, root, config);
  parse_global_distill(r, root, config);
  parse_evaluate(r, root, config, base_dir);
  const std::vector<int32_t>& sizes = config.cost.scenario.batch_sizes;
  if (std::find(sizes.begin(), sizes.end(), config.solve.batch_size) == sizes.end()) {
    const toml::table* t = root["solve"].as_table();
    const toml::node* at = t != nullptr ? t->get("batch_size") : nullptr;
    std::string list;
    for (const int32_t b : sizes) list += (list.empty() ? "" : ", ") + std::to_string(b);
    r.fail(at != nullptr ? at->source() : root.source(),
           "'batch_size' in [solve] is " + std::to_string(config.solve.batch_size) +
               "; expected one of [cost] batch_sizes (" + list + ")");
  }
  return config;
}

PuzzleConfig load_puzzle_config(const fs::path& path) {
  if (const std::string what = not_a_regular_file(path); !what.empty())
    throw ManifestError(path.string(), 1, 1,
                        "the puzzle config is " + what + ", not a regular file");
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    std::error_code ec;
    throw ManifestError(
        path.string(), 1, 1,
        fs::exists(path, ec) ? "cannot read the puzzle config" : "puzzle config does not exist");
  }
  std::ostringstream text;
  text << file.rdbuf();
  std::error_code ec;
  fs::path base_dir = fs::absolute(path, ec).parent_path();
  if (ec) base_dir = path.parent_path();
  PuzzleConfig config = parse_puzzle_config(text.str(), path.string(), base_dir);
  config.source = path;
  return config;
}

}  // namespace tessera::puzzle
