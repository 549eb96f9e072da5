#!/usr/bin/env bash
# The main job, for now: build the release preset's tessera command and plugins,
# then generate tokens with examples/manifests/tiny-hetero.toml, a small
# heterogeneous model (different attention and FFN blocks per layer) with random
# weights. The tokens it prints are meaningless: it shows the engine assembling
# and running a model from plugins, nothing more. A real default model replaces
# this in a later issue.
#
# Usage: scripts/run-default.sh [extra `tessera generate` options, e.g. -n 64 --seed 3]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

manifest=examples/manifests/tiny-hetero.toml
build_dir=build/release

scripts/install-deps.sh
if [[ ! -f "$manifest" ]]; then
  echo "run-default: $manifest is missing; this checkout has no default model yet" >&2
  exit 1
fi

echo "==> building tessera and its plugins (preset release, $build_dir)"
cmake --preset release >/dev/null
cmake --build "$build_dir" -j "${TESSERA_JOBS:-2}" --target tessera_runtime
if [[ ! -x "$build_dir/bin/tessera" ]]; then
  echo "run-default: $build_dir/bin/tessera was not built (apps/tessera has no sources?)" >&2
  exit 1
fi

echo "==> tessera generate $manifest (random weights: the output tokens carry no meaning)"
"$build_dir/bin/tessera" generate "$manifest" --tokens 1,2,3,4 -n 32 "$@"
