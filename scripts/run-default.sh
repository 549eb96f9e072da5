#!/usr/bin/env bash
# The main job: ask the default model, SmolLM2-135M-Instruct (Q4_1 GGUF, fetched once into
# ~/.cache/tessera by scripts/fetch-default-model.sh), "What is the capital of France?".
# Installs the build dependencies when missing, builds the release preset's tessera command
# and plugins (incrementally: nothing to do when they are up to date), then streams the answer.
#
# Usage: scripts/run-default.sh [extra `tessera generate` options, e.g. --prompt "..." -n 64]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

build_dir=build/release
prompt="What is the capital of France?"

scripts/install-deps.sh
model=$(scripts/fetch-default-model.sh)

echo "==> building tessera and its plugins (preset release, $build_dir)"
cmake --preset release >/dev/null
cmake --build "$build_dir" -j "${TESSERA_JOBS:-2}" --target tessera_runtime
if [[ ! -x "$build_dir/bin/tessera" ]]; then
  echo "run-default: $build_dir/bin/tessera was not built (apps/tessera has no sources?)" >&2
  exit 1
fi

echo "==> tessera generate $model --prompt \"$prompt\""
"$build_dir/bin/tessera" generate "$model" --prompt "$prompt" -n 64 "$@"
