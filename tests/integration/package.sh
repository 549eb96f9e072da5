#!/usr/bin/env bash
# Installs a built tree to a fresh prefix and checks what an out-of-tree plugin
# author gets: the SDK headers, the CMake package, the tessera command and the
# plugins; then builds examples/plugin-template against that prefix alone, runs
# its tests, and checks the installed tessera command finds the new plugin.
#
# Usage: package.sh <build dir> <scratch dir>
set -euo pipefail
if [[ $# -ne 2 ]]; then
  echo "usage: $0 <build dir> <scratch dir>" >&2
  exit 2
fi
build_dir=$(cd "$1" && pwd)
work=$2
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
prefix="$work/prefix"
template_build="$work/plugin-template"
# Only the prefix may supply plugins to the installed command.
unset TESSERA_PLUGIN_PATH

fail() {
  echo "package: FAILED: $*" >&2
  exit 1
}

rm -rf "$prefix" "$template_build"
mkdir -p "$work"

echo "package: installing $build_dir to $prefix"
cmake --install "$build_dir" --prefix "$prefix" >"$work/install.log" ||
  { cat "$work/install.log" >&2; fail "cmake --install exited non-zero"; }

for f in include/tessera/abi.h include/tessera/plugin.hpp include/tessera/dtype.hpp \
  lib/cmake/Tessera/TesseraConfig.cmake lib/cmake/Tessera/TesseraConfigVersion.cmake \
  lib/cmake/Tessera/TesseraTargets.cmake lib/cmake/Tessera/TesseraPlugin.cmake; do
  [[ -f "$prefix/$f" ]] || fail "$f is not installed in $prefix"
done
# The core's rooms (tessera_engine, tessera_formats, ...) are internal static libraries;
# test fixture plugins must never ship.
if find "$prefix" -name 'libtessera_*.a' | grep -q .; then
  fail "$(find "$prefix" -name 'libtessera_*.a' | head -1) was installed; the core's libraries are internal"
fi
if [[ -d "$build_dir/lib/tessera/test-plugins" ]]; then
  for fixture in "$build_dir"/lib/tessera/test-plugins/libtessera-*.so; do
    [[ -e "$fixture" ]] || continue
    name=$(basename "$fixture")
    [[ ! -e "$prefix/lib/tessera/plugins/$name" ]] || fail "test fixture $name was installed"
  done
fi
# Every real plugin of the build is installed.
for plugin in "$build_dir"/lib/tessera/plugins/libtessera-*.so; do
  [[ -e "$plugin" ]] || continue
  name=$(basename "$plugin")
  [[ -f "$prefix/lib/tessera/plugins/$name" ]] || fail "plugin $name was built but not installed"
done

# The SDK needs nothing beyond the C++ standard library: no Boost anywhere in it.
if grep -rlE '#include <boost/' "$prefix/include" | grep -q .; then
  fail "an installed SDK header includes Boost: $(grep -rlE '#include <boost/' "$prefix/include" | head -1)"
fi

echo "package: building examples/plugin-template against $prefix (Boost hidden from CMake)"
cmake -S "$repo/examples/plugin-template" -B "$template_build" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_DISABLE_FIND_PACKAGE_Boost=ON \
  -DCMAKE_COMPILE_WARNING_AS_ERROR=ON >"$work/template-configure.log" ||
  { cat "$work/template-configure.log" >&2; fail "configuring the template"; }
cmake --build "$template_build" ||
  fail "building the template"
ctest --test-dir "$template_build" --output-on-failure --no-tests=error ||
  fail "the template's own tests"
library="$template_build/libtessera-template-scaled-identity.so"
[[ -f "$library" ]] || fail "the template did not produce $library"

tessera="$prefix/bin/tessera"
if [[ ! -x "$tessera" ]]; then
  echo "package: SKIPPED the tessera check: $tessera is not installed" \
    "(the tessera command is not built in this tree yet)"
  exit 0
fi
echo "package: $tessera plugins --plugin-path $template_build"
"$tessera" plugins --plugin-path "$template_build" >"$work/plugins.txt" 2>&1 ||
  { cat "$work/plugins.txt" >&2; fail "tessera plugins exited non-zero"; }
cat "$work/plugins.txt"
grep -Eq "^template-scaled-identity 0\.1\.0 " "$work/plugins.txt" ||
  fail "tessera plugins does not list the plugin template-scaled-identity 0.1.0"
grep -qF "$library" "$work/plugins.txt" ||
  fail "tessera plugins does not show the template's path $library"
grep -q "ffn scaled-identity" "$work/plugins.txt" ||
  fail "tessera plugins does not list the provider 'ffn scaled-identity'"
# The installed command finds the installed plugins on its own.
for plugin in "$prefix"/lib/tessera/plugins/libtessera-*.so; do
  [[ -e "$plugin" ]] || continue
  grep -qF "$plugin" "$work/plugins.txt" ||
    fail "the installed tessera does not find the installed plugin $plugin"
done

# A model whose layer 1 FFN is the template's block: resolved, assembled and run.
manifest="$repo/examples/plugin-template/manifest.toml"
echo "package: $tessera validate $manifest --plugin-path $template_build"
"$tessera" validate "$manifest" --plugin-path "$template_build" >"$work/validate.txt" 2>&1 ||
  { cat "$work/validate.txt" >&2; fail "tessera validate of the template manifest"; }
cat "$work/validate.txt"
grep -q "scaled-identity (template-scaled-identity)" "$work/validate.txt" ||
  fail "validate did not assign layer 1's FFN to template-scaled-identity"
for run in 1 2; do
  "$tessera" generate "$manifest" --plugin-path "$template_build" --tokens 1,2,3 -n 8 -q \
    >"$work/generate-$run.txt" 2>&1 ||
    { cat "$work/generate-$run.txt" >&2; fail "tessera generate with the template manifest"; }
done
cat "$work/generate-1.txt"
[[ $(wc -w <"$work/generate-1.txt") -eq 8 ]] || fail "generate did not print 8 tokens"
cmp -s "$work/generate-1.txt" "$work/generate-2.txt" ||
  fail "two greedy runs of the same random-weight model differ"
echo "package: ok"
