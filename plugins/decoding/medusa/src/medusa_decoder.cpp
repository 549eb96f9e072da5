// The "medusa" decoder: speculative decoding with Medusa heads, verified by a tree pass.
//
// Each step, for every sequence:
//   1. the root: the base model's next token from the logits the last step left (argmax, or a
//      draw at the temperature);
//   2. candidates: head k's top candidates from the hidden state the last step left; the tree
//      (a list of paths, medusa_tree.hpp) places them: a node at depth d is head d-1's
//      candidate of its rank;
//   3. one forward of every sequence's tree together, each with its tree mask and positions
//      length + depth, returning the logits and hidden state of every node;
//   4. acceptance: a node is accepted when its token is what the base model chooses after its
//      parent (greedy: the argmax; typical acceptance: p > min(epsilon, delta exp(-H(p))) at
//      the temperature); the deepest node whose ancestors are all accepted wins (ties: the
//      lower node, i.e. the likelier candidates), and its path is emitted;
//   5. the KV rows of the emitted path are compacted onto the sequence's next positions; the
//      logits and hidden state of its last node seed the next step, so no extra forward runs.
// With greedy acceptance every emitted token is the argmax of the base model's logits after the
// tokens before it: the output is plain greedy decoding's, up to how the pass of several tokens
// rounds (the tree's logits come from a many-token pass).
#include <tessera/cpu/matmul.hpp>
#include <tessera/decoding/medusa_heads.hpp>
#include <tessera/decoding/medusa_tree.hpp>
#include <tessera/decoding/token_choice.hpp>
#include <tessera/plugin.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace tessera::decoding {
namespace {

constexpr std::string_view kParams[] = {"eos_token_ids",    "vocab_size",
                                        "hidden_size",      "tree",
                                        "temperature",      "seed",
                                        "typical_epsilon",  "typical_delta",
                                        "medusa_num_heads", "medusa_num_layers",
                                        "medusa_choices"};

std::string known_params() {
  std::string s;
  for (std::string_view k : kParams) (s += s.empty() ? "" : ", ") += k;
  return s + " (and other medusa_* keys of the heads' config, which are ignored)";
}

std::string number_text(double v) {
  std::ostringstream o;
  o << v;
  return o.str();
}

struct Head {
  std::vector<cpu::MatrixView> w;     // [layers] [hidden, hidden]
  std::vector<std::vector<float>> b;  // [layers] [hidden], f32
  cpu::MatrixView projection;         // [vocab, hidden]
  bool shared = false;                // the base model's lm head
};

cpu::MatrixView view_of(const ts_tensor& t) {
  return {t.data, t.dtype, t.shape[0], t.shape[1], t.stride[0]};
}

class MedusaDecoder {
 public:
  explicit MedusaDecoder(const ts_decoder_config& config)
      : vocab_(config.vocab), hidden_(config.hidden), host_(config.host) {
    try {
      read_params(config);
      load_heads(config);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string("medusa decoder: ") + e.what());
    }
  }

  void step(const ts_decode_host& host, ts_decode_step& step) {
    check_step(host, step);
    feeds_.clear();
    for (int32_t s = 0; s < step.n_seqs; ++s) propose(host, step, s);
    if (feeds_.empty()) return;
    head_candidates();
    verify_pass(host);
    for (const Feed& f : feeds_) accept(host, step, f);
  }

 private:
  // One sequence's tree in this step's pass.
  struct Feed {
    int32_t s = 0;  // index in the step
    int32_t slot = 0;
    int32_t first_row = 0;  // cached rows before the tree
    int32_t offset = 0;     // first token of the tree in the pass
    MedusaTree tree;        // as cut for this sequence
    std::vector<int32_t> tokens;
    std::vector<float> hidden;  // the state the heads read
  };

  void read_params(const ts_decoder_config& config) {
    const sdk::Params params(config.params);
    for (int32_t i = 0; i < config.params.count; ++i) {
      const char* key = config.params.items[i].key;
      if (key == nullptr)
        throw std::invalid_argument("parameter " + std::to_string(i) + " has no key");
      const std::string_view k(key);
      if (std::find(std::begin(kParams), std::end(kParams), k) == std::end(kParams) &&
          k.substr(0, 7) != "medusa_")
        throw std::invalid_argument("unknown parameter '" + std::string(k) +
                                    "'; accepted parameters: " + known_params());
    }
    if (params.has("vocab_size") && vocab_ > 0 && params.get_int("vocab_size") != vocab_)
      throw std::invalid_argument("parameter 'vocab_size' is " +
                                  std::to_string(params.get_int("vocab_size")) +
                                  " but the decoder config has vocab " + std::to_string(vocab_));
    if (vocab_ <= 0 || hidden_ <= 0)
      throw std::invalid_argument("the decoder config has vocab " + std::to_string(vocab_) +
                                  " and hidden " + std::to_string(hidden_) + "; expected both > 0");
    if (params.has("eos_token_ids"))
      for (int64_t id : params.get_ints("eos_token_ids")) {
        if (id < 0 || id >= vocab_)
          throw std::invalid_argument("parameter 'eos_token_ids' holds " + std::to_string(id) +
                                      ", expected token ids in [0, " + std::to_string(vocab_) +
                                      ")");
        eos_.push_back(static_cast<int32_t>(id));
      }
    // The tree: 'tree' when given, else the one the heads' config chose, else a chain of 3.
    const std::string tree = params.has("tree")             ? params.get_string("tree")
                             : params.has("medusa_choices") ? params.get_string("medusa_choices")
                                                            : std::string("chain-3");
    tree_ = parse_medusa_tree(tree);
    if (params.has("temperature")) {
      const double t = params.get_float("temperature");
      if (!(t > 0) || !std::isfinite(t))
        throw std::invalid_argument("parameter 'temperature' is " + number_text(t) +
                                    ", expected a finite number > 0 (leave it out for greedy)");
      SamplingSettings s;
      s.temperature = t;
      s.seed = static_cast<uint64_t>(params.get_int("seed", 0));
      sampling_ = s;
    } else if (params.has("seed")) {
      throw std::invalid_argument(
          "parameter 'seed' is set without 'temperature'; greedy "
          "acceptance draws nothing");
    }
    epsilon_ = params.get_float("typical_epsilon", epsilon_);
    delta_ = params.get_float("typical_delta", delta_);
    if (!(epsilon_ >= 0 && epsilon_ <= 1))
      throw std::invalid_argument("parameter 'typical_epsilon' is " + number_text(epsilon_) +
                                  ", expected a number in [0, 1]");
    if (!(delta_ >= 0) || !std::isfinite(delta_))
      throw std::invalid_argument("parameter 'typical_delta' is " + number_text(delta_) +
                                  ", expected a finite number >= 0");
    if (params.has("medusa_num_heads")) configured_heads_ = params.get_int("medusa_num_heads");
    if (params.has("medusa_num_layers")) configured_layers_ = params.get_int("medusa_num_layers");
  }

  // Heads and layers as the tensors have them (a config that disagrees is reported, not
  // trusted).
  void load_heads(const ts_decoder_config& config) {
    if (config.weights == nullptr || config.weights->get == nullptr)
      throw std::invalid_argument(
          "no heads: the medusa decoder reads its heads from the decoder weights (tessera "
          "generate --decoder-weights DIR, a folder with medusa_lm_head.safetensors)");
    const ts_weights& weights = *config.weights;
    const auto find = [&](const std::string& name, ts_tensor* out) {
      ts_error err{};
      return weights.get(weights.ctx, name.c_str(), out, &err) == TS_OK;
    };
    ts_tensor t{};
    int32_t layers = 0;
    while (find(medusa_linear_name(0, layers, "weight"), &t)) ++layers;
    int32_t heads = 0;
    while (find(medusa_linear_name(heads, 0, "weight"), &t)) ++heads;
    if (heads == 0 || layers == 0)
      throw std::invalid_argument("the decoder weights hold no tensor " +
                                  medusa_linear_name(0, 0, "weight") +
                                  "; expected Medusa heads (medusa_head.{k}.{j}.linear.*)");
    const auto require = [&](const std::string& name, int64_t rows, int64_t cols) {
      ts_tensor out{};
      ts_error err{};
      if (weights.get(weights.ctx, name.c_str(), &out, &err) != TS_OK)
        throw std::invalid_argument("tensor " + name + " is missing: " + err.message);
      const bool matrix = cols > 0;
      const bool shape_ok = matrix ? out.ndim == 2 && out.shape[0] == rows && out.shape[1] == cols
                                   : out.ndim == 1 && out.shape[0] == rows;
      if (!shape_ok)
        throw std::invalid_argument("tensor " + name + " has " + std::to_string(out.ndim) +
                                    " dims [" + std::to_string(out.shape[0]) +
                                    (out.ndim > 1 ? ", " + std::to_string(out.shape[1]) : "") +
                                    "], expected [" + std::to_string(rows) +
                                    (matrix ? ", " + std::to_string(cols) : "") + "]");
      if (out.device != TS_DEVICE_CPU)
        throw std::invalid_argument("tensor " + name + " is not in host memory");
      if (out.dtype != TS_F32 && out.dtype != TS_BF16 && out.dtype != TS_F16)
        throw std::invalid_argument("tensor " + name + " has dtype " + std::to_string(out.dtype) +
                                    ", expected f32, bf16 or f16");
      if (out.stride[out.ndim - 1] != 1)
        throw std::invalid_argument("tensor " + name + " is not contiguous in its last dim");
      return out;
    };
    heads_.resize(static_cast<size_t>(heads));
    for (int32_t k = 0; k < heads; ++k) {
      Head& h = heads_[static_cast<size_t>(k)];
      for (int32_t j = 0; j < layers; ++j) {
        h.w.push_back(view_of(require(medusa_linear_name(k, j, "weight"), hidden_, hidden_)));
        const ts_tensor b = require(medusa_linear_name(k, j, "bias"), hidden_, 0);
        std::vector<float> bias(static_cast<size_t>(hidden_));
        for (int32_t i = 0; i < hidden_; ++i)
          bias[static_cast<size_t>(i)] =
              cpu::matrix_element({b.data, b.dtype, 1, hidden_, hidden_}, 0, i);
        h.b.push_back(std::move(bias));
      }
      const std::string own = medusa_projection_name(k, layers);
      if (find(own, &t)) {
        h.projection = view_of(require(own, vocab_, hidden_));
      } else {
        h.projection = view_of(require("lm_head.weight", vocab_, hidden_));
        h.shared = true;
      }
    }
    // The shared projection is read once for every head (one product of several rows).
    all_shared_ = std::all_of(heads_.begin(), heads_.end(), [](const Head& h) { return h.shared; });
    std::string note;
    if (configured_heads_ && *configured_heads_ != heads)
      note += "the heads' config says " + std::to_string(*configured_heads_) + " heads; ";
    if (configured_layers_ && *configured_layers_ != layers)
      note += "the heads' config says " + std::to_string(*configured_layers_) + " layers; ";
    if (!note.empty())
      log(2, "medusa decoder: " + note + "the tensors hold " + std::to_string(heads) +
                 " heads of " + std::to_string(layers) + " layers, which are used");
    if (tree_.depth() > heads)
      throw std::invalid_argument("the tree " + tree_.text().substr(0, 60) + " is " +
                                  std::to_string(tree_.depth()) + " deep, but there are only " +
                                  std::to_string(heads) +
                                  " heads (a node at depth d reads head d-1)");
    const std::vector<int32_t> ranks = tree_.ranks_per_head();
    for (int32_t r : ranks)
      if (r > vocab_)
        throw std::invalid_argument("the tree asks for candidate rank " + std::to_string(r - 1) +
                                    " of a vocabulary of " + std::to_string(vocab_));
  }

  void log(int32_t level, const std::string& message) const {
    if (host_ != nullptr && host_->log != nullptr) host_->log(host_->ctx, level, message.c_str());
  }

  bool is_eos(int32_t token) const {
    return std::find(eos_.begin(), eos_.end(), token) != eos_.end();
  }

  // What the last step left for a slot: its own record, or the host's after a prefill.
  const float* seed_logits(const ts_decode_host& host, int32_t slot) const {
    const auto it = seeds_.find(slot);
    return it != seeds_.end() ? it->second.logits.data() : host.last_logits(host.ctx, slot);
  }
  const float* seed_hidden(const ts_decode_host& host, int32_t slot) const {
    const auto it = seeds_.find(slot);
    return it != seeds_.end()
               ? it->second.hidden.data()
               : (host.last_hidden != nullptr ? host.last_hidden(host.ctx, slot) : nullptr);
  }

  Sampler& sampler_of(int32_t slot) {
    auto it = samplers_.find(slot);
    if (it != samplers_.end()) return it->second;
    SamplingSettings settings = *sampling_;
    if (slot != 0) {  // as the sampling decoder: slot k draws from splitmix64(seed + k)
      uint64_t z = settings.seed + static_cast<uint64_t>(slot) * 0x9e3779b97f4a7c15ull;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      settings.seed = z ^ (z >> 31);
    }
    return samplers_.emplace(slot, Sampler(settings)).first->second;
  }

  int32_t choose(int32_t slot, const float* logits) {
    return sampling_ ? sampler_of(slot).sample(logits, vocab_) : argmax_token(logits, vocab_);
  }

  // Step 1 and 2 for sequence s: emits the root; when it goes on, queues its tree.
  void propose(const ts_decode_host& host, ts_decode_step& step, int32_t s) {
    const int32_t slot = step.slots[s];
    const float* logits = seed_logits(host, slot);
    const float* hidden = seed_hidden(host, slot);
    if (logits == nullptr || hidden == nullptr)
      throw std::runtime_error("medusa decoder: the host has no logits or hidden state for slot " +
                               std::to_string(slot) + " (was it prefilled?)");
    const int32_t root = choose(slot, logits);
    step.tokens[static_cast<int64_t>(s) * step.capacity] = root;
    step.counts[s] = 1;
    step.finished[s] = 0;
    if (step.budget[s] == 1 || is_eos(root)) {
      step.finished[s] = 1;
      return;
    }
    // Emitting d + 1 tokens needs d nodes below the root. Every emitted token but the last is
    // fed, so the budget b leaves room for b - 1 rows (the host's guarantee): the tree may use
    // that many, and the step's capacity bounds the tokens emitted.
    const int32_t max_depth = std::min({tree_.depth(), step.budget[s] - 1, step.capacity - 1});
    MedusaTree tree = tree_.cut_depth(max_depth).prefix(std::max(1, step.budget[s] - 1));
    Feed f;
    f.s = s;
    f.slot = slot;
    f.first_row = host.length(host.ctx, slot);
    f.tokens.assign(static_cast<size_t>(tree.size()), root);
    if (tree.size() > 1) f.hidden.assign(hidden, hidden + hidden_);
    f.tree = std::move(tree);
    feeds_.push_back(std::move(f));
  }

  // The tree tokens below every queued root: the heads of every sequence in one product per
  // weight (rows head-major: head 0 of each sequence, then head 1, ...), so that a batch reads
  // each weight once. Row by row (RowReduction::each_row): a sequence's candidates are the
  // ones it gets alone.
  void head_candidates() {
    const int64_t h = hidden_;
    int32_t depth = 0;
    for (const Feed& f : feeds_) depth = std::max(depth, f.tree.depth());
    if (depth == 0) return;
    // Row of (feed i, head k), or -1 when feed i's tree does not reach depth k + 1.
    std::vector<std::vector<int64_t>> row_of(feeds_.size(),
                                             std::vector<int64_t>(static_cast<size_t>(depth), -1));
    std::vector<int64_t> head_first(static_cast<size_t>(depth) + 1, 0);
    int64_t rows = 0;
    for (int32_t k = 0; k < depth; ++k) {
      head_first[static_cast<size_t>(k)] = rows;
      for (size_t i = 0; i < feeds_.size(); ++i)
        if (feeds_[i].tree.depth() > k) row_of[i][static_cast<size_t>(k)] = rows++;
    }
    head_first[static_cast<size_t>(depth)] = rows;
    x_.resize(static_cast<size_t>(rows * h));
    tmp_.resize(static_cast<size_t>(rows * h));
    for (size_t i = 0; i < feeds_.size(); ++i)
      for (int32_t k = 0; k < depth; ++k)
        if (const int64_t r = row_of[i][static_cast<size_t>(k)]; r >= 0)
          std::copy(feeds_[i].hidden.begin(), feeds_[i].hidden.end(), x_.begin() + r * h);
    const auto each_row = cpu::RowReduction::each_row;
    for (int32_t k = 0; k < depth; ++k) {
      const Head& head = heads_[static_cast<size_t>(k)];
      const int64_t r0 = head_first[static_cast<size_t>(k)];
      const int64_t n = head_first[static_cast<size_t>(k) + 1] - r0;
      for (size_t j = 0; j < head.w.size(); ++j) {
        medusa_resblock_forward(host_, head.w[j], head.b[j].data(), x_.data() + r0 * h, n,
                                tmp_.data(), nullptr, each_row);
        std::copy(tmp_.begin(), tmp_.begin() + n * h, x_.begin() + r0 * h);
      }
    }
    head_logits_.resize(static_cast<size_t>(rows * vocab_));
    if (all_shared_) {
      cpu::matmul_nt(host_, x_.data(), rows, h, heads_[0].projection, head_logits_.data(), vocab_,
                     each_row);
    } else {
      for (int32_t k = 0; k < depth; ++k) {
        const int64_t r0 = head_first[static_cast<size_t>(k)];
        cpu::matmul_nt(host_, x_.data() + r0 * h, head_first[static_cast<size_t>(k) + 1] - r0, h,
                       heads_[static_cast<size_t>(k)].projection, head_logits_.data() + r0 * vocab_,
                       vocab_, each_row);
      }
    }
    for (size_t i = 0; i < feeds_.size(); ++i) {
      Feed& f = feeds_[i];
      const std::vector<int32_t> ranks = f.tree.ranks_per_head();
      std::vector<std::vector<int32_t>> top(ranks.size());
      for (size_t k = 0; k < ranks.size(); ++k)
        top[k] = top_tokens(head_logits_.data() + row_of[i][k] * vocab_, ranks[k]);
      for (int32_t node = 1; node < f.tree.size(); ++node) {
        const MedusaNode& n = f.tree.node(node);
        f.tokens[static_cast<size_t>(node)] =
            top[static_cast<size_t>(n.depth - 1)][static_cast<size_t>(n.rank)];
      }
    }
  }

  // The k largest logits' tokens, largest first (ties: lower token first).
  std::vector<int32_t> top_tokens(const float* logits, int32_t k) const {
    std::vector<int32_t> best;
    best.reserve(static_cast<size_t>(k) + 1);
    const auto better = [&](int32_t a, int32_t b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    };
    for (int32_t t = 0; t < vocab_; ++t) {
      if (static_cast<int32_t>(best.size()) == k && !better(t, best.back())) continue;
      best.insert(std::upper_bound(best.begin(), best.end(), t, better), t);
      if (static_cast<int32_t>(best.size()) > k) best.pop_back();
    }
    return best;
  }

  // Step 3: every queued tree in one forward, all rows' logits and hidden states kept.
  void verify_pass(const ts_decode_host& host) {
    slots_.clear();
    offsets_.assign(1, 0);
    tokens_.clear();
    positions_.clear();
    masks_.clear();
    mask_ptrs_.clear();
    for (Feed& f : feeds_) {
      f.offset = offsets_.back();
      slots_.push_back(f.slot);
      tokens_.insert(tokens_.end(), f.tokens.begin(), f.tokens.end());
      for (int32_t i = 0; i < f.tree.size(); ++i)
        positions_.push_back(f.first_row + f.tree.node(i).depth);
      offsets_.push_back(static_cast<int32_t>(tokens_.size()));
      masks_.push_back(f.tree.mask());
    }
    for (const std::vector<uint8_t>& m : masks_) mask_ptrs_.push_back(m.data());
    const size_t rows = tokens_.size();
    pass_logits_.resize(rows * static_cast<size_t>(vocab_));
    pass_hidden_.resize(rows * static_cast<size_t>(hidden_));
    ts_forward_request request{};
    request.struct_size = sizeof(ts_forward_request);
    request.n_seqs = static_cast<int32_t>(feeds_.size());
    request.slots = slots_.data();
    request.offsets = offsets_.data();
    request.tokens = tokens_.data();
    request.positions = positions_.data();
    request.tree_masks = mask_ptrs_.data();
    request.logits = pass_logits_.data();
    request.hidden = pass_hidden_.data();
    ts_error err{};
    if (host.forward(host.ctx, &request, &err) != TS_OK)
      throw std::runtime_error("medusa decoder: the host's forward of " + std::to_string(rows) +
                               " tree tokens over " + std::to_string(feeds_.size()) +
                               " sequence(s) failed: " + err.message);
  }

  // Whether the base model, after node `parent`'s logits, takes `token`.
  bool takes(int32_t slot, const float* logits, int32_t token) {
    if (!sampling_) return argmax_token(logits, vocab_) == token;
    // Typical acceptance: p(token) > min(epsilon, delta * exp(-H(p))) at the temperature.
    const double t = sampling_->temperature;
    double max_v = -INFINITY;
    for (int32_t i = 0; i < vocab_; ++i) max_v = std::max<double>(max_v, logits[i]);
    double z = 0, zs = 0;
    for (int32_t i = 0; i < vocab_; ++i) {
      const double a = (logits[i] - max_v) / t;
      const double e = std::exp(a);
      z += e;
      zs += e * a;
    }
    const double entropy = std::log(z) - zs / z;
    const double p = std::exp((logits[token] - max_v) / t) / z;
    (void)slot;
    return p > std::min(epsilon_, delta_ * std::exp(-entropy));
  }

  // Steps 4 and 5 for one sequence.
  void accept(const ts_decode_host& host, ts_decode_step& step, const Feed& f) {
    const MedusaTree& tree = f.tree;
    const auto row_logits = [&](int32_t node) {
      return pass_logits_.data() +
             static_cast<size_t>(f.offset + node) * static_cast<size_t>(vocab_);
    };
    // ok[i]: node i and all its ancestors accepted. Parents come first.
    std::vector<uint8_t> ok(static_cast<size_t>(tree.size()), 0);
    ok[0] = 1;
    int32_t best = 0;
    for (int32_t i = 1; i < tree.size(); ++i) {
      const MedusaNode& n = tree.node(i);
      if (ok[static_cast<size_t>(n.parent)] == 0) continue;
      if (!takes(f.slot, row_logits(n.parent), f.tokens[static_cast<size_t>(i)])) continue;
      ok[static_cast<size_t>(i)] = 1;
      if (n.depth > tree.node(best).depth) best = i;
    }
    std::vector<int32_t> path;  // root .. best
    for (int32_t i = best; i >= 0; i = tree.node(i).parent) path.push_back(i);
    std::reverse(path.begin(), path.end());

    // Emit the nodes after the root (the root went out in propose), up to an end token or the
    // budget.
    int32_t count = 1;
    bool finished = false;
    for (size_t p = 1; p < path.size() && !finished; ++p) {
      const int32_t token = f.tokens[static_cast<size_t>(path[p])];
      step.tokens[static_cast<int64_t>(f.s) * step.capacity + count] = token;
      ++count;
      finished = is_eos(token) || count == step.budget[f.s];
    }
    step.counts[f.s] = count;
    step.finished[f.s] = finished ? 1 : 0;
    accepted_ += count;
    steps_ += 1;

    // Keep the rows of the emitted tokens that are fed: all of them when the sequence goes
    // on (the next root comes from the last one's logits), all but the last when it ends.
    const auto keep_n = static_cast<size_t>(finished ? count - 1 : count);
    keep_.assign(path.begin(), path.begin() + static_cast<std::ptrdiff_t>(keep_n));
    ts_error err{};
    if (host.compact_kv(host.ctx, f.slot, f.first_row, keep_.data(),
                        static_cast<int32_t>(keep_.size()), &err) != TS_OK)
      throw std::runtime_error("medusa decoder: compacting slot " + std::to_string(f.slot) +
                               "'s accepted rows failed: " + err.message);
    if (finished) {
      seeds_.erase(f.slot);
      return;
    }
    Seed& seed = seeds_[f.slot];
    const auto last = static_cast<size_t>(f.offset) + static_cast<size_t>(path.back());
    seed.logits.assign(row_logits(path.back()), row_logits(path.back()) + vocab_);
    seed.hidden.assign(
        pass_hidden_.begin() + static_cast<std::ptrdiff_t>(last * static_cast<size_t>(hidden_)),
        pass_hidden_.begin() +
            static_cast<std::ptrdiff_t>((last + 1) * static_cast<size_t>(hidden_)));
  }

  void check_step(const ts_decode_host& host, const ts_decode_step& step) const {
    const std::string where = "medusa decoder step: ";
    if (host.forward == nullptr || host.last_logits == nullptr || host.last_hidden == nullptr ||
        host.compact_kv == nullptr || host.length == nullptr)
      throw std::invalid_argument(where +
                                  "the decode host lacks forward, last_logits, "
                                  "last_hidden, compact_kv or length");
    if (host.vocab != vocab_ || host.hidden != hidden_)
      throw std::invalid_argument(where + "the host has vocab " + std::to_string(host.vocab) +
                                  " and hidden " + std::to_string(host.hidden) +
                                  " but the decoder was created for " + std::to_string(vocab_) +
                                  " and " + std::to_string(hidden_));
    if (step.n_seqs < 0)
      throw std::invalid_argument(where + "n_seqs is " + std::to_string(step.n_seqs) +
                                  ", expected >= 0");
    if (step.n_seqs == 0) return;
    if (step.capacity < 1)
      throw std::invalid_argument(where + "capacity is " + std::to_string(step.capacity) +
                                  ", expected room for at least 1 token per sequence");
    if (step.slots == nullptr || step.budget == nullptr || step.tokens == nullptr ||
        step.counts == nullptr || step.finished == nullptr)
      throw std::invalid_argument(where + "slots, budget, tokens, counts and finished must be set");
    for (int32_t s = 0; s < step.n_seqs; ++s)
      if (step.budget[s] < 1)
        throw std::invalid_argument(where + "budget[" + std::to_string(s) + "] is " +
                                    std::to_string(step.budget[s]) + ", expected >= 1");
  }

 public:
  ~MedusaDecoder() {
    if (steps_ > 0)
      log(0, "medusa decoder: " + std::to_string(accepted_) + " tokens in " +
                 std::to_string(steps_) + " verified steps, " +
                 number_text(static_cast<double>(accepted_) / static_cast<double>(steps_)) +
                 " per step");
  }
  MedusaDecoder(const MedusaDecoder&) = delete;
  MedusaDecoder& operator=(const MedusaDecoder&) = delete;

 private:
  struct Seed {
    std::vector<float> logits, hidden;
  };

  int32_t vocab_;
  int32_t hidden_;
  const ts_host* host_;
  std::vector<int32_t> eos_;
  MedusaTree tree_;
  std::optional<SamplingSettings> sampling_;  // set: typical acceptance at this temperature
  double epsilon_ = 0.09;
  double delta_ = 0.3;
  std::optional<int64_t> configured_heads_, configured_layers_;
  std::vector<Head> heads_;
  bool all_shared_ = false;
  std::map<int32_t, Sampler> samplers_;
  std::map<int32_t, Seed> seeds_;  // per slot: the logits and hidden state the last step left
  int64_t accepted_ = 0, steps_ = 0;
  // Reused across steps.
  std::vector<Feed> feeds_;
  std::vector<float> x_, tmp_, head_logits_, pass_logits_, pass_hidden_;
  std::vector<int32_t> slots_, offsets_, tokens_, positions_, keep_;
  std::vector<std::vector<uint8_t>> masks_;
  std::vector<const uint8_t*> mask_ptrs_;
};

const ts_decoder_vtable kMedusaVtable = sdk::decoder_vtable<MedusaDecoder>();

const ts_provider kProviders[] = {
    sdk::provider(TS_KIND_DECODER, "medusa", TS_DEVICE_CPU, &kMedusaVtable),
};

}  // namespace
}  // namespace tessera::decoding

TESSERA_PLUGIN("tessera-decoding-medusa", "0.1.0", tessera::decoding::kProviders)
