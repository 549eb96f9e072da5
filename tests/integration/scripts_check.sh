#!/usr/bin/env bash
# Checks the project's scripts: they parse, they are executable, .ci/run runs
# exactly the README's test command, and the CMake presets the README and the
# scripts name exist.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
fail() {
  echo "scripts_check: FAILED: $*" >&2
  exit 1
}

scripts=(scripts/*.sh .ci/run tests/integration/*.sh)
for script in "${scripts[@]}"; do
  bash -n "$script" || fail "$script does not parse"
  [[ "$script" == tests/* || -x "$script" ]] || fail "$script is not executable"
done

# The README opens with two commands in a fenced block: the main job, then the tests.
readme_commands=$(awk '/^```/ { if (inside) exit; inside = 1; next } inside' README.md)
[[ $(printf '%s\n' "$readme_commands" | grep -c .) -eq 2 ]] ||
  fail "README.md's first code block should hold exactly two commands, has: $readme_commands"
test_command=$(printf '%s\n' "$readme_commands" | sed -n 2p)
ci_command=$(grep -v '^#' .ci/run | grep -v '^set \|^cd \|^$')
[[ "$ci_command" == "$test_command" ]] ||
  fail ".ci/run runs '$ci_command' but the README's test command is '$test_command'"

presets=$(cmake --list-presets 2>/dev/null)
for preset in dev release ci asan; do
  grep -q "\"$preset\"" <<<"$presets" || fail "configure preset '$preset' is missing"
done
echo "scripts_check: ok"
