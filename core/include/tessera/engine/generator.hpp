// Generation: prefill, then decoder steps (a decoder plugin) until an end token or
// the token budget, streaming each token out. Several sequences run at once, each in
// its own slot of the model's KV cache (a slot is cache storage; a sequence is one
// stream of tokens that occupies a slot while it runs).
#pragma once

#include <tessera/engine/model.hpp>

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

namespace tessera {

struct GenerateOptions {
  int32_t max_new_tokens = 64;
  BlockSpec decoder;  // kind "greedy" / "sampling" / "medusa"; params temperature, top_k, ...
  // The decoder's own weights (Medusa heads: formats/decoder_weights.hpp); NULL: none.
  // Must outlive the generate call.
  const ts_weights* decoder_weights = nullptr;
  // Every pass row-invariant (ForwardBatch::row_invariant): a token's logits do not depend
  // on what else the pass holds, so Medusa's output equals greedy's by construction and a
  // batch equals each sequence alone. Slower; every block of the model must honour it.
  bool row_invariant = false;
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated, without the prompt
  bool stopped_on_eos = false;
  double prefill_seconds = 0;
  double decode_seconds = 0;
  int32_t decode_steps = 0;  // decoder steps that emitted this sequence's tokens
};

// One sequence of generate_batch: the slot it runs in, how many of the tokens that slot's
// cache holds it keeps (0: start over), and the tokens to feed after them.
struct SequenceRequest {
  int32_t slot = 0;
  int32_t keep = 0;
  std::vector<int32_t> tokens;
};

class Generator {
 public:
  Generator(Model& model, const PluginRegistry& registry);

  // One sequence in slot 0 (reset first). on_token is called for every new token as it comes.
  GenerateResult generate(const std::vector<int32_t>& prompt, const GenerateOptions& options,
                          const std::function<void(int32_t)>& on_token = {});

  // Continues slot 0 instead of starting over: keeps the first `keep` tokens its KV cache holds
  // (drops the rest), feeds `tokens` after them, then decodes as generate() does. A chat
  // prefills only the new part of its conversation this way. The last generated token is not
  // in the cache afterwards (it was never fed): the caller feeds it with the next turn.
  GenerateResult generate_after(int32_t keep, const std::vector<int32_t>& tokens,
                                const GenerateOptions& options,
                                const std::function<void(int32_t)>& on_token = {});

  // Several sequences at once, in distinct slots: one batched prefill, then every decoder
  // step over all the sequences still running. Each gets what it would get alone in its
  // slot (greedy exactly; sampling draws from one stream per slot). on_token(i, token) for
  // sequence i. The options (budget, decoder) are shared.
  std::vector<GenerateResult> generate_batch(
      const std::vector<SequenceRequest>& sequences, const GenerateOptions& options,
      const std::function<void(size_t, int32_t)>& on_token = {});

 private:
  Model& model_;
  const PluginRegistry& registry_;
};

}  // namespace tessera
