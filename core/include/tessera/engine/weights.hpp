// Named weight tensors of a model. Readers of file formats (formats/) fill one.
#pragma once

#include <tessera/engine/tensor.hpp>

#include <cstdint>
#include <map>
#include <string>

namespace tessera {

class WeightStore {
 public:
  void add(const std::string& name, Tensor t);
  bool has(const std::string& name) const;
  // Throws ModelError naming the tensor (and the file, when loaded from one).
  const Tensor& get(const std::string& name) const;
  const std::map<std::string, Tensor>& all() const { return tensors_; }
  std::string source;  // file the weights came from, for error messages

 private:
  std::map<std::string, Tensor> tensors_;
};

}  // namespace tessera
