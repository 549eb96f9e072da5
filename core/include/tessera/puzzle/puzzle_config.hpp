// The Puzzle pipeline's config: one TOML file every `tessera puzzle` stage reads
// (docs/puzzle.md has every key).
//
//   [puzzle]   parent (the model to rebuild), output (the run's folder)
//   [data]     the corpus, as in training configs: calibration reads the train part, scoring
//              and evaluation the held-out part
//   [library]  the variants (FFN widths, KV heads, linear, no-op) and the calibration budget
//
// The conventions are the manifest's: errors are ManifestErrors at file:line:column, unknown
// keys are refused with a did-you-mean, paths are taken from the config's folder ("~/" from
// $HOME).
#pragma once

#include <tessera/puzzle/library.hpp>
#include <tessera/train/train_config.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace tessera::puzzle {

struct LibrarySection {
  LibraryOptions options;
  int64_t calibration_tokens = 8192;  // parent tokens the initialisers read (train part)
};

struct PuzzleConfig {
  std::filesystem::path source;
  std::filesystem::path parent;
  std::filesystem::path output;
  TrainConfig data;  // its [data] section (data, locations)
  LibrarySection library;

  std::filesystem::path library_folder() const { return output / "library"; }
};

PuzzleConfig parse_puzzle_config(std::string_view text, const std::string& source_name,
                                 const std::filesystem::path& base_dir);
PuzzleConfig load_puzzle_config(const std::filesystem::path& path);

}  // namespace tessera::puzzle
