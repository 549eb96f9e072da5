// tessera bench: prefill and decode speed of a model, and how close decode gets
// to the memory-bandwidth roofline measured in the same run.
//
// Decode at batch 1 reads every block matrix and the lm head once per token,
// plus the KV cache up to the current context, so
//   share = decode tok/s x bytes read per token / read bandwidth
// is the fraction of the physical limit reached (1.0 = at the limit).
#include <tessera/cpu/isa.hpp>
#include <tessera/engine/error.hpp>
#include <tessera/engine/init_random.hpp>
#include <tessera/engine/manifest.hpp>
#include <tessera/engine/model.hpp>
#include <tessera/engine/rng.hpp>
#include <tessera/engine/thread_pool.hpp>
#include <tessera/formats/model_source.hpp>
#include <tessera/tools/bandwidth_probe.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "commands.hpp"
#include "numeric_flags.hpp"
#include "run_options.hpp"
#include "setup.hpp"

namespace tessera::cli {
namespace {

struct BenchArgs {
  std::string model;
  std::string weight_dtype;  // empty: the manifest's
  std::string kv_dtype;      // empty: the manifest's
  std::optional<int32_t> threads;
  int32_t prompt_len = 512;
  int32_t gen = 128;
  int32_t repetitions = 2;
  int32_t probe_mib = 256;
  bool json = false;
  std::vector<std::string> plugin_paths;
};

struct Stats {
  double mean = 0;
  double stddev = 0;
};

Stats stats_of(const std::vector<double>& v) {
  Stats s;
  if (v.empty()) return s;
  for (double x : v) s.mean += x;
  s.mean /= static_cast<double>(v.size());
  for (double x : v) s.stddev += (x - s.mean) * (x - s.mean);
  s.stddev = v.size() > 1 ? std::sqrt(s.stddev / static_cast<double>(v.size() - 1)) : 0.0;
  return s;
}

// The last-level cache's size as Linux's sysfs gives it for cpu0 (the cache
// one core shares, which sysconf may overstate as a whole socket's), or 32 MiB
// where it says nothing.
size_t last_level_cache_bytes() {
  size_t best = 0;
  int best_level = 0;
  for (int index = 0; index < 8; ++index) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index);
    std::ifstream level_file(dir + "/level"), size_file(dir + "/size");
    int level = 0;
    std::string size;
    if (!(level_file >> level) || !(size_file >> size) || size.empty()) continue;
    size_t bytes = std::strtoull(size.c_str(), nullptr, 10);
    if (size.back() == 'K') bytes <<= 10;
    if (size.back() == 'M') bytes <<= 20;
    if (level > best_level) {
      best_level = level;
      best = bytes;
    }
  }
  return best > 0 ? best : size_t{32} << 20;
}

double median_of(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t mid = v.size() / 2;
  return v.size() % 2 == 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2.0;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

bool is_builtin_shape(const std::string& name) {
  const std::vector<std::string> names = builtin_shape_names();
  return std::find(names.begin(), names.end(), name) != names.end();
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string json_list(const std::vector<double>& v) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < v.size(); ++i) out << (i ? ", " : "") << v[i];
  return out.str() + "]";
}

// Bytes of weights one decoded token reads: every tensor of the layers (block
// matrices and their norms) and the lm head once; the embedding contributes one
// row, which is negligible, unless it is the (tied) lm head.
size_t weight_bytes_per_token(const Model& model) {
  size_t total = 0;
  const bool tied = model.manifest().model.tie_embeddings;
  for (const auto& [name, t] : model.weights().all()) {
    const bool layer = name.rfind("model.layers.", 0) == 0;
    const bool head = name == "lm_head.weight" || (tied && name == "model.embed_tokens.weight");
    if (layer || head || name == "model.norm.weight") total += t.bytes();
  }
  return total;
}

// The dtypes the model's matrices run in, "q4_1+q8_0" when they differ.
std::string matrix_dtypes(const Model& model) {
  std::set<std::string> names;
  for (const auto& entry : model.weights().all())
    if (entry.second.ndim() >= 2) names.insert(dtype_name(entry.second.dtype()));
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : "+") + n;
  return out.empty() ? std::string("none") : out;
}

int64_t block_parameters(const Model& model) {
  int64_t p = 0;
  for (int32_t i = 0; i < model.num_layers(); ++i)
    p += model.attention(i).info().parameters + model.ffn(i).info().parameters;
  return p;
}

int32_t argmax(const std::vector<float>& v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

int run_bench(const BenchArgs& args) {
  Manifest manifest;
  WeightStore weights;
  std::string source;
  if (is_builtin_shape(args.model)) {
    manifest = builtin_shape(args.model);
    source = args.model + " (built-in shape, random weights)";
  } else {
    LoadedModel loaded = open_model(args.model);
    manifest = std::move(loaded.manifest);
    weights = std::move(loaded.weights);
    source = args.model;
  }
  apply_weight_dtype(manifest, args.weight_dtype);
  if (args.threads) manifest.runtime.threads = *args.threads;
  apply_kv_dtype(manifest, args.kv_dtype);
  const int32_t capacity = args.prompt_len + args.gen;
  if (capacity > manifest.model.max_seq_len)
    throw Error("--prompt-len " + std::to_string(args.prompt_len) + " + --gen " +
                std::to_string(args.gen) + " exceeds the model's max_seq_len " +
                std::to_string(manifest.model.max_seq_len));

  PluginRegistry registry;
  load_plugins(registry, args.plugin_paths, &manifest);
  ThreadPool pool(manifest.runtime.threads);
  // A built-in shape, or a manifest with random weights, leaves `weights` empty: the model
  // draws them from what its blocks declare.
  Model model(manifest, registry, std::move(weights), pool, ModelOptions{1, capacity, nullptr});

  // The same pseudo-random prompt every run.
  std::vector<int32_t> prompt(static_cast<size_t>(args.prompt_len));
  Rng rng(1);
  for (int32_t& t : prompt)
    t = static_cast<int32_t>(rng.next() % static_cast<uint64_t>(model.vocab()));
  std::vector<float> logits(static_cast<size_t>(model.vocab()));
  ForwardBatch step;
  step.slots = {0};
  step.offsets = {0, 1};
  step.tokens = {0};
  step.last_only = true;

  auto run_once = [&](int32_t prompt_len, int32_t gen, double& prefill_s, double& decode_s) {
    model.reset(0);
    ForwardBatch prefill;
    prefill.slots = {0};
    prefill.offsets = {0, prompt_len};
    prefill.tokens.assign(prompt.begin(), prompt.begin() + prompt_len);
    prefill.last_only = true;
    const auto t0 = std::chrono::steady_clock::now();
    model.forward(prefill, logits.data(), nullptr);
    prefill_s = seconds_since(t0);
    const auto t1 = std::chrono::steady_clock::now();
    for (int32_t i = 0; i < gen; ++i) {
      step.tokens[0] = argmax(logits);
      model.forward(step, logits.data(), nullptr);
    }
    decode_s = seconds_since(t1);
  };

  // On a shared machine the bandwidth available changes from one second to the
  // next, so the probe runs right before and right after every repetition: the
  // roofline of a repetition uses the better of its two neighbours, and the
  // overall roofline the best probe of the whole run (the conservative figure).
  const size_t probe_bytes = static_cast<size_t>(args.probe_mib) << 20;
  constexpr int kProbeRuns = 3;
  ReadBandwidth bandwidth = measure_read_bandwidth(pool, probe_bytes, kProbeRuns);
  double prefill_s = 0, decode_s = 0;
  run_once(std::min(args.prompt_len, 8), std::min(args.gen, 4), prefill_s, decode_s);  // warm-up
  std::vector<double> prefill_tps, decode_tps, rep_bandwidth;
  double before = measure_read_bandwidth(pool, probe_bytes, kProbeRuns).bytes_per_second;
  for (int32_t rep = 0; rep < args.repetitions; ++rep) {
    run_once(args.prompt_len, args.gen, prefill_s, decode_s);
    prefill_tps.push_back(prefill_s > 0 ? args.prompt_len / prefill_s : 0.0);
    decode_tps.push_back(decode_s > 0 ? args.gen / decode_s : 0.0);
    const ReadBandwidth after = measure_read_bandwidth(pool, probe_bytes, kProbeRuns);
    rep_bandwidth.push_back(std::max(before, after.bytes_per_second));
    bandwidth.bytes_per_second =
        std::max({bandwidth.bytes_per_second, before, after.bytes_per_second});
    before = after.bytes_per_second;
  }
  bandwidth.repetitions = kProbeRuns * (args.repetitions + 2);

  const Stats prefill = stats_of(prefill_tps), decode = stats_of(decode_tps);
  // Decode step i (0-based) attends prompt_len + i + 1 rows.
  const double mean_context = args.prompt_len + (args.gen + 1) / 2.0;
  const double weight_bytes = static_cast<double>(weight_bytes_per_token(model));
  const double kv_bytes = static_cast<double>(model.kv_cache().bytes_per_token()) * mean_context;
  const double bytes_per_token = weight_bytes + kv_bytes;
  const double roofline_tps = bandwidth.bytes_per_second / bytes_per_token;
  const double share = decode.mean / roofline_tps;
  // Each repetition against the bandwidth measured next to it.
  std::vector<double> rep_shares;
  for (size_t i = 0; i < decode_tps.size(); ++i)
    rep_shares.push_back(rep_bandwidth[i] > 0 ? decode_tps[i] * bytes_per_token / rep_bandwidth[i]
                                              : 0.0);
  const double median_share = median_of(rep_shares);
  // A probe buffer that fits in the caches measures the caches, not memory: its
  // roofline would be far above what decode can reach.
  const size_t llc = last_level_cache_bytes();
  if (bandwidth.bytes < 4 * llc)
    std::cerr << "bench: warning: the probe reads " << (bandwidth.bytes >> 20)
              << " MiB, less than 4x the " << (llc >> 20)
              << " MiB last-level cache; it measures the caches and overstates the bandwidth "
                 "(raise --probe-mib)\n";
  const char* kernels = cpu::isa_name(cpu::active_isa());
  // The KV cache's dtype: that of its layers when they agree, else "mixed".
  std::string kv_dtype = "none";
  for (int32_t layer = 0; layer < model.num_layers(); ++layer) {
    if (!model.kv_cache().has_layer(layer)) continue;
    const std::string d = dtype_name(model.kv_cache().layer_shape(layer).dtype);
    kv_dtype = kv_dtype == "none" || kv_dtype == d ? d : "mixed";
  }
  const double prefill_gflops =
      2.0 * static_cast<double>(block_parameters(model)) * prefill.mean / 1e9;
  const std::string dtype = matrix_dtypes(model);

  if (args.json) {
    std::cout << std::setprecision(6) << "{\"model\": " << json_string(source)
              << ", \"weight_dtype\": " << json_string(dtype) << ", \"threads\": " << pool.size()
              << ", \"layers\": " << model.num_layers() << ", \"prompt_len\": " << args.prompt_len
              << ", \"gen\": " << args.gen << ", \"repetitions\": " << args.repetitions
              << ", \"prefill_tok_s\": " << prefill.mean
              << ", \"prefill_tok_s_stddev\": " << prefill.stddev
              << ", \"prefill_tok_s_runs\": " << json_list(prefill_tps)
              << ", \"prefill_matrix_gflop_s\": " << prefill_gflops
              << ", \"decode_tok_s\": " << decode.mean
              << ", \"decode_tok_s_stddev\": " << decode.stddev
              << ", \"decode_tok_s_runs\": " << json_list(decode_tps)
              << ", \"weight_bytes_per_token\": " << weight_bytes
              << ", \"kv_bytes_per_token\": " << kv_bytes << ", \"mean_context\": " << mean_context
              << ", \"bytes_per_token\": " << bytes_per_token
              << ", \"bandwidth_bytes_per_s\": " << bandwidth.bytes_per_second
              << ", \"bandwidth_probe_threads\": " << bandwidth.threads
              << ", \"bandwidth_probe_bytes\": " << bandwidth.bytes
              << ", \"roofline_tok_s\": " << roofline_tps << ", \"roofline_share\": " << share
              << ", \"bandwidth_runs\": " << json_list(rep_bandwidth)
              << ", \"roofline_share_runs\": " << json_list(rep_shares)
              << ", \"roofline_share_median\": " << median_share
              << ", \"kernels\": " << json_string(kernels)
              << ", \"kv_dtype\": " << json_string(kv_dtype) << "}\n";
    return 0;
  }
  char line[256];
  std::cout << "model " << source << ": " << model.num_layers() << " layers, weights " << dtype
            << ", " << pool.size() << " threads, " << args.repetitions << " repetitions, "
            << kernels << " kernels\n";
  std::snprintf(line, sizeof line,
                "prefill %6d tokens: %9.2f tok/s (sd %.2f), block matrices %.1f GFLOP/s\n",
                args.prompt_len, prefill.mean, prefill.stddev, prefill_gflops);
  std::cout << line;
  std::snprintf(line, sizeof line, "decode  %6d tokens: %9.2f tok/s (sd %.2f)\n", args.gen,
                decode.mean, decode.stddev);
  std::cout << line;
  std::snprintf(line, sizeof line,
                "bytes per decoded token: %.1f MB weights + %.1f MB KV cache (%s, mean context "
                "%.1f) = %.1f MB\n",
                weight_bytes / 1e6, kv_bytes / 1e6, kv_dtype.c_str(), mean_context,
                bytes_per_token / 1e6);
  std::cout << line;
  std::snprintf(line, sizeof line,
                "read bandwidth: %.2f GB/s (probe: %d threads, %zu MiB, best of %d runs around the "
                "repetitions)\n",
                bandwidth.bytes_per_second / 1e9, bandwidth.threads, bandwidth.bytes >> 20,
                bandwidth.repetitions);
  std::cout << line;
  std::snprintf(line, sizeof line, "roofline: %.2f tok/s; decode reaches %.1f %% of it\n",
                roofline_tps, 100.0 * share);
  std::cout << line;
  const auto [low, high] = std::minmax_element(rep_shares.begin(), rep_shares.end());
  std::snprintf(line, sizeof line,
                "each repetition against the probe next to it: median %.1f %% (%.1f-%.1f %%)\n",
                100.0 * median_share, 100.0 * *low, 100.0 * *high);
  std::cout << line;
  return 0;
}

}  // namespace

Runner add_bench_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "bench", "Measure prefill and decode speed against the memory-bandwidth roofline");
  auto a = std::make_shared<BenchArgs>();
  cmd->add_option("model", a->model,
                  "Built-in shape (smollm2-135m, llama-3.1-8b; random weights), manifest, GGUF "
                  "file or Hugging Face folder")
      ->required();
  add_weight_dtype_option(*cmd, a->weight_dtype);
  add_kv_dtype_option(*cmd, a->kv_dtype);
  cmd->add_option("--threads", a->threads, "CPU threads (0 = every core)")
      ->check(integer_in(0, ThreadPool::kMaxThreads));
  cmd->add_option("--prompt-len", a->prompt_len, "Prompt tokens to prefill")
      ->check(integer_in(1, 1 << 20));
  cmd->add_option("--gen", a->gen, "Tokens to decode one at a time")->check(integer_in(1, 1 << 20));
  cmd->add_option("--repetitions", a->repetitions, "Times to repeat prefill + decode")
      ->check(integer_in(1, 1000));
  cmd->add_option("--probe-mib", a->probe_mib, "MiB the bandwidth probe reads per repetition")
      ->check(integer_in(1, 1 << 16));
  cmd->add_flag("--json", a->json, "One JSON object instead of text");
  cmd->add_option("--plugin-path", a->plugin_paths, "Extra folder to search for plugins")
      ->check(CLI::ExistingDirectory);
  return [a] { return run_bench(*a); };
}

}  // namespace tessera::cli
