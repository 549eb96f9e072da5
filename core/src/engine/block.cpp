// Block: one plugin object behind the C vtable, with errors turned into exceptions.
#include <tessera/engine/block.hpp>
#include <tessera/engine/error.hpp>

#include <cstddef>
#include <string>
#include <utility>

namespace tessera {
namespace {

// True when a vtable of `struct_size` bytes reaches past the member at `offset`
// of `size` bytes, i.e. the plugin was built with that member present.
constexpr bool covers(uint32_t struct_size, size_t offset, size_t size) {
  return struct_size >= offset + size;
}

std::string status_message(int status, const ts_error& err) {
  std::string message(err.message);
  if (message.empty()) message = "the plugin reported no message";
  if (status == TS_UNSUPPORTED) return "unsupported: " + message;
  if (status != TS_ERROR) return "status " + std::to_string(status) + ": " + message;
  return message;
}

}  // namespace

Block::Block(ProviderRef provider, const ts_block_config& config, std::string label)
    : provider_(std::move(provider)), label_(std::move(label)) {
  if (provider_.provider == nullptr || provider_.provider->vtable == nullptr)
    throw Error(label_ + ": the provider has no block vtable");
  vt_ = static_cast<const ts_block_vtable*>(provider_.provider->vtable);
  const bool complete =
      covers(vt_->struct_size, offsetof(ts_block_vtable, forward), sizeof(vt_->forward));
  if (!complete || vt_->create == nullptr || vt_->destroy == nullptr || vt_->info == nullptr ||
      vt_->forward == nullptr)
    throw Error(label_ + ": the block vtable lacks create, destroy, info or forward (struct_size " +
                std::to_string(vt_->struct_size) + ", expected at least " +
                std::to_string(offsetof(ts_block_vtable, forward) + sizeof(vt_->forward)) + ")");

  ts_error err{};
  const int created = vt_->create(&config, &self_, &err);
  if (created != TS_OK) {
    self_ = nullptr;  // a failed create owns nothing
    throw Error(label_ + ": " + status_message(created, err));
  }
  if (self_ == nullptr) throw Error(label_ + ": create returned OK but no object");

  err = ts_error{};
  info_.struct_size = sizeof(ts_block_info);
  const int got_info = vt_->info(self_, &info_, &err);
  if (got_info != TS_OK) {
    vt_->destroy(self_);
    self_ = nullptr;
    throw Error(label_ + ": info: " + status_message(got_info, err));
  }
  if (info_.kv_heads < 0 || (info_.kv_heads > 0 && info_.head_dim <= 0)) {
    vt_->destroy(self_);
    self_ = nullptr;
    throw Error(label_ + ": info reports kv_heads " + std::to_string(info_.kv_heads) +
                " and head_dim " + std::to_string(info_.head_dim) +
                "; expected kv_heads >= 0 and head_dim > 0 when kv_heads > 0");
  }
}

// The destructor body runs before provider_ is destroyed, so the plugin's code
// is still loaded when destroy is called.
Block::~Block() {
  if (self_ != nullptr) vt_->destroy(self_);
}

bool Block::has_compact_kv() const {
  return covers(vt_->struct_size, offsetof(ts_block_vtable, compact_kv), sizeof(vt_->compact_kv)) &&
         vt_->compact_kv != nullptr;
}

void Block::forward(const ts_block_io& io) {
  ts_error err{};
  const int status = vt_->forward(self_, &io, &err);
  if (status != TS_OK) throw Error(label_ + ": " + status_message(status, err));
}

void Block::compact_kv(ts_kv_layer& kv, int32_t slot, int32_t first_row, const int32_t* keep,
                       int32_t n_keep) {
  if (!has_compact_kv()) throw Error(label_ + ": the plugin has no compact_kv");
  ts_error err{};
  const int status = vt_->compact_kv(self_, &kv, slot, first_row, keep, n_keep, &err);
  if (status != TS_OK) throw Error(label_ + ": compact_kv: " + status_message(status, err));
}

}  // namespace tessera
