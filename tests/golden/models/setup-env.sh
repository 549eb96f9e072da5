#!/usr/bin/env bash
# Creates (or reuses) the Python environment the model golden scripts in this folder run in:
# a venv outside the repo with pinned torch, transformers, gguf, numpy and safetensors.
# Tooling only: CI never runs it, it compares against the committed golden files.
#
#   tests/golden/models/setup-env.sh          prints the venv's python on the last line
#   $(tests/golden/models/setup-env.sh | tail -1) tests/golden/models/make_smollm2_golden.py
#
# Idempotent: a venv whose stamp matches the pinned list is reused as it is.
#
# PyPI is the only registry these machines reach, and its Linux torch wheel is the one built
# with CUDA: pip also pulls the NVIDIA runtime wheels it links against (measured: torch 2.15.0
# is a 540 MB wheel, the whole venv about 5.3 GB, about 4 minutes to install). The scripts only
# use the CPU. The CPU-only builds are not on PyPI.
#
# Environment: TESSERA_CACHE (default ~/.cache/tessera); the venv is $TESSERA_CACHE/golden-venv.
set -euo pipefail

cache=${TESSERA_CACHE:-$HOME/.cache/tessera}
venv=$cache/golden-venv
# accelerate: transformers refuses to load a GGUF file without it.
pins=(
  torch==2.15.0
  transformers==5.23.0
  tokenizers==0.23.3
  accelerate==1.15.0
  gguf==0.19.0
  numpy==2.4.6
  safetensors==0.8.0
)
stamp=$venv/tessera-golden-pins.txt
wanted=$(printf '%s\n' "${pins[@]}")

if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
  echo "setup-env: $venv is up to date" >&2
  echo "$venv/bin/python"
  exit 0
fi

command -v python3 >/dev/null || {
  echo "setup-env: python3 is needed (apt-get install python3 python3-venv)" >&2
  exit 1
}
mkdir -p "$cache"
[[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
echo "setup-env: installing ${pins[*]} into $venv" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}" >&2
"$venv/bin/python" - <<'PY' >&2
from importlib.metadata import version
import torch, transformers, gguf, numpy, safetensors  # noqa: F401  (they must import)
print("setup-env: " + ", ".join(f"{p} {version(p)}" for p in
                                 ("torch", "transformers", "gguf", "numpy", "safetensors")))
PY
echo "$wanted" >"$stamp"
echo "$venv/bin/python"
