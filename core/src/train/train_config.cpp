// Training configs: parsing (every error located) and the checks against the opened models.
#include <tessera/engine/input_file.hpp>
#include <tessera/engine/toml_reader.hpp>
#include <tessera/train/corpus.hpp>
#include <tessera/train/train_config.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>
#include <system_error>
#include <tuple>

namespace fs = std::filesystem;

namespace tessera {

namespace {

using toml_fields::check_keys;
using toml_fields::get_choice;
using toml_fields::get_int;
using toml_fields::get_int32;
using toml_fields::get_number;
using toml_fields::get_string;
using toml_fields::get_table;
using toml_fields::key_in;
using toml_fields::Reader;
using toml_fields::resolve;
using toml_fields::type_description;

std::string number_text(double value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

}  // namespace

fs::path config_path(const fs::path& base_dir, const std::string& text) {
  if (text == "~" || text.rfind("~/", 0) == 0) {
    const char* home = std::getenv("HOME");
    if (home != nullptr && *home != '\0')
      return resolve(base_dir, std::string(home) + text.substr(1));
  }
  return resolve(base_dir, text);
}

namespace {

class ConfigReader {
 public:
  ConfigReader(const Reader& r, TrainConfig& config) : r_(r), config_(config) {}

  const Reader& reader() const { return r_; }

  // Records where a table and its keys are, so later checks can point at them.
  void note_table(const std::string& name, const toml::table& t) {
    config_.locations[name] = r_.location(t.source());
    for (auto&& [key, node] : t) {
      config_.locations[name + "." + std::string(key.str())] = r_.location(node.source());
    }
  }

  // A number in a range; `expected` completes "...; expected <expected>".
  std::optional<double> number(const toml::table& t, std::string_view key, const std::string& where,
                               double lo, double hi, bool lo_inclusive, bool hi_inclusive,
                               const std::string& expected) const {
    const std::optional<double> v = get_number(r_, t, key, where);
    if (!v) return v;
    const bool ok = std::isfinite(*v) && (lo_inclusive ? *v >= lo : *v > lo) &&
                    (hi_inclusive ? *v <= hi : *v < hi);
    if (!ok) {
      r_.fail(t.get(key)->source(),
              key_in(key, where) + " is " + number_text(*v) + "; expected " + expected);
    }
    return v;
  }

  std::optional<int64_t> int_at_least(const toml::table& t, std::string_view key,
                                      const std::string& where, int64_t min) const {
    const std::optional<int64_t> v = get_int(r_, t, key, where);
    if (v && *v < min) {
      r_.fail(t.get(key)->source(), key_in(key, where) + " is " + std::to_string(*v) +
                                        "; expected an integer >= " + std::to_string(min));
    }
    return v;
  }

  // A non-empty string that names a path, resolved against the config's folder.
  std::optional<fs::path> path(const toml::table& t, std::string_view key, const std::string& where,
                               const fs::path& base_dir, const std::string& what) const {
    const std::optional<std::string> s = get_string(r_, t, key, where);
    if (!s) return std::nullopt;
    if (s->empty()) {
      r_.fail(t.get(key)->source(), key_in(key, where) + " is empty; expected " + what +
                                        " (relative paths are taken from the config's folder)");
    }
    return config_path(base_dir, *s);
  }

  [[noreturn]] void missing(const toml::table& t, std::string_view key, const std::string& where,
                            const std::string& what) const {
    r_.fail(t.source(),
            "missing required key '" + std::string(key) + "' in " + where + ": " + what);
  }

 private:
  const Reader& r_;
  TrainConfig& config_;
};

// ---------------------------------------------------------------------- [run]

void parse_run(const ConfigReader& c, const toml::table& root, TrainConfig& config,
               const fs::path& base_dir) {
  const Reader& r = c.reader();
  const std::string where = "[run]";
  const toml::table* t = get_table(r, root, "run", "the document", " ([run])");
  if (t == nullptr) {
    r.fail(root.source(), "missing [run] table; it needs at least output (a folder) and steps");
  }
  check_keys(r, *t, where, {"objective", "output", "seed", "steps", "checkpoint_every", "resume"});
  RunSection& run = config.run;
  if (const std::optional<std::string> objective =
          get_choice(r, *t, "objective", where, {"lm", "distill-blocks", "distill", "medusa"})) {
    run.objective = *objective == "lm"               ? TrainObjective::kLm
                    : *objective == "distill-blocks" ? TrainObjective::kDistillBlocks
                    : *objective == "medusa"         ? TrainObjective::kMedusa
                                                     : TrainObjective::kDistill;
  }
  const std::optional<fs::path> output =
      c.path(*t, "output", where, base_dir, "the run's folder (checkpoints, log, report)");
  if (!output) c.missing(*t, "output", where, "the run's folder (checkpoints, log, report)");
  run.output = *output;
  if (run.output.filename().empty()) run.output = run.output.parent_path();  // "runs/a/"
  run.seed = static_cast<uint64_t>(c.int_at_least(*t, "seed", where, 0).value_or(0));
  const std::optional<int64_t> steps = c.int_at_least(*t, "steps", where, 1);
  if (!steps) c.missing(*t, "steps", where, "the number of optimizer steps");
  run.steps = *steps;
  run.checkpoint_every = c.int_at_least(*t, "checkpoint_every", where, 0).value_or(0);
  if (const toml::node* resume = t->get("resume")) {
    if (const auto* b = resume->as_boolean()) {
      run.resume = b->get();
    } else if (const auto* s = resume->as_string(); s != nullptr && !s->get().empty()) {
      run.resume = true;
      run.resume_from = config_path(base_dir, s->get());
    } else {
      r.fail(resume->source(),
             "'resume' in [run] must be true, false or a checkpoint's path, got " +
                 std::string(s != nullptr ? "an empty string" : type_description(*resume)));
    }
  }
}

// ------------------------------------------------------------- [model] [parent]

fs::path parse_model_path(const ConfigReader& c, const toml::table& root, const std::string& name,
                          const fs::path& base_dir, const std::string& what) {
  const Reader& r = c.reader();
  const toml::table* t = get_table(r, root, name, "the document", " ([" + name + "])");
  const std::string where = "[" + name + "]";
  if (t == nullptr) r.fail(root.source(), "missing " + where + " table with the path of " + what);
  check_keys(r, *t, where, {"path"});
  const std::string accepted = "a manifest, a GGUF file or a Hugging Face folder";
  const std::optional<fs::path> path = c.path(*t, "path", where, base_dir, accepted);
  if (!path) c.missing(*t, "path", where, what + ": " + accepted);
  return *path;
}

// --------------------------------------------------------------------- [data]

std::vector<std::string> parse_patterns(const Reader& r, const toml::table& t, std::string_view key,
                                        const std::string& where, const std::string& example) {
  const toml::node* node = t.get(key);
  std::vector<std::string> out;
  auto add = [&](const toml::node& item) {
    const auto* s = item.as_string();
    if (s == nullptr || s->get().empty()) {
      r.fail(item.source(), "each pattern of " + key_in(key, where) +
                                " must be a non-empty string" + example + ", got " +
                                (s != nullptr ? "an empty string" : type_description(item)));
    }
    out.push_back(s->get());
  };
  if (const auto* list = node->as_array()) {
    if (list->empty()) {
      r.fail(node->source(),
             key_in(key, where) + " is an empty list; give at least one pattern" + example);
    }
    for (const toml::node& item : *list) add(item);
  } else if (node->is_string()) {
    add(*node);
  } else {
    r.fail(node->source(), key_in(key, where) + " must be a list of patterns" + example + ", got " +
                               type_description(*node));
  }
  return out;
}

void parse_data(const ConfigReader& c, const toml::table& root, TrainConfig& config,
                const fs::path& base_dir) {
  const Reader& r = c.reader();
  const std::string where = "[data]";
  const toml::table* t = get_table(r, root, "data", "the document", " ([data])");
  if (t == nullptr)
    r.fail(root.source(), "missing [data] table; it needs at least path (the corpus)");
  check_keys(r, *t, where,
             {"path", "include", "seq_len", "batch_size", "held_out_fraction", "held_out_documents",
              "split_seed", "eval_every", "eval_batches", "separator", "cache"});
  DataSection& d = config.data;
  const std::string corpus = "the corpus: a folder of text files or one file";
  const std::optional<fs::path> path = c.path(*t, "path", where, base_dir, corpus);
  if (!path) c.missing(*t, "path", where, corpus + " (scripts/fetch-corpus.sh prints one)");
  d.path = *path;
  if (t->contains("include")) {
    d.include = parse_patterns(r, *t, "include", where, " like \"*.rst.txt\"");
  }
  d.seq_len = get_int32(r, *t, "seq_len", where, 1).value_or(d.seq_len);
  d.batch_size = get_int32(r, *t, "batch_size", where, 1).value_or(d.batch_size);
  if (t->contains("held_out_documents")) {
    d.held_out_fraction = 0.0;
    d.held_out_documents = *c.int_at_least(*t, "held_out_documents", where, 0);
    if (const toml::node* fraction = t->get("held_out_fraction")) {
      const toml::node* documents = t->get("held_out_documents");
      const toml::node* later =
          fraction->source().begin.line > documents->source().begin.line ? fraction : documents;
      r.fail(later->source(), "give held_out_fraction or held_out_documents in [data], not both");
    }
  } else {
    d.held_out_fraction =
        c.number(*t, "held_out_fraction", where, 0.0, 1.0, true, false,
                 "a fraction in [0, 1) of the corpus' tokens (0: no held-out part)")
            .value_or(d.held_out_fraction);
  }
  d.split_seed = static_cast<uint64_t>(c.int_at_least(*t, "split_seed", where, 0).value_or(0));
  if (const std::optional<int64_t> every = c.int_at_least(*t, "eval_every", where, 0)) {
    d.eval_every = *every;
    if (*every > 0 && !d.has_held_out()) {
      r.fail(t->get("eval_every")->source(),
             "'eval_every' in [data] is " + std::to_string(*every) +
                 " but there is no held-out part to measure (held_out_fraction or "
                 "held_out_documents is 0); hold some text out or leave eval_every out");
    }
  } else if (!d.has_held_out()) {
    d.eval_every = 0;
  }
  d.eval_batches = get_int32(r, *t, "eval_batches", where, 1).value_or(d.eval_batches);
  if (const std::optional<std::string> separator = get_string(r, *t, "separator", where)) {
    if (separator->empty()) {
      r.fail(t->get("separator")->source(),
             "'separator' in [data] is empty; expected \"eos\", \"bos\" or a token's text such "
             "as \"<|endoftext|>\"");
    }
    d.separator = *separator;
  }
  if (const toml::node* cache = t->get("cache")) {
    if (const auto* b = cache->as_boolean()) {
      d.cache = b->get();
    } else if (const auto* s = cache->as_string(); s != nullptr && !s->get().empty()) {
      d.cache_path = config_path(base_dir, s->get());
    } else {
      r.fail(cache->source(),
             "'cache' in [data] must be true, false or the token cache's path, got " +
                 std::string(s != nullptr ? "an empty string" : type_description(*cache)));
    }
  }
}

// ---------------------------------------------------------------- [optimizer]

void parse_optimizer(const ConfigReader& c, const toml::table& root, TrainConfig& config) {
  const Reader& r = c.reader();
  const std::string where = "[optimizer]";
  const toml::table* t = get_table(r, root, "optimizer", "the document", " ([optimizer])");
  if (t == nullptr) return;
  check_keys(r, *t, where,
             {"lr", "betas", "eps", "weight_decay", "clip_norm", "warmup_steps", "schedule",
              "min_lr_ratio", "grad_accumulation"});
  OptimizerSection& o = config.optimizer;
  const double inf = std::numeric_limits<double>::infinity();
  o.lr = c.number(*t, "lr", where, 0.0, inf, false, false, "a finite number > 0").value_or(o.lr);
  if (const toml::node* betas = t->get("betas")) {
    const toml::array* list = betas->as_array();
    if (list == nullptr || list->size() != 2) {
      r.fail(betas->source(),
             "'betas' in [optimizer] must be a list of two numbers like [0.9, 0.95], got " +
                 (list != nullptr ? "a list of " + std::to_string(list->size())
                                  : std::string(type_description(*betas))));
    }
    double values[2] = {};
    for (size_t i = 0; i < 2; ++i) {
      const toml::node& item = *list->get(i);
      std::optional<double> v;
      if (const auto* f = item.as_floating_point()) v = f->get();
      if (const auto* n = item.as_integer()) v = static_cast<double>(n->get());
      if (!v) {
        r.fail(item.source(), "each of 'betas' in [optimizer] must be a number, got " +
                                  std::string(type_description(item)));
      }
      if (!(*v >= 0.0 && *v < 1.0)) {
        r.fail(item.source(), "beta" + std::to_string(i + 1) + " in [optimizer] is " +
                                  number_text(*v) + "; expected a number in [0, 1)");
      }
      values[i] = *v;
    }
    o.beta1 = values[0];
    o.beta2 = values[1];
  }
  o.eps = c.number(*t, "eps", where, 0.0, inf, false, false, "a finite number > 0").value_or(o.eps);
  o.weight_decay =
      c.number(*t, "weight_decay", where, 0.0, inf, true, false, "a finite number >= 0")
          .value_or(o.weight_decay);
  o.clip_norm = c.number(*t, "clip_norm", where, 0.0, inf, true, false,
                         "a finite number >= 0 (0: no clipping)")
                    .value_or(o.clip_norm);
  if (const std::optional<int64_t> warmup = c.int_at_least(*t, "warmup_steps", where, 0)) {
    if (*warmup > config.run.steps) {
      r.fail(t->get("warmup_steps")->source(),
             "'warmup_steps' in [optimizer] is " + std::to_string(*warmup) +
                 ", more than the run's " + std::to_string(config.run.steps) +
                 " steps; expected at most steps");
    }
    o.warmup_steps = *warmup;
  }
  if (const std::optional<std::string> schedule =
          get_choice(r, *t, "schedule", where, {"cosine", "linear", "constant"})) {
    o.schedule = *schedule == "cosine"   ? LrSchedule::kCosine
                 : *schedule == "linear" ? LrSchedule::kLinear
                                         : LrSchedule::kConstant;
  }
  o.min_lr_ratio = c.number(*t, "min_lr_ratio", where, 0.0, 1.0, true, true,
                            "a ratio in [0, 1] of lr where the schedule ends")
                       .value_or(o.min_lr_ratio);
  o.grad_accumulation =
      get_int32(r, *t, "grad_accumulation", where, 1).value_or(o.grad_accumulation);
}

// ------------------------------------------- [recompute] [freeze] [[blocks]] [distill]

// "FIRST-LAST", "N" or N, as a manifest's [[layers]] range.
std::pair<int32_t, int32_t> parse_layers(const Reader& r, const toml::node& node,
                                         const std::string& where) {
  const std::string expected = "; expected \"FIRST-LAST\" like \"0-15\", or one layer like 7";
  auto number = [&](std::string_view text) {
    while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
    while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
    int64_t value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value < 0 ||
        value > toml_fields::kInt32Max) {
      r.fail(node.source(), "malformed 'layers' in " + where + expected);
    }
    return static_cast<int32_t>(value);
  };
  if (const auto* v = node.as_integer()) {
    if (v->get() < 0 || v->get() > toml_fields::kInt32Max) {
      r.fail(node.source(), "'layers' in " + where + " is " + std::to_string(v->get()) +
                                "; expected a layer >= 0");
    }
    return {static_cast<int32_t>(v->get()), static_cast<int32_t>(v->get())};
  }
  const auto* s = node.as_string();
  if (s == nullptr) {
    r.fail(node.source(), "'layers' in " + where + " must be a string or an integer, got " +
                              std::string(type_description(node)) + expected);
  }
  const std::string_view text = s->get();
  const size_t dash = text.find('-');
  if (dash == std::string_view::npos) {
    const int32_t layer = number(text);
    return {layer, layer};
  }
  const int32_t first = number(text.substr(0, dash));
  const int32_t last = number(text.substr(dash + 1));
  if (last < first) {
    r.fail(node.source(), "'layers' \"" + std::string(text) + "\" in " + where +
                              " is reversed; write \"" + std::to_string(last) + "-" +
                              std::to_string(first) + "\"");
  }
  return {first, last};
}

void parse_blocks(const ConfigReader& c, const toml::table& root, TrainConfig& config) {
  const Reader& r = c.reader();
  const toml::node* node = root.get("blocks");
  if (node == nullptr) {
    if (config.run.objective == TrainObjective::kDistillBlocks) {
      r.fail(root.source(),
             "objective \"distill-blocks\" needs [[blocks]] entries naming the blocks to train, "
             "like [[blocks]] layers = \"0-29\", part = \"ffn\"");
    }
    return;
  }
  if (config.run.objective != TrainObjective::kDistillBlocks) {
    r.fail(node->source(), "[[blocks]] applies only to objective = \"distill-blocks\"; with \"" +
                               std::string(to_string(config.run.objective)) +
                               "\" use [freeze] patterns to keep weights fixed");
  }
  const toml::array* entries = node->as_array();
  if (entries == nullptr || !entries->is_array_of_tables() || entries->empty()) {
    r.fail(node->source(), "'blocks' must be [[blocks]] entries (an array of tables), got " +
                               std::string(type_description(*node)));
  }
  // (layer, part) -> the line of the entry that names it, to refuse a block named twice.
  std::map<std::pair<int32_t, std::string>, int> owner;
  for (size_t i = 0; i < entries->size(); ++i) {
    const toml::table& entry = *(*entries)[i].as_table();
    const std::string where = "[[blocks]] entry #" + std::to_string(i + 1) + " (line " +
                              std::to_string(entry.source().begin.line) + ")";
    check_keys(r, entry, where, {"layers", "part", "kind", "prefix"});
    TrainBlocks b;
    b.where = r.location(entry.source());
    const toml::node* layers = entry.get("layers");
    if (layers == nullptr)
      c.missing(entry, "layers", where, "a layer like 3 or a range like \"0-29\"");
    std::tie(b.first_layer, b.last_layer) = parse_layers(r, *layers, where);
    const std::optional<std::string> part =
        get_choice(r, entry, "part", where, {"attention", "ffn"});
    if (!part) c.missing(entry, "part", where, "\"attention\" or \"ffn\"");
    b.part = *part;
    for (const char* key : {"kind", "prefix"}) {
      if (const std::optional<std::string> v = get_string(r, entry, key, where)) {
        if (v->empty()) {
          r.fail(entry.get(key)->source(),
                 key_in(key, where) + " is empty; name the model's block or leave the key out");
        }
        (std::string_view(key) == "kind" ? b.kind : b.prefix) = *v;
      }
    }
    for (int32_t layer = b.first_layer; layer <= b.last_layer; ++layer) {
      const auto [it, fresh] =
          owner.emplace(std::make_pair(layer, b.part), static_cast<int>(entry.source().begin.line));
      if (!fresh) {
        r.fail(layers->source(), "the " + b.part + " of layer " + std::to_string(layer) +
                                     " is named twice: by the [[blocks]] entry at line " +
                                     std::to_string(it->second) + " and by " + where);
      }
    }
    config.blocks.push_back(std::move(b));
  }
}

void parse_extras(const ConfigReader& c, const toml::table& root, TrainConfig& config) {
  const Reader& r = c.reader();
  const TrainObjective objective = config.run.objective;
  const std::string objective_text = "\"" + std::string(to_string(objective)) + "\"";

  if (const toml::table* t =
          get_table(r, root, "recompute", "the document", " ([recompute] policy = \"core\")")) {
    check_keys(r, *t, "[recompute]", {"policy"});
    if (const std::optional<std::string> policy =
            get_choice(r, *t, "policy", "[recompute]", {"none", "core", "all"})) {
      config.recompute = *policy == "none"   ? RecomputePolicy::kNone
                         : *policy == "core" ? RecomputePolicy::kCore
                                             : RecomputePolicy::kAll;
    }
  }

  if (const toml::table* t = get_table(r, root, "freeze", "the document",
                                       " ([freeze] patterns = [\"model.embed_tokens.*\"])")) {
    if (objective == TrainObjective::kDistillBlocks) {
      r.fail(t->source(),
             "[freeze] does not apply to objective = \"distill-blocks\": only the [[blocks]] "
             "entries are trained");
    }
    if (objective == TrainObjective::kMedusa) {
      r.fail(t->source(),
             "[freeze] does not apply to objective = \"medusa\": the [model] is frozen and only "
             "the heads train");
    }
    check_keys(r, *t, "[freeze]", {"patterns"});
    if (t->contains("patterns")) {
      config.freeze =
          parse_patterns(r, *t, "patterns", "[freeze]", " like \"model.layers.*.mlp.*\"");
    }
  }

  parse_blocks(c, root, config);

  const toml::table* medusa = get_table(r, root, "medusa", "the document",
                                        " ([medusa] heads = 4, layers = 1, decay = 0.8)");
  if (medusa != nullptr) {
    if (objective != TrainObjective::kMedusa) {
      r.fail(medusa->source(),
             "[medusa] applies only to objective = \"medusa\", not " + objective_text);
    }
    const std::string where = "[medusa]";
    check_keys(r, *medusa, where, {"heads", "layers", "decay"});
    MedusaSection& m = config.medusa;
    if (const auto v = c.int_at_least(*medusa, "heads", where, 1)) {
      if (*v > 16)
        r.fail(medusa->source(), "[medusa] heads is " + std::to_string(*v) + ", expected 1 to 16");
      m.heads = static_cast<int32_t>(*v);
    }
    if (const auto v = c.int_at_least(*medusa, "layers", where, 1)) {
      if (*v > 8)
        r.fail(medusa->source(), "[medusa] layers is " + std::to_string(*v) + ", expected 1 to 8");
      m.layers = static_cast<int32_t>(*v);
    }
    m.decay = c.number(*medusa, "decay", where, 0.0, 1.0, false, true, "a weight in (0, 1]")
                  .value_or(m.decay);
  }

  const toml::table* distill = get_table(r, root, "distill", "the document",
                                         " ([distill] kl = 1.0, cosine = 0.0, temperature = 1.0)");
  if (distill != nullptr) {
    if (objective != TrainObjective::kDistill) {
      r.fail(distill->source(),
             "[distill] applies only to objective = \"distill\", not " + objective_text);
    }
    const std::string where = "[distill]";
    check_keys(r, *distill, where, {"cosine", "kl", "temperature"});
    const double inf = std::numeric_limits<double>::infinity();
    DistillSection& d = config.distill;
    d.cosine = c.number(*distill, "cosine", where, 0.0, inf, true, false, "a weight >= 0")
                   .value_or(d.cosine);
    d.kl = c.number(*distill, "kl", where, 0.0, inf, true, false, "a weight >= 0").value_or(d.kl);
    d.temperature =
        c.number(*distill, "temperature", where, 0.0, inf, false, false, "a finite number > 0")
            .value_or(d.temperature);
    if (d.cosine == 0.0 && d.kl == 0.0) {
      r.fail(distill->source(), "both loss weights in [distill] are 0; give cosine or kl > 0");
    }
  }
}

std::string layers_text(const TrainBlocks& b) {
  return b.first_layer == b.last_layer
             ? "layer " + std::to_string(b.first_layer)
             : "layers " + std::to_string(b.first_layer) + "-" + std::to_string(b.last_layer);
}

[[noreturn]] void fail_at(const SourceLocation& where, const std::string& message) {
  throw ManifestError(where.file, where.line > 0 ? where.line : 1,
                      where.column > 0 ? where.column : 1, message);
}

}  // namespace

std::string_view to_string(TrainObjective objective) {
  switch (objective) {
    case TrainObjective::kDistillBlocks:
      return "distill-blocks";
    case TrainObjective::kDistill:
      return "distill";
    case TrainObjective::kMedusa:
      return "medusa";
    default:
      return "lm";
  }
}

std::string_view to_string(RecomputePolicy policy) {
  switch (policy) {
    case RecomputePolicy::kCore:
      return "core";
    case RecomputePolicy::kAll:
      return "all";
    default:
      return "none";
  }
}

std::string_view to_string(LrSchedule schedule) {
  switch (schedule) {
    case LrSchedule::kLinear:
      return "linear";
    case LrSchedule::kConstant:
      return "constant";
    default:
      return "cosine";
  }
}

SourceLocation TrainConfig::location(const std::string& key) const {
  if (const auto it = locations.find(key); it != locations.end()) return it->second;
  const std::string table = key.substr(0, key.find('.'));
  if (const auto it = locations.find(table); it != locations.end()) return it->second;
  return SourceLocation{source.string(), 1, 1};
}

TrainConfig parse_train_config(std::string_view text, const std::string& source_name,
                               const fs::path& base_dir) {
  const toml::table root = toml_fields::parse_document(text, source_name);
  const Reader r(source_name);
  check_keys(r, root, "the top level",
             {"run", "model", "parent", "data", "optimizer", "recompute", "freeze", "blocks",
              "distill", "medusa"});
  TrainConfig config;
  config.source = source_name;
  config.text = std::string(text);
  ConfigReader c(r, config);
  for (auto&& [key, node] : root) {
    if (const toml::table* t = node.as_table()) c.note_table(std::string(key.str()), *t);
  }
  parse_run(c, root, config, base_dir);
  config.model = parse_model_path(c, root, "model", base_dir, "the model to train");
  const bool distills = has_parent(config.run.objective);
  if (distills) {
    if (!root.contains("parent")) {
      r.fail(root.get("run")->source(),
             "objective = \"" + std::string(to_string(config.run.objective)) +
                 "\" needs a [parent] table with the path of the teacher model");
    }
    config.parent = parse_model_path(c, root, "parent", base_dir, "the teacher model");
  } else if (const toml::node* parent = root.get("parent")) {
    r.fail(parent->source(),
           "[parent] applies only to objective = \"distill-blocks\" or \"distill\"; objective \"" +
               std::string(to_string(config.run.objective)) +
               "\" learns from the corpus and the [model] alone");
  }
  parse_data(c, root, config, base_dir);
  parse_optimizer(c, root, config);
  parse_extras(c, root, config);
  return config;
}

TrainConfig parse_data_table(std::string_view text, const std::string& source_name,
                             const fs::path& base_dir) {
  const toml::table root = toml_fields::parse_document(text, source_name);
  const Reader r(source_name);
  TrainConfig config;
  config.source = source_name;
  config.text = std::string(text);
  ConfigReader c(r, config);
  if (const toml::table* t = root["data"].as_table()) c.note_table("data", *t);
  parse_data(c, root, config, base_dir);
  return config;
}

TrainConfig load_train_config(const fs::path& path) {
  if (const std::string what = not_a_regular_file(path); !what.empty())
    throw ManifestError(path.string(), 1, 1,
                        "the training config is " + what + ", not a regular file");
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    std::error_code ec;
    throw ManifestError(path.string(), 1, 1,
                        fs::exists(path, ec) ? "cannot read the training config"
                                             : "training config does not exist");
  }
  std::ostringstream text;
  text << file.rdbuf();
  std::error_code ec;
  fs::path base_dir = fs::absolute(path, ec).parent_path();
  if (ec) base_dir = path.parent_path();
  TrainConfig config = parse_train_config(text.str(), path.string(), base_dir);
  config.source = path;
  return config;
}

int32_t check_train_config(const TrainConfig& config, const Manifest& model,
                           const Tokenizer& tokenizer, const std::vector<std::string>& weight_names,
                           const Manifest* parent) {
  const ModelSpec& m = model.model;
  if (config.data.seq_len > m.max_seq_len) {
    fail_at(config.location("data.seq_len"),
            "seq_len " + std::to_string(config.data.seq_len) + " in [data] is above the model's " +
                "max_seq_len " + std::to_string(m.max_seq_len) +
                "; expected a sequence length in [1, " + std::to_string(m.max_seq_len) + "]");
  }
  if (tokenizer.vocab_size() > m.vocab_size) {
    fail_at(config.location("model.path"),
            "the model's tokenizer has " + std::to_string(tokenizer.vocab_size()) +
                " tokens but the model only " + std::to_string(m.vocab_size) + " embeddings");
  }

  int32_t separator = -1;
  const std::string& sep = config.data.separator;
  if (sep == "eos" || sep == "bos") {
    std::optional<int32_t> id = sep == "eos" ? tokenizer.eos_id() : tokenizer.bos_id();
    // A tokenizer read from tokenizer.json may not know its special ids; the model's [model]
    // section does.
    if (!id && sep == "eos" && !m.eos_token_ids.empty())
      id = static_cast<int32_t>(m.eos_token_ids.front());
    if (!id && sep == "bos" && m.bos_token_id >= 0) id = m.bos_token_id;
    if (!id) {
      fail_at(config.location("data.separator"),
              "separator = \"" + sep + "\" in [data], but the model's tokenizer has no " + sep +
                  " token; name a token by its text, like separator = \"<|endoftext|>\"");
    }
    separator = *id;
  } else if (const std::optional<int32_t> id = tokenizer.token_id(sep)) {
    separator = *id;
  } else {
    fail_at(config.location("data.separator"),
            "separator \"" + sep +
                "\" in [data] is not a token of the model's vocabulary; "
                "expected \"eos\", \"bos\" or a token's text");
  }

  for (const TrainBlocks& b : config.blocks) {
    if (b.last_layer >= m.num_layers) {
      fail_at(b.where, "[[blocks]] " + layers_text(b) + " goes beyond the model's " +
                           std::to_string(m.num_layers) + " layers (0-" +
                           std::to_string(m.num_layers - 1) + ")");
    }
    for (int32_t layer = b.first_layer; layer <= b.last_layer; ++layer) {
      const LayerSpec& spec = model.layers[static_cast<size_t>(layer)];
      const BlockSpec& block = b.part == "attention" ? spec.attention : spec.ffn;
      if (!b.kind.empty() && block.kind != b.kind) {
        fail_at(b.where, "[[blocks]] kind \"" + b.kind + "\": the model's " + b.part +
                             " of layer " + std::to_string(layer) + " is \"" + block.kind + "\"");
      }
      if (!b.prefix.empty() && block.prefix != b.prefix) {
        fail_at(b.where, "[[blocks]] prefix \"" + b.prefix + "\": the model's " + b.part +
                             " of layer " + std::to_string(layer) + " has prefix \"" +
                             block.prefix + "\"" +
                             (block.prefix.empty() ? " (none: the default names)" : ""));
      }
    }
  }

  if (!weight_names.empty()) {
    for (size_t i = 0; i < config.freeze.size(); ++i) {
      const std::string& pattern = config.freeze[i];
      const bool any =
          std::any_of(weight_names.begin(), weight_names.end(),
                      [&](const std::string& name) { return glob_match(pattern, name); });
      if (!any) {
        fail_at(config.location("freeze.patterns"),
                "freeze pattern \"" + pattern + "\" matches none of the model's " +
                    std::to_string(weight_names.size()) + " weights (like \"" +
                    weight_names.front() + "\")");
      }
    }
  }

  if (parent != nullptr) {
    const ModelSpec& p = parent->model;
    if (p.vocab_size != m.vocab_size) {
      fail_at(config.location("parent.path"),
              "the parent's vocabulary has " + std::to_string(p.vocab_size) +
                  " tokens and the model's " + std::to_string(m.vocab_size) +
                  "; distillation needs the same vocabulary");
    }
    if (config.run.objective == TrainObjective::kDistillBlocks &&
        (p.hidden_size != m.hidden_size || p.num_layers != m.num_layers)) {
      fail_at(config.location("parent.path"),
              "the parent is " + std::to_string(p.num_layers) + " layers of width " +
                  std::to_string(p.hidden_size) + " and the model " + std::to_string(m.num_layers) +
                  " of width " + std::to_string(m.hidden_size) +
                  "; distill-blocks needs the same layers and width");
    }
  }
  return separator;
}

}  // namespace tessera
