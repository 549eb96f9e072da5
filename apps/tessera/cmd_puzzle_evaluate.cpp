// tessera puzzle evaluate: the parent and its children side by side in one run (docs/puzzle.md,
// stage 8). The children: the main solution's (child/), the solutions [evaluate] children
// names (realised into child-LABEL/ when missing), after global distillation child-gkd/, and
// the folders [evaluate.folders] names (children made elsewhere, another run's say).
// Each is measured against the same parent in the same process: held-out KL, agreement and
// perplexity; MMLU when [evaluate] mmlu names the questions; the scenario's prefill and decode
// speed, parent and child alternating. Writes evaluation.json (version 2).
#include <tessera/dtype.hpp>
#include <tessera/engine/error.hpp>
#include <tessera/engine/model.hpp>
#include <tessera/engine/thread_pool.hpp>
#include <tessera/formats/model_source.hpp>
#include <tessera/puzzle/evaluation.hpp>
#include <tessera/puzzle/multiple_choice.hpp>
#include <tessera/puzzle/solution_file.hpp>
#include <tessera/tools/atomic_file.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>

#include "puzzle_stage.hpp"
#include "setup.hpp"

namespace tessera::cli {

namespace {

namespace fs = std::filesystem;

// The longest MMLU prompt a model is sized for; longer ones keep their end.
constexpr int32_t kMaxChoicePromptTokens = 1024;

struct ChildToEvaluate {
  std::string label;     // "main", a solution's label, or "main+gkd"
  std::string solution;  // the solution it realises
  fs::path folder;
};

std::string solution_of(const fs::path& folder) {
  try {
    std::ifstream about(folder / "puzzle.json");
    return nlohmann::json::parse(about).at("solution").get<std::string>();
  } catch (const std::exception&) {
    throw Error(folder.string() + ": puzzle.json is missing or damaged (it names the solution a " +
                "child realises); realise the child again with `tessera puzzle realize --force`");
  }
}

// The children this run evaluates, realising the extra solutions that are not there yet.
std::vector<ChildToEvaluate> children_of(const PuzzleArgs& args,
                                         const puzzle::PuzzleConfig& config) {
  std::error_code ec;
  const fs::path main_folder = config.child_folder();
  if (!fs::exists(main_folder / "manifest.toml", ec))
    throw Error(config.source.string() + ": no child in " + main_folder.string() +
                "; run `tessera puzzle realize " + config.source.string() + "` first");
  std::vector<ChildToEvaluate> out;
  const std::string main = solution_of(main_folder);
  out.push_back({main, main, main_folder});
  for (const std::string& label : config.evaluate.children) {
    if (label == main) continue;
    const fs::path folder = realize_solution(args, config, label, false, std::cout);
    out.push_back({label, label, folder});
  }
  if (config.global_distill.tokens > 0) {
    const fs::path gkd = config.distilled_child_folder();
    if (!fs::exists(gkd / "manifest.toml", ec))
      throw Error(config.source.string() + ": [global_distill] tokens is " +
                  std::to_string(config.global_distill.tokens) + " but there is no " +
                  gkd.string() + "; run `tessera puzzle global-distill " + config.source.string() +
                  "` first");
    out.push_back({main + "+gkd", main, gkd});
  }
  // Children made elsewhere: no solution of this run predicted them.
  for (const auto& [label, folder] : config.evaluate.folders) {
    if (!fs::exists(folder / "manifest.toml", ec))
      throw Error(config.source.string() + ": [evaluate.folders] " + label + " is " +
                  folder.string() + ", which holds no model (manifest.toml)");
    out.push_back({label, "", folder});
  }
  for (size_t i = 0; i < out.size(); ++i)
    for (size_t k = 0; k < i; ++k)
      if (out[i].label == out[k].label)
        throw Error(config.source.string() + ": two children are labelled '" + out[i].label +
                    "' (" + out[k].folder.string() + " and " + out[i].folder.string() +
                    "); rename the one in [evaluate.folders]");
  return out;
}

nlohmann::ordered_json mmlu_json(const puzzle::ChoiceScore& s) {
  return {{"questions", s.questions}, {"correct", s.correct}, {"accuracy", s.accuracy()}};
}

}  // namespace

int run_evaluate(const PuzzleArgs& args) {
  const puzzle::PuzzleConfig config = puzzle::load_puzzle_config(args.config);
  std::ostream& out = std::cout;
  const fs::path path = config.evaluation_path();
  std::error_code ec;
  if (fs::exists(path, ec) && !args.force) {
    out << "evaluation " << path.string() << " is done; --force evaluates again\n";
    return 0;
  }
  puzzle::LibraryIndex index = library_index_of(config);
  const std::vector<ChildToEvaluate> children = children_of(args, config);
  OpenedLibrary lib = open_library(config, std::move(index));
  const CorpusData corpus = stage_corpus(config, lib.model);
  const DataSection& data = config.data.data;
  out << "parent     " << config.stage_library().string() << "\n";
  for (const ChildToEvaluate& c : children)
    out << "child      " << c.folder.string() << " (" << c.label << ")\n";
  out << corpus_text(data, corpus);
  // Held-out sequences after those the scores read: the children were chosen on those.
  const PackedPart& held_out = corpus.dataset->held_out();
  const int64_t skipped =
      config.evaluate.skip_tokens >= 0 ? config.evaluate.skip_tokens : config.score.tokens;
  const int64_t scored = sequences_for(skipped, data.seq_len);
  const int64_t wanted = sequences_for(config.evaluate.tokens, data.seq_len);
  const int64_t first = std::min(scored, held_out.sequences());
  const int64_t count = std::min(wanted, held_out.sequences() - first);
  if (count <= 0)
    throw Error(config.source.string() + ": the held-out part has " +
                std::to_string(held_out.sequences()) + " sequences of " +
                std::to_string(data.seq_len) + " tokens and the evaluation skips the first " +
                std::to_string(scored) +
                " (those the scores read, or [evaluate] skip_tokens); it needs more held-out "
                "text (raise held_out_documents or held_out_fraction)");
  std::vector<puzzle::EvalBatch> batches;
  for (const Batch& b : part_batches(held_out, data.batch_size, first, count)) {
    puzzle::EvalBatch e{inputs_of(b), {}};
    for (int32_t i = 0; i < b.size(); ++i) {
      const auto target = b.targets(i);
      e.targets.insert(e.targets.end(), target.begin(), target.end());
    }
    batches.push_back(std::move(e));
  }

  // MMLU's prompts, before the models: their length sizes the models' slots.
  std::optional<puzzle::ChoicePrompts> mmlu;
  if (!config.evaluate.mmlu.empty()) {
    const std::vector<puzzle::ChoiceQuestion> all = puzzle::read_mmlu(config.evaluate.mmlu);
    const std::vector<puzzle::ChoiceQuestion> picked =
        puzzle::first_per_subject(all, config.evaluate.mmlu_per_subject);
    mmlu = puzzle::tokenize_choices(picked, *lib.model.tokenizer, kMaxChoicePromptTokens);
    out << "mmlu       " << config.evaluate.mmlu.string() << ": " << grouped(mmlu->prompts.size())
        << " of " << grouped(all.size()) << " questions ("
        << (config.evaluate.mmlu_per_subject > 0
                ? "the first " + std::to_string(config.evaluate.mmlu_per_subject) +
                      " of each subject"
                : std::string("all"))
        << "), zero-shot, the answer letter's likelihood; longest prompt " << mmlu->longest()
        << " tokens" << (mmlu->truncated > 0 ? ", " + std::to_string(mmlu->truncated) + " cut" : "")
        << "\n";
  }

  const puzzle::Scenario& scenario = config.cost.scenario;
  Manifest parent_manifest = lib.model.manifest;
  parent_manifest.runtime.set_weight_dtype(config.cost.weight_dtype);
  const int32_t threads =
      config.cost.threads > 0 ? config.cost.threads : parent_manifest.runtime.threads;
  const int32_t slots = std::max(
      data.batch_size, *std::max_element(scenario.batch_sizes.begin(), scenario.batch_sizes.end()));
  int32_t capacity = std::max(data.seq_len, scenario.prefill_len + scenario.decode_len);
  if (mmlu) capacity = std::max(capacity, static_cast<int32_t>(mmlu->longest()));
  PluginRegistry registry;
  load_plugins(registry, args.plugin_paths, &parent_manifest);
  ThreadPool pool(threads);
  Model parent(parent_manifest, registry, std::move(lib.model.weights), pool,
               ModelOptions{slots, capacity});
  std::vector<std::unique_ptr<Model>> models;
  for (const ChildToEvaluate& c : children) {
    LoadedModel child = open_model(c.folder);
    Manifest m = child.manifest;
    m.runtime.set_weight_dtype(config.cost.weight_dtype);
    PluginRegistry child_registry;
    load_plugins(child_registry, args.plugin_paths, &m);
    models.push_back(std::make_unique<Model>(m, child_registry, std::move(child.weights), pool,
                                             ModelOptions{slots, capacity}));
  }

  std::optional<puzzle::Solutions> solutions;
  if (fs::exists(config.solutions_path(), ec))
    solutions = puzzle::read_solutions(config.solutions_path(), lib.index.layers);

  nlohmann::ordered_json j;
  j["format"] = "tessera.puzzle.evaluation";
  j["version"] = 2;
  int64_t tokens = 0;
  for (const puzzle::EvalBatch& b : batches) tokens += static_cast<int64_t>(b.targets.size());
  j["tokens"] = tokens;
  out << "quality    " << grouped(tokens) << " held-out tokens after the first "
      << grouped(scored * data.seq_len)
      << (config.evaluate.skip_tokens >= 0 ? " ([evaluate] skip_tokens); " : " (the scores'); ")
      << dtype_name(config.cost.weight_dtype) << " weights\n";
  nlohmann::ordered_json parent_json;
  if (mmlu) {
    const auto start = std::chrono::steady_clock::now();
    const puzzle::ChoiceScore s = puzzle::score_choices(parent, *mmlu);
    out << "  parent  MMLU " << fixed(100.0 * s.accuracy(), 2) << "% (" << s.correct << "/"
        << s.questions << ", " << fixed(seconds_since(start), 1) << "s)\n";
    parent_json["mmlu"] = mmlu_json(s);
  }
  j["children"] = nlohmann::ordered_json::array();
  for (size_t i = 0; i < children.size(); ++i) {
    const ChildToEvaluate& c = children[i];
    Model& child = *models[i];
    nlohmann::ordered_json cj;
    cj["label"] = c.label;
    const fs::path relative = fs::relative(c.folder, config.output, ec);
    cj["folder"] = (ec || relative.empty() ? c.folder : relative).string();
    if (!c.solution.empty()) cj["solution"] = c.solution;
    const puzzle::SolveRecord* record =
        solutions && !c.solution.empty() ? solutions->find(c.solution) : nullptr;
    if (record != nullptr) cj["provider"] = record->provider;
    auto start = std::chrono::steady_clock::now();
    const puzzle::QualityFigures q = puzzle::compare_quality(parent, child, batches);
    out << "  " << c.label << ": KL(parent || child) " << fixed(q.kl, 4)
        << " per token, next-token agreement " << fixed(100.0 * q.agreement, 1)
        << "%, perplexity parent " << fixed(q.parent_perplexity, 3) << " child "
        << fixed(q.child_perplexity, 3) << " (" << fixed(seconds_since(start), 1) << "s)\n";
    parent_json["perplexity"] = q.parent_perplexity;
    cj["quality"] = {{"kl", q.kl}, {"agreement", q.agreement}, {"perplexity", q.child_perplexity}};
    if (mmlu) {
      start = std::chrono::steady_clock::now();
      const puzzle::ChoiceScore s = puzzle::score_choices(child, *mmlu);
      out << "  " << c.label << ": MMLU " << fixed(100.0 * s.accuracy(), 2) << "% (" << s.correct
          << "/" << s.questions << ", " << fixed(seconds_since(start), 1) << "s)\n";
      cj["mmlu"] = mmlu_json(s);
    }
    j["children"].push_back(std::move(cj));
  }
  j["parent"] = parent_json;

  out << "speed      prefill " << scenario.prefill_len << " tokens, decode " << scenario.decode_len
      << " steps; " << pool.size() << " threads; parent and child alternate, median of "
      << config.evaluate.repeats << "\n";
  puzzle::Scenario timed = scenario;
  timed.repeats = config.evaluate.repeats;
  for (size_t i = 0; i < children.size(); ++i) {
    const ChildToEvaluate& c = children[i];
    nlohmann::ordered_json& cj = j["children"][i];
    const std::vector<puzzle::SpeedFigures> speed =
        puzzle::compare_speed(parent, *models[i], timed);
    cj["speed"] = nlohmann::ordered_json::array();
    for (const puzzle::SpeedFigures& f : speed) {
      const double prefill_tokens = static_cast<double>(f.batch) * scenario.prefill_len;
      const double decode_tokens = static_cast<double>(f.batch) * scenario.decode_len;
      out << "  " << c.label << ", batch " << f.batch << ": prefill parent "
          << fixed(prefill_tokens / f.parent_prefill.seconds, 1) << " tok/s, child "
          << fixed(prefill_tokens / f.child_prefill.seconds, 1) << " tok/s ("
          << fixed(f.prefill_speedup(), 3) << "x); decode parent "
          << fixed(decode_tokens / f.parent_decode.seconds, 2) << " tok/s, child "
          << fixed(decode_tokens / f.child_decode.seconds, 2) << " tok/s ("
          << fixed(f.decode_speedup(), 3) << "x; noise +-"
          << fixed(100.0 * f.parent_decode.noise, 0) << "% / +-"
          << fixed(100.0 * f.child_decode.noise, 0) << "%)\n";
      cj["speed"].push_back({{"batch", f.batch},
                             {"parent_prefill_s", f.parent_prefill.seconds},
                             {"child_prefill_s", f.child_prefill.seconds},
                             {"parent_decode_s", f.parent_decode.seconds},
                             {"child_decode_s", f.child_decode.seconds},
                             {"prefill_speedup", f.prefill_speedup()},
                             {"decode_speedup", f.decode_speedup()}});
    }
    // What the search predicted for this child, beside what was measured.
    const puzzle::SolveRecord* r =
        solutions && !c.solution.empty() ? solutions->find(c.solution) : nullptr;
    if (r != nullptr && r->feasible) {
      const auto at =
          std::find(scenario.batch_sizes.begin(), scenario.batch_sizes.end(), r->batch_size);
      out << "  " << c.label << " predicted by solve at batch " << r->batch_size << ": summed KL "
          << fixed(r->predicted.kl, 4) << " (measured "
          << fixed(cj["quality"]["kl"].get<double>(), 4) << "), decode "
          << fixed(r->predicted.decode_speedup, 3) << "x";
      if (at != scenario.batch_sizes.end())
        out << " (measured "
            << fixed(speed[static_cast<size_t>(at - scenario.batch_sizes.begin())].decode_speedup(),
                     3)
            << "x)";
      out << ", prefill " << fixed(r->predicted.prefill_speedup, 3) << "x\n";
      cj["predicted"] = {{"batch", r->batch_size},
                         {"kl", r->predicted.kl},
                         {"decode_speedup", r->predicted.decode_speedup},
                         {"prefill_speedup", r->predicted.prefill_speedup}};
    }
  }
  write_file_atomically(path, j.dump(1) + "\n");
  out << "evaluation " << path.string() << "\n";
  return 0;
}

}  // namespace tessera::cli
