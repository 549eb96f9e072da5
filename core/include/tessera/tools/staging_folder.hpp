// Writing a model folder so that a failure never leaves a half-written model that looks valid:
// everything goes into a fresh sibling folder first, which replaces the target only on commit().
#pragma once

#include <filesystem>

namespace tessera {

class StagingFolder {
 public:
  // Checks the target first: an existing file, or a non-empty folder without `overwrite`, is a
  // ModelError naming it. Then creates "<target>.partial-<pid>-<n>" next to it.
  StagingFolder(std::filesystem::path target, bool overwrite);
  StagingFolder(const StagingFolder&) = delete;
  StagingFolder& operator=(const StagingFolder&) = delete;
  // Removes the staging folder unless committed.
  ~StagingFolder();

  const std::filesystem::path& path() const { return staging_; }
  const std::filesystem::path& target() const { return target_; }

  // Renames the staging folder to the target. An existing target is first renamed aside and
  // removed only once the new folder is in place (and put back if that rename fails).
  void commit();

 private:
  std::filesystem::path target_;
  std::filesystem::path staging_;
  bool overwrite_ = false;
  bool committed_ = false;
};

}  // namespace tessera
