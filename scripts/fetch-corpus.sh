#!/usr/bin/env bash
# Fetches the training and evaluation text and caches it outside the repo. Prints the folder
# of text files, which is what [data] path in a training config names.
#
# The default corpus is the reStructuredText sources of the Python 3.11 documentation
# (Debian package python3.11-doc: 497 .rst.txt files, 11 MB of English technical prose,
# 2.86M tokens with the SmolLM2 tokenizer, PSF licence). linux-doc-6.1 (the kernel's
# documentation, 3,183 files, GPL-2) is the larger alternative. Nothing is installed: the package is downloaded with
# `apt-get download`, its sha256 checked against apt's index, and unpacked with `dpkg-deb -x`.
#
# Idempotent: once extracted, the text files' sha256 sums are recorded beside them
# (SHA256SUMS) and checked on every run; a folder that no longer matches is fetched again.
#
# Usage: scripts/fetch-corpus.sh [--force] [python3.11-doc | linux-doc-6.1]
# Environment: TESSERA_CACHE (default ~/.cache/tessera); the corpus goes to
#   $TESSERA_CACHE/corpora/<package>/text
set -euo pipefail

die() {
  echo "fetch-corpus: $*" >&2
  exit 1
}

force=0
package=python3.11-doc
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    -*) die "unknown option '$arg' (expected --force)" ;;
    *) package=$arg ;;
  esac
done

# Where each known package keeps its text, and which files are the text.
case "$package" in
  python3.11-doc) inside=usr/share/doc/python3.11/html/_sources ;;
  linux-doc-6.1) inside=usr/share/doc/linux-doc-6.1/html/_sources ;;
  *) die "unknown corpus package '$package'; expected python3.11-doc or linux-doc-6.1" ;;
esac
pattern='*.rst.txt'

cache=${TESSERA_CACHE:-$HOME/.cache/tessera}/corpora/$package
text=$cache/text
sums=$cache/SHA256SUMS

# The recorded sums cover every text file, and every text file is recorded.
cached_ok() {
  [[ -d "$text" && -s "$sums" ]] || return 1
  (cd "$text" && sha256sum --check --status --strict "$sums") || return 1
  [[ $(find "$text" -type f | wc -l) -eq $(wc -l <"$sums") ]]
}

if [[ $force -eq 0 ]] && cached_ok; then
  echo "$text"
  exit 0
fi

for tool in apt-get apt-cache dpkg-deb sha256sum; do
  command -v "$tool" >/dev/null || die "$tool is needed (a Debian or Ubuntu machine)"
done

# apt must know the package; on a fresh machine its lists may be empty until apt-get update.
if ! apt-cache show --no-all-versions "$package" >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]]; then
    echo "fetch-corpus: apt does not know $package; running apt-get update" >&2
    apt-get update -qq >&2 || true
  fi
  apt-cache show --no-all-versions "$package" >/dev/null 2>&1 ||
    die "apt cannot find the package $package (run apt-get update as root; the Debian 12 \
main archive must be in /etc/apt/sources.list*)"
fi

mkdir -p "$cache"
work=$(mktemp -d "$cache/.fetch-XXXXXX")
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"  # apt-get download runs as _apt where it can

echo "fetch-corpus: downloading $package with apt-get download" >&2
if ! (cd "$work" && apt-get download -q "$package" >"$work/apt.log" 2>&1); then
  cat "$work/apt.log" >&2
  die "apt-get download $package failed (no network, or no route to the Debian mirror in \
/etc/apt/sources.list*?)"
fi
deb=$(find "$work" -maxdepth 1 -name '*.deb' | head -n 1)
[[ -n "$deb" ]] || die "apt-get download $package left no .deb file"

# The .deb must be the one apt's signed index describes.
version=$(dpkg-deb -f "$deb" Version)
deb_sha=$(sha256sum "$deb" | cut -d' ' -f1)
index_sha=$(apt-cache show "$package=$version" 2>/dev/null | awk '/^SHA256:/ { print $2; exit }')
[[ -n "$index_sha" ]] || die "apt's index has no SHA256 for $package $version"
[[ "$deb_sha" == "$index_sha" ]] ||
  die "sha256 of $(basename "$deb") is $deb_sha, but apt's index says $index_sha"

dpkg-deb -x "$deb" "$work/root"
[[ -d "$work/root/$inside" ]] || die "$package $version has no /$inside"
mkdir -p "$work/text"
(cd "$work/root/$inside" && find . -type f -name "$pattern" -print0 |
  xargs -0 -r cp --parents -t "$work/text")
count=$(find "$work/text" -type f | wc -l)
[[ $count -gt 0 ]] || die "$package $version has no $pattern files under /$inside"
(cd "$work/text" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) >"$work/SHA256SUMS"
{
  echo "package=$package"
  echo "version=$version"
  echo "deb_sha256=$deb_sha"
  echo "files=$count"
  echo "bytes=$(find "$work/text" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')"
} >"$work/SOURCE"

# Replace the cached copy only once the new one is complete.
rm -rf "$text" "$sums" "$cache/SOURCE"
mv "$work/text" "$text"
mv "$work/SHA256SUMS" "$sums"
mv "$work/SOURCE" "$cache/SOURCE"
echo "fetch-corpus: $count files of $package $version in $text" >&2
echo "$text"
