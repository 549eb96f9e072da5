// tessera medusa tree | bench: Medusa on this machine.
//
//   tree   measures the time of a decoding step that verifies 1..N tokens (the model's forward
//          of a tree after a context, and the heads), reads the heads' held-out accuracies from
//          their config.json, and chooses the tree that maximises expected tokens per second
//          (decoding/medusa_tree_choice.hpp); --write stores it as the heads' medusa_choices,
//          the tree the decoder then takes by default.
//   bench  plain greedy against Medusa in the same run, prompt by prompt: tokens identical or
//          where they part, decode tokens/s of each, tokens per step; and a batch of sequences
//          checked against each alone.
#include <tessera/chat/chat_session.hpp>
#include <tessera/chat/chat_template.hpp>
#include <tessera/cpu/matmul.hpp>
#include <tessera/decoding/medusa_heads.hpp>
#include <tessera/decoding/medusa_tree.hpp>
#include <tessera/decoding/medusa_tree_choice.hpp>
#include <tessera/engine/error.hpp>
#include <tessera/engine/generator.hpp>
#include <tessera/engine/model.hpp>
#include <tessera/engine/thread_pool.hpp>
#include <tessera/formats/decoder_weights.hpp>
#include <tessera/tools/atomic_file.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>

#include "commands.hpp"
#include "run_options.hpp"
#include "setup.hpp"

namespace tessera::cli {
namespace {

namespace fs = std::filesystem;

struct MedusaArgs {
  std::string model;
  std::string heads;
  int32_t max_tokens = 64;  // tree: largest tree measured
  int32_t context = 128;    // tree: tokens cached before the timed trees
  int32_t repeats = 5;
  bool write = false;
  int32_t new_tokens = 128;  // bench
  int32_t prompts = 8;
  int32_t batch = 4;
  std::string tree;  // bench: instead of the heads' own
  std::string prompts_file;
  RunOptions run;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// The heads' config.json, or an empty object.
nlohmann::json read_heads_config(const fs::path& heads) {
  const fs::path file = heads / "config.json";
  std::ifstream in(file);
  if (!in) return nlohmann::json::object();
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(file.string() + ": not valid JSON (" + e.what() + ")");
  }
}

// accuracy[k][r]: head k's candidate of rank r is the base model's choice (from the
// cumulative medusa_top_k_accuracy that `tessera train` writes).
std::vector<std::vector<double>> head_accuracy(const nlohmann::json& config,
                                               const fs::path& heads) {
  const auto it = config.find("medusa_top_k_accuracy");
  if (it == config.end() || !it->is_array())
    throw Error((heads / "config.json").string() +
                " has no medusa_top_k_accuracy; the tree search needs the heads' held-out "
                "accuracies, which tessera train (objective medusa) writes there");
  std::vector<std::vector<double>> acc;
  for (const auto& row : *it) {
    std::vector<double> exact;
    double before = 0;
    for (const auto& v : row) {
      const double cumulative = v.get<double>();
      exact.push_back(std::max(0.0, cumulative - before));
      before = cumulative;
    }
    acc.push_back(exact);
  }
  return acc;
}

struct Loaded {
  LoadedModel model;
  PluginRegistry registry;
  std::unique_ptr<ThreadPool> pool;
  std::unique_ptr<Model> engine;
};

std::unique_ptr<Loaded> load(const MedusaArgs& args, int32_t slots, int32_t capacity) {
  auto l = std::make_unique<Loaded>();
  l->model = open_model_for_run(args.model, args.run);
  load_plugins(l->registry, args.run.plugin_paths, &l->model.manifest);
  l->pool = std::make_unique<ThreadPool>(l->model.manifest.runtime.threads);
  const int32_t cap = std::min(capacity, l->model.manifest.model.max_seq_len);
  l->engine = std::make_unique<Model>(l->model.manifest, l->registry, std::move(l->model.weights),
                                      *l->pool, ModelOptions{slots, cap, nullptr});
  return l;
}

// ------------------------------------------------------------------- tree

int run_tree(const MedusaArgs& args) {
  const fs::path heads = args.heads;
  nlohmann::json config = read_heads_config(heads);
  const std::vector<std::vector<double>> accuracy = head_accuracy(config, heads);
  const int32_t max_tokens = std::clamp(args.max_tokens, 1, 256);
  auto l = load(args, 1, args.context + max_tokens + 1);
  Model& model = *l->engine;

  // A context of distinct tokens, then each tree size timed `repeats` times (its rows dropped
  // after each pass), interleaved so that drift spreads over every size.
  std::vector<int32_t> context;
  context.reserve(static_cast<size_t>(args.context));
  for (int32_t i = 0; i < args.context; ++i) context.push_back((1 + i * 37) % model.vocab());
  model.reset(0);
  ForwardBatch prefill;
  prefill.slots = {0};
  prefill.offsets = {0, static_cast<int32_t>(context.size())};
  prefill.tokens = context;
  prefill.last_only = true;
  prefill.row_invariant = args.run.exact;
  std::vector<float> logits(static_cast<size_t>(max_tokens) * static_cast<size_t>(model.vocab()));
  std::vector<float> hidden(static_cast<size_t>(max_tokens) * static_cast<size_t>(model.hidden()));
  model.forward(prefill, logits.data(), hidden.data());
  std::vector<int32_t> sizes;
  for (int32_t n = 1; n <= max_tokens; n += n < 16 ? 1 : (n < 32 ? 4 : 8)) sizes.push_back(n);
  if (sizes.back() != max_tokens) sizes.push_back(max_tokens);
  const decoding::MedusaTree chain =
      decoding::parse_medusa_tree("chain-" + std::to_string(std::min(max_tokens - 1, 99)));
  std::vector<std::vector<double>> times(sizes.size());
  std::cerr << "timing trees of 1.." << max_tokens << " tokens after " << args.context
            << " cached, " << args.repeats << " passes each\n";
  for (int32_t rep = 0; rep <= args.repeats; ++rep)
    for (size_t i = 0; i < sizes.size(); ++i) {
      const int32_t n = sizes[i];
      ForwardBatch b;
      b.slots = {0};
      b.offsets = {0, n};
      const decoding::MedusaTree t = chain.prefix(std::min(n, chain.size()));
      std::vector<uint8_t> mask = t.mask();
      for (int32_t j = 0; j < n; ++j) {
        b.tokens.push_back((200 + j) % model.vocab());
        b.positions.push_back(args.context + j);
      }
      b.tree_masks = {mask.data()};
      b.row_invariant = args.run.exact;
      const auto t0 = std::chrono::steady_clock::now();
      model.forward(b, logits.data(), hidden.data());
      const double s = seconds_since(t0);
      model.compact_kv(0, args.context, nullptr, 0);
      if (rep > 0) times[i].push_back(s);  // the first round warms up
    }
  // The heads of depth d: d ResBlocks and d rows through the lm head.
  const int32_t n_heads = static_cast<int32_t>(accuracy.size());
  std::vector<double> head_seconds(static_cast<size_t>(n_heads) + 1, 0.0);
  {
    const Tensor& lm = model.lm_head();
    const cpu::MatrixView head{lm.raw(), lm.dtype(), model.vocab(), model.hidden(), model.hidden()};
    std::vector<float> x(static_cast<size_t>(n_heads) * static_cast<size_t>(model.hidden()), 0.01f);
    std::vector<float> w(static_cast<size_t>(model.hidden()) * static_cast<size_t>(model.hidden()),
                         0.001f);
    std::vector<float> b(static_cast<size_t>(model.hidden()), 0.0f), y(x.size());
    for (int32_t d = 1; d <= n_heads; ++d) {
      std::vector<double> s;
      for (int32_t rep = 0; rep <= args.repeats; ++rep) {
        const auto t0 = std::chrono::steady_clock::now();
        for (int32_t k = 0; k < d; ++k)
          decoding::medusa_resblock_forward(
              l->pool->host(), cpu::matrix_view(w.data(), model.hidden(), model.hidden()), b.data(),
              x.data(), 1, y.data(), nullptr);
        cpu::matmul_nt(l->pool->host(), x.data(), d, model.hidden(), head, logits.data(),
                       model.vocab());
        if (rep > 0) s.push_back(seconds_since(t0));
      }
      head_seconds[static_cast<size_t>(d)] = median(s);
    }
  }
  // Forward time for every n, linear between the sizes timed.
  std::vector<double> forward(static_cast<size_t>(max_tokens));
  for (int32_t n = 1; n <= max_tokens; ++n) {
    size_t i = 0;
    while (i + 1 < sizes.size() && sizes[i + 1] <= n) ++i;
    const double a = median(times[i]);
    if (sizes[i] == n || i + 1 == sizes.size()) {
      forward[static_cast<size_t>(n - 1)] = a;
    } else {
      const double c = median(times[i + 1]);
      forward[static_cast<size_t>(n - 1)] =
          a + (c - a) * (n - sizes[i]) / (sizes[i + 1] - sizes[i]);
    }
  }
  // A step of n tokens reads as many heads as the best-first tree of n tokens is deep.
  const auto paths = decoding::medusa_best_paths(accuracy, max_tokens - 1);
  std::vector<double> step(static_cast<size_t>(max_tokens));
  int32_t depth = 0;
  for (int32_t n = 1; n <= max_tokens; ++n) {
    if (n > 1 && static_cast<size_t>(n - 2) < paths.size())
      depth = std::max(depth, static_cast<int32_t>(paths[static_cast<size_t>(n - 2)].first.size()));
    step[static_cast<size_t>(n - 1)] =
        forward[static_cast<size_t>(n - 1)] + head_seconds[static_cast<size_t>(depth)];
  }
  const decoding::MedusaTreeChoice choice = decoding::choose_medusa_tree(accuracy, step);

  std::cout << "heads      " << heads.string() << ": " << n_heads << " heads; top-1 accuracy";
  for (const auto& row : accuracy)
    std::cout << " " << std::fixed << std::setprecision(3) << (row.empty() ? 0.0 : row[0]);
  std::cout << "\n";
  std::cout << " tokens  forward ms  step ms  expected tokens/step  predicted speed-up\n";
  for (int32_t n = 1; n <= static_cast<int32_t>(choice.expected_tokens.size()); ++n) {
    if (n > 16 && n % 8 != 0 && n != static_cast<int32_t>(choice.expected_tokens.size())) continue;
    const size_t i = static_cast<size_t>(n - 1);
    std::cout << std::setw(7) << n << std::setw(12) << std::setprecision(2) << forward[i] * 1e3
              << std::setw(9) << step[i] * 1e3 << std::setw(22) << std::setprecision(3)
              << choice.expected_tokens[i] << std::setw(20) << choice.tokens_per_second[i] * step[0]
              << "\n";
  }
  std::cout << "chosen     " << choice.tree.size() << " tokens, depth " << choice.tree.depth()
            << ": " << choice.tree.text() << "\n";
  std::cout << "predicted  " << std::setprecision(3) << choice.expected << " tokens per step, "
            << choice.speedup << "x plain greedy\n";
  if (args.write) {
    config["medusa_choices"] = choice.tree.text();
    config["medusa_tree_predicted_speedup"] = choice.speedup;
    config["medusa_tree_expected_tokens"] = choice.expected;
    write_file_atomically(heads / "config.json", config.dump(2) + "\n");
    std::cout << "written    medusa_choices in " << (heads / "config.json").string() << "\n";
  }
  return 0;
}

// ------------------------------------------------------------------- bench

// Questions on what the heads were trained on (the Python documentation), chat-templated.
const char* const kPrompts[] = {
    "What is a list comprehension in Python? Give an example.",
    "Explain the difference between a tuple and a list in Python.",
    "How do I read a text file line by line in Python?",
    "What does the 'with' statement do in Python?",
    "Write a Python function that returns the factorial of a number.",
    "What is a Python decorator? Show a short example.",
    "How do dictionaries work in Python?",
    "Explain what a generator is in Python and when to use one.",
};

std::vector<std::vector<int32_t>> bench_prompts(const MedusaArgs& args, const LoadedModel& model) {
  std::vector<std::string> texts;
  if (!args.prompts_file.empty()) {
    std::ifstream in(args.prompts_file);
    if (!in) throw Error("--prompts-file " + args.prompts_file + " cannot be read");
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) texts.push_back(line);
  } else {
    texts.assign(std::begin(kPrompts), std::end(kPrompts));
  }
  if (texts.empty()) throw Error("no prompts");
  if (!model.tokenizer)
    throw Error(no_tokenizer_message(args.model, model, "the bench needs text prompts"));
  std::vector<std::vector<int32_t>> out;
  for (int32_t i = 0; i < args.prompts; ++i) {
    const std::string& text = texts[static_cast<size_t>(i) % texts.size()];
    if (model.chat_template.empty()) {
      out.push_back(model.tokenizer->encode(text, {}));
    } else {
      const ChatTemplate t = ChatTemplate::from_template_text(model.chat_template);
      out.push_back(encode_chat(*model.tokenizer, t, {{"user", text}}));
    }
  }
  return out;
}

int run_bench(const MedusaArgs& args) {
  LoadedModel probe = open_model_for_run(args.model, args.run);
  const std::vector<std::vector<int32_t>> prompts = bench_prompts(args, probe);
  size_t longest = 0;
  for (const auto& p : prompts) longest = std::max(longest, p.size());
  const int32_t batch = std::max(1, args.batch);
  auto l = load(args, batch, static_cast<int32_t>(longest) + args.new_tokens + 1);
  Model& model = *l->engine;

  // The baseline: greedy, or with --temperature the sampling decoder (Medusa then accepts
  // typically, with its own draws: the tokens differ, the speed is what is compared).
  const bool sampled = args.run.temperature.has_value();
  GenerateOptions baseline = generate_options(l->model.manifest, args.run, args.new_tokens);
  baseline.decoder = BlockSpec{};
  baseline.decoder.kind = sampled ? "sampling" : "greedy";
  if (sampled) {
    baseline.decoder.params.set("temperature", *args.run.temperature);
    baseline.decoder.params.set("seed", args.run.seed.value_or(1));
  }
  baseline.decoder.params.set("eos_token_ids",
                              std::vector<int64_t>{});  // every run the full length
  RunOptions medusa_run = args.run;
  medusa_run.decoder = "medusa";
  if (sampled) medusa_run.seed = args.run.seed.value_or(1);
  medusa_run.decoder_weights = args.heads;
  GenerateOptions medusa = generate_options(l->model.manifest, medusa_run, args.new_tokens);
  medusa.decoder.params.set("eos_token_ids", std::vector<int64_t>{});
  if (!args.tree.empty()) medusa.decoder.params.set("tree", args.tree);
  const std::unique_ptr<DecoderWeights> weights = attach_decoder_weights(medusa_run, model, medusa);
  std::string tree_text = args.tree;
  if (tree_text.empty())
    if (const ParamValue* v = medusa.decoder.params.find("medusa_choices"))
      if (const auto* s = std::get_if<std::string>(v)) tree_text = *s;
  if (tree_text.empty()) tree_text = "chain-3 (the decoder's default)";

  Generator generator(model, l->registry);
  double g_seconds = 0, m_seconds = 0;
  int64_t g_tokens = 0, m_tokens = 0, m_steps = 0;
  int32_t identical = 0;
  std::vector<std::vector<int32_t>> medusa_tokens;
  std::cout << "tree       " << tree_text << "\n";
  std::cout << "passes     "
            << (args.run.exact ? "row-invariant (--exact): Medusa equals greedy by construction"
                               : "fastest kernels (Medusa's tree pass may round differently)")
            << "\n";
  if (sampled)
    std::cout << "sampling   temperature " << *args.run.temperature
              << ": the sampling decoder against Medusa's typical acceptance\n";
  std::cout << "prompt  " << (sampled ? "sample" : "greedy")
            << " tok/s  medusa tok/s  speed-up  tokens/step  same tokens\n";
  for (size_t i = 0; i < prompts.size(); ++i) {
    const GenerateResult g = generator.generate(prompts[i], baseline);
    const GenerateResult m = generator.generate(prompts[i], medusa);
    const auto n_g = static_cast<double>(g.tokens.size() - 1),
               n_m = static_cast<double>(m.tokens.size() - 1);
    g_seconds += g.decode_seconds;
    m_seconds += m.decode_seconds;
    g_tokens += static_cast<int64_t>(g.tokens.size()) - 1;
    m_tokens += static_cast<int64_t>(m.tokens.size()) - 1;
    m_steps += m.decode_steps;
    size_t parted = 0;
    while (parted < std::min(g.tokens.size(), m.tokens.size()) &&
           g.tokens[parted] == m.tokens[parted])
      ++parted;
    const bool same = g.tokens == m.tokens;
    identical += same ? 1 : 0;
    medusa_tokens.push_back(m.tokens);
    std::cout << std::setw(6) << i << std::fixed << std::setprecision(1) << std::setw(14)
              << n_g / g.decode_seconds << std::setw(14) << n_m / m.decode_seconds << std::setw(9)
              << std::setprecision(2) << (n_m / m.decode_seconds) / (n_g / g.decode_seconds) << "x"
              << std::setw(13) << static_cast<double>(m.tokens.size()) / m.decode_steps << "  "
              << (sampled ? std::string("(own draws)")
                  : same  ? std::string("yes")
                          : "no, from token " + std::to_string(parted))
              << "\n";
  }
  const double g_rate = static_cast<double>(g_tokens) / g_seconds;
  const double m_rate = static_cast<double>(m_tokens) / m_seconds;
  std::cout << "all     " << std::setprecision(1) << std::setw(14) << g_rate << std::setw(14)
            << m_rate << std::setw(9) << std::setprecision(2) << m_rate / g_rate << "x"
            << std::setw(13)
            << static_cast<double>(m_tokens + static_cast<int64_t>(prompts.size())) /
                   static_cast<double>(m_steps)
            << "  "
            << (sampled ? std::string("(own draws)")
                        : std::to_string(identical) + " of " + std::to_string(prompts.size()) +
                              " identical")
            << "\n";

  if (batch > 1) {
    // The first `batch` prompts at once, in both decoders, against each alone.
    std::vector<SequenceRequest> requests;
    for (int32_t i = 0; i < batch && static_cast<size_t>(i) < prompts.size(); ++i)
      requests.push_back({i, 0, prompts[static_cast<size_t>(i)]});
    const auto t0 = std::chrono::steady_clock::now();
    const auto gb = generator.generate_batch(requests, baseline);
    const double g_b = seconds_since(t0);
    const auto t1 = std::chrono::steady_clock::now();
    const auto mb = generator.generate_batch(requests, medusa);
    const double m_b = seconds_since(t1);
    int32_t same_alone = 0, same_baseline = 0;
    int64_t n = 0;
    for (size_t i = 0; i < requests.size(); ++i) {
      same_alone += mb[i].tokens == medusa_tokens[i] ? 1 : 0;
      same_baseline += mb[i].tokens == gb[i].tokens ? 1 : 0;
      n += static_cast<int64_t>(mb[i].tokens.size());
    }
    std::cout << "batch " << requests.size() << "  " << baseline.decoder.kind << " "
              << std::setprecision(1) << static_cast<double>(n) / g_b << " tok/s, medusa "
              << static_cast<double>(n) / m_b << " tok/s (" << std::setprecision(2) << g_b / m_b
              << "x, prefill included); " << same_alone << " of " << requests.size()
              << " as alone, " << same_baseline << " of " << requests.size() << " as "
              << baseline.decoder.kind << " in the batch\n";
  }
  return 0;
}

}  // namespace

Runner add_medusa_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("medusa", "Medusa on this machine: choose the tree, benchmark");
  cmd->require_subcommand(1);
  auto args = std::make_shared<MedusaArgs>();
  const auto common = [&](CLI::App* sub) {
    sub->add_option("model", args->model, "The base model (manifest, folder or GGUF)")->required();
    sub->add_option("--heads", args->heads, "The heads' folder (tessera train, objective medusa)")
        ->required()
        ->check(CLI::ExistingDirectory);
    sub->add_option("--threads", args->run.threads, "CPU threads (0 = every core)");
    sub->add_option("--plugin-path", args->run.plugin_paths, "Extra folder to search for plugins")
        ->check(CLI::ExistingDirectory);
    sub->add_option("--repeats", args->repeats, "Timed passes per measurement")
        ->check(CLI::Range(1, 100));
  };
  auto* tree = cmd->add_subcommand("tree", "Choose the tree that maximises tokens per second here");
  common(tree);
  tree->add_option("--max-tokens", args->max_tokens, "Largest tree timed (tokens, root included)")
      ->check(CLI::Range(1, 256));
  tree->add_option("--context", args->context, "Tokens cached before the timed trees")
      ->check(CLI::Range(1, 4096));
  tree->add_flag("--write", args->write, "Store the tree as the heads' medusa_choices");
  tree->add_flag("--exact", args->run.exact, "Time row-invariant passes (generate --exact)");
  auto* bench = cmd->add_subcommand("bench", "Greedy against Medusa, side by side");
  common(bench);
  bench->add_option("-n,--new-tokens", args->new_tokens, "Tokens per prompt")
      ->check(CLI::Range(2, 4096));
  bench->add_option("--prompts", args->prompts, "How many prompts")->check(CLI::Range(1, 1000));
  bench->add_option("--prompts-file", args->prompts_file, "A prompt per line (default: built in)");
  bench->add_option("--batch", args->batch, "Also run this many prompts at once (1: not)")
      ->check(CLI::Range(1, 64));
  bench->add_option("--tree", args->tree, "A tree instead of the heads' medusa_choices");
  bench->add_flag("--exact", args->run.exact,
                  "Row-invariant passes for both decoders (Medusa then equals greedy exactly)");
  bench
      ->add_option("--temperature", args->run.temperature,
                   "Sample at this temperature: the sampling decoder against typical acceptance")
      ->check(CLI::Range(1e-6, 100.0));
  bench->add_option("--seed", args->run.seed, "Sampling seed (with --temperature)");
  return [args, tree, bench] {
    if (tree->parsed()) return run_tree(*args);
    if (bench->parsed()) return run_bench(*args);
    return 1;
  };
}

}  // namespace tessera::cli
