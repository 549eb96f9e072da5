// Named weight tensors of a model. Readers of file formats (formats/) fill one.
#pragma once

#include <tessera/engine/tensor.hpp>

#include <cstdint>
#include <map>
#include <string>

namespace tessera {

class WeightStore {
 public:
  // Adds a tensor, or replaces the one of that name.
  void add(const std::string& name, Tensor t);
  bool has(const std::string& name) const;
  // Throws ModelError naming the tensor (and the file, when loaded from one).
  const Tensor& get(const std::string& name) const;
  const std::map<std::string, Tensor>& all() const { return tensors_; }
  std::string source;  // file the weights came from, for error messages
  // Set by open_model for the file a manifest names: the model it is built for refuses a
  // tensor no block reads. Stores assembled in code (a Puzzle library's variants side by
  // side, for swap_block) leave it false.
  bool refuse_unread = false;

  // Where one tensor came from, for messages: what its reader recorded with set_origin (a
  // GGUF tensor's own name, the shard of a sharded folder), else 'source'.
  std::string origin(const std::string& name) const;
  void set_origin(const std::string& name, std::string origin);
  const std::map<std::string, std::string>& origins() const { return origins_; }

 private:
  std::map<std::string, Tensor> tensors_;
  std::map<std::string, std::string> origins_;
};

}  // namespace tessera
