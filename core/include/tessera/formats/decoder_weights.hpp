// The weights a decoder plugin reads (ts_decoder_config.weights), e.g. Medusa heads: the tensors
// of the safetensors files the user names, and "lm_head.weight", the model's own lm head, for
// heads that share it instead of holding a projection of their own.
//
// A folder holds *.safetensors files (read in name order; a name in two files is an Error) and
// may hold config.json: its keys that begin with "<decoder kind>_" ("medusa_num_heads") become
// decoder parameters unless the caller set them (numbers as numbers, arrays and objects as
// their JSON text). A path to one .safetensors file reads that file alone.
#pragma once

#include <tessera/abi.h>
#include <tessera/engine/params.hpp>
#include <tessera/engine/tensor.hpp>
#include <tessera/engine/weights.hpp>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace tessera {

class DecoderWeights {
 public:
  // Reads `path` (see above) for a decoder of `kind`, adding config.json's parameters to
  // `params`. lm_head: the model's lm head [vocab, hidden], or NULL. Errors name the file.
  DecoderWeights(const std::filesystem::path& path, const std::string& kind, ParamList& params,
                 const Tensor* lm_head);
  DecoderWeights(const DecoderWeights&) = delete;
  DecoderWeights& operator=(const DecoderWeights&) = delete;

  // Valid while this object lives.
  const ts_weights* c_weights() const { return &c_; }
  const WeightStore& store() const { return store_; }

 private:
  static int get(void* ctx, const char* name, ts_tensor* out, ts_error* err);

  std::filesystem::path path_;
  WeightStore store_;
  const Tensor* lm_head_ = nullptr;
  ts_weights c_{};
};

}  // namespace tessera
