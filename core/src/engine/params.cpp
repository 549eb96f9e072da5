#include <tessera/engine/params.hpp>
#include <type_traits>

namespace tessera {

void ParamList::set(const std::string& key, ParamValue value) {
  dirty_ = true;
  for (Param& item : items_) {
    if (item.key == key) {
      item.value = std::move(value);
      return;
    }
  }
  items_.push_back(Param{key, std::move(value)});
}

const ParamValue* ParamList::find(const std::string& key) const {
  for (const Param& item : items_) {
    if (item.key == key) return &item.value;
  }
  return nullptr;
}

void ParamList::merge(const ParamList& other) {
  if (&other == this) return;
  for (const Param& item : other.items_) set(item.key, item.value);
}

ts_params ParamList::c_params() const {
  if (dirty_ || c_items_.size() != items_.size()) {
    c_items_.clear();
    c_items_.reserve(items_.size());
    for (const Param& item : items_) {
      ts_param p{};
      p.key = item.key.c_str();
      std::visit(
          [&p](const auto& v) {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, int64_t>) {
              p.type = TS_PARAM_INT;
              p.i = v;
              p.f = static_cast<double>(v);
            } else if constexpr (std::is_same_v<T, double>) {
              p.type = TS_PARAM_FLOAT;
              p.f = v;
            } else if constexpr (std::is_same_v<T, bool>) {
              p.type = TS_PARAM_BOOL;
              p.i = v ? 1 : 0;
            } else if constexpr (std::is_same_v<T, std::string>) {
              p.type = TS_PARAM_STRING;
              p.s = v.c_str();
            } else {
              p.type = TS_PARAM_INT_LIST;
              p.count = static_cast<int32_t>(v.size());
              p.ints = v.data();
            }
          },
          item.value);
      c_items_.push_back(p);
    }
    dirty_ = false;
  }
  return ts_params{c_items_.data(), static_cast<int32_t>(c_items_.size())};
}

}  // namespace tessera
