#include <unistd.h>
#include <tessera/engine/error.hpp>
#include <tessera/tools/staging_folder.hpp>

#include <atomic>
#include <string>

namespace fs = std::filesystem;

namespace tessera {
namespace {

// A sibling name that no other writer in this or another process uses.
fs::path unique_sibling(const fs::path& target, const std::string& tag) {
  static std::atomic<unsigned> counter{0};
  const fs::path parent = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  for (;;) {
    fs::path candidate =
        parent / (target.filename().string() + "." + tag + "-" + std::to_string(::getpid()) + "-" +
                  std::to_string(counter.fetch_add(1)));
    std::error_code ec;
    if (!fs::exists(candidate, ec)) return candidate;
  }
}

}  // namespace

StagingFolder::StagingFolder(fs::path target, bool overwrite)
    : target_(std::move(target)), overwrite_(overwrite) {
  // "out/" names the folder "out": drop the empty last component.
  if (!target_.has_filename()) target_ = target_.parent_path();
  if (target_.empty()) throw ModelError("no output folder given");
  std::error_code ec;
  if (fs::exists(target_, ec)) {
    if (!fs::is_directory(target_, ec)) {
      throw ModelError("output '" + target_.string() + "' exists and is not a folder");
    }
    if (!fs::is_empty(target_, ec) && !overwrite_) {
      throw ModelError("output folder '" + target_.string() +
                       "' exists and is not empty; choose another or allow overwriting (--force)");
    }
  }
  const fs::path parent = target_.parent_path();
  if (!parent.empty()) {
    fs::create_directories(parent, ec);
    if (ec) {
      throw ModelError("cannot create folder '" + parent.string() + "': " + ec.message());
    }
  }
  staging_ = unique_sibling(target_, "partial");
  if (!fs::create_directory(staging_, ec) || ec) {
    throw ModelError("cannot create folder '" + staging_.string() + "': " + ec.message());
  }
}

StagingFolder::~StagingFolder() {
  if (committed_) return;
  std::error_code ec;
  fs::remove_all(staging_, ec);  // best effort: a destructor must not throw
}

void StagingFolder::commit() {
  if (committed_) return;
  std::error_code ec;
  fs::path old;
  if (fs::exists(target_, ec)) {
    old = unique_sibling(target_, "old");
    fs::rename(target_, old, ec);
    if (ec) {
      throw ModelError("cannot move the existing '" + target_.string() +
                       "' aside: " + ec.message());
    }
  }
  fs::rename(staging_, target_, ec);
  if (ec) {
    const std::string why = ec.message();
    if (!old.empty()) fs::rename(old, target_, ec);
    throw ModelError("cannot move '" + staging_.string() + "' to '" + target_.string() +
                     "': " + why);
  }
  committed_ = true;
  if (!old.empty()) fs::remove_all(old, ec);
}

}  // namespace tessera
