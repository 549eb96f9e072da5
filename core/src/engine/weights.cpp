#include <tessera/engine/error.hpp>
#include <tessera/engine/weights.hpp>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

namespace tessera {
namespace {

// Levenshtein distance, to suggest names close to a misspelt one.
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t substitute = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, substitute});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace

// ---------------------------------------------------------------- WeightStore

void WeightStore::add(const std::string& name, Tensor t) {
  if (name.empty()) throw ModelError("WeightStore::add: a weight needs a non-empty name");
  tensors_.insert_or_assign(name, std::move(t));
}

std::string WeightStore::origin(const std::string& name) const {
  const auto it = origins_.find(name);
  if (it != origins_.end()) return it->second;
  return source.empty() ? std::string("the weight store") : "'" + source + "'";
}

void WeightStore::set_origin(const std::string& name, std::string origin) {
  origins_.insert_or_assign(name, std::move(origin));
}

bool WeightStore::has(const std::string& name) const {
  return tensors_.count(name) != 0;
}

const Tensor& WeightStore::get(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it != tensors_.end()) return it->second;

  std::vector<std::pair<size_t, const std::string*>> ranked;
  ranked.reserve(tensors_.size());
  for (const auto& [candidate, tensor] : tensors_) {
    ranked.emplace_back(edit_distance(name, candidate), &candidate);
  }
  const size_t n_suggest = std::min<size_t>(5, ranked.size());
  std::partial_sort(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(n_suggest),
                    ranked.end(), [](const auto& a, const auto& b) {
                      return a.first != b.first ? a.first < b.first : *a.second < *b.second;
                    });
  std::string message = "weight '" + name + "' not found in " +
                        (source.empty() ? std::string("the weight store") : "'" + source + "'") +
                        " (" + std::to_string(tensors_.size()) + " tensors)";
  if (n_suggest > 0) {
    message += "; similar names: ";
    for (size_t i = 0; i < n_suggest; ++i) message += (i ? ", " : "") + *ranked[i].second;
  }
  throw ModelError(message);
}

}  // namespace tessera
