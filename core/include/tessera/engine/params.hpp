// Named block parameters, owned, convertible to the ABI's ts_params.
#pragma once

#include <tessera/abi.h>

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace tessera {

using ParamValue = std::variant<int64_t, double, bool, std::string, std::vector<int64_t>>;

struct Param {
  std::string key;
  ParamValue value;
};

// Owns the parameters and the C array that views them. Setting a key again replaces it.
class ParamList {
 public:
  ParamList() = default;
  ParamList(const ParamList& other) : items_(other.items_) {}
  ParamList& operator=(const ParamList& other) {
    items_ = other.items_;
    dirty_ = true;
    return *this;
  }

  void set(const std::string& key, ParamValue value);
  const ParamValue* find(const std::string& key) const;
  const std::vector<Param>& items() const { return items_; }
  // Appends every item of `other`, replacing keys already present.
  void merge(const ParamList& other);

  // Valid until this list is next modified or destroyed.
  ts_params c_params() const;

 private:
  std::vector<Param> items_;
  mutable std::vector<ts_param> c_items_;
  mutable bool dirty_ = true;
};

}  // namespace tessera
