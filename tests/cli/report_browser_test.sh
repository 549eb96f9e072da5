#!/usr/bin/env bash
# The Puzzle report in a real browser: `tessera puzzle run` on the tiny GGUF model writes every
# artefact and report.html; headless Chromium loads the page, and the DOM it built must hold a
# point per feasible solution and per measured child, exactly two blocks per layer naming the
# main solution's variants, and the tables; its screenshot must not be blank and must show the
# plots' colours. A report of a run that has done nothing must name the stage to run in each
# section.
#
# Chromium comes from scripts/install-deps.sh (CI installs it). Without it the test fails,
# unless TESSERA_SKIP_BROWSER=1, when it is skipped (exit code 77).
set -uo pipefail
: "${TESSERA:?}" "${SOURCE_DIR:?}"
fail() { echo "FAILED: $*" >&2; exit 1; }

browser=""
for candidate in chromium chromium-browser google-chrome; do
  if command -v "$candidate" >/dev/null 2>&1; then browser=$(command -v "$candidate"); break; fi
done
if [ -z "$browser" ]; then
  if [ "${TESSERA_SKIP_BROWSER:-0}" = 1 ]; then
    echo "SKIP: no chromium (TESSERA_SKIP_BROWSER=1)"
    exit 77
  fi
  fail "chromium is not installed: run scripts/install-deps.sh (it installs Debian's chromium), or set TESSERA_SKIP_BROWSER=1 to skip this test"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Headless, as root (no sandbox), in a profile of its own, never for more than a minute.
run_browser() {
  timeout 60 "$browser" --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage \
    --no-first-run --no-default-browser-check --disable-extensions --hide-scrollbars \
    --user-data-dir="$work/profile" "$@"
}

# A run of every stage on the tiny model (seconds), as cli_test.sh's puzzle_library case.
export TESSERA_CACHE="$work/cache"
cp "$SOURCE_DIR/tests/data/gguf/tiny_llama.gguf-fixture" "$work/llama.gguf"
mkdir -p "$work/corpus"
for i in $(seq 1 12); do
  for j in $(seq 1 12); do
    echo "Document $i, line $j: the quick brown fox jumps over the lazy dog $((i * j)) times."
  done >"$work/corpus/doc$i.txt"
done
cat >"$work/puzzle.toml" <<TOML
[puzzle]
parent = "llama.gguf"
output = "p"

[data]
path = "corpus"
seq_len = 64
batch_size = 4
held_out_documents = 2

[library]
ffn_fractions = [1, 0.5, 0.25]
ffn_width_multiple = 8
calibration_tokens = 1024

[score]
tokens = 512

[cost]
prefill_len = 32
decode_len = 32
batch_sizes = [1, 2]
repeats = 3

[solve]
provider = "exact"
compare = ["greedy"]
decode_speedup = 1.0
frontier = [1.5, 2]
solutions = 2

[evaluate]
tokens = 512
repeats = 2
TOML
# Nothing run yet: every section says what to run.
sed 's/^output = "p"/output = "fresh"/' "$work/puzzle.toml" >"$work/fresh.toml"
"$TESSERA" puzzle report "$work/fresh.toml" >"$work/fresh.out" 2>&1 || { cat "$work/fresh.out"; fail "puzzle report before any stage"; }
grep -qF "report     $work/fresh/report.html" "$work/fresh.out" || { cat "$work/fresh.out"; fail "the report's path is not printed"; }
"$TESSERA" puzzle run "$work/puzzle.toml" >"$work/run.out" 2>&1 || { cat "$work/run.out"; fail "puzzle run"; }
grep -q "^<== report: " "$work/run.out" || { cat "$work/run.out"; fail "puzzle run did not write the report"; }
[ -s "$work/p/report.html" ] || fail "no report.html"

# What the page must show, from the artefacts themselves; and the page is well-formed XML.
python3 - "$work/p" >"$work/expected" <<'PY' || fail "report.html is not well-formed XML, or the artefacts are unreadable"
import json, sys, xml.etree.ElementTree as ET
out = sys.argv[1]
ET.parse(out + "/report.html")
solutions = json.load(open(out + "/solutions.json"))
main = next(s for s in solutions["solutions"] if s["label"] == solutions["main"])
evaluation = json.load(open(out + "/evaluation.json"))
children = evaluation.get("children") or [{"label": evaluation["solution"], "speed": evaluation["speed"]}]
library = json.load(open(out + "/library/library.json"))
feasible = sorted(s["label"] for s in solutions["solutions"] if s["feasible"])
measured = sorted(c["label"] for c in children
                  if any(s["batch"] == main["batch_size"] for s in c["speed"]))
print(json.dumps({
    "solutions": feasible,
    "speedups": {s["label"]: s["predicted"]["decode_speedup"] for s in solutions["solutions"] if s["feasible"]},
    "measured": measured,
    "records": len(solutions["solutions"]),
    "layers": len(library["layers"]),
    "choice": [[l["attention"], l["ffn"]] for l in main["layers"]],
}))
PY

# The DOM Chromium built from the page.
run_browser --dump-dom "file://$work/p/report.html" >"$work/dom.html" 2>"$work/browser.err" ||
  { cat "$work/browser.err"; fail "chromium --dump-dom failed"; }
[ -s "$work/dom.html" ] || { cat "$work/browser.err"; fail "chromium dumped an empty DOM"; }
python3 - "$work/dom.html" "$work/expected" <<'PY' || fail "the DOM does not hold the report"
import json, sys
from html.parser import HTMLParser
expected = json.load(open(sys.argv[2]))

class Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.elements = []
    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
    handle_startendtag = handle_starttag

dom = Elements()
dom.feed(open(sys.argv[1], encoding="utf-8").read())
def having(cls):
    return [a for _, a in dom.elements if cls in (a.get("class") or "").split()]
def check(ok, what):
    if not ok:
        print("FAILED:", what, file=sys.stderr)
        sys.exit(1)

solutions = having("solution")
check(sorted(a["data-label"] for a in solutions) == expected["solutions"],
      f"solution points {sorted(a['data-label'] for a in solutions)}, expected {expected['solutions']}")
for a in solutions:
    want = expected["speedups"][a["data-label"]]
    check(abs(float(a["data-speedup"]) - want) <= 1e-5 * max(1.0, abs(want)),
          f"{a['data-label']} drawn at speedup {a['data-speedup']}, predicted {want}")
    float(a["data-kl"])
measured = having("measured")
check(sorted(a["data-label"] for a in measured) == expected["measured"],
      f"measured points {[a['data-label'] for a in measured]}, expected {expected['measured']}")
check(len(having("parent")) == 1, "one parent point")
check(len(having("frontier-line")) == 1, "the frontier's line")
blocks = having("block")
check(len(blocks) == 2 * expected["layers"], f"{len(blocks)} blocks for {expected['layers']} layers")
for layer, (attention, ffn) in enumerate(expected["choice"]):
    for part, variant in (("attention", attention), ("ffn", ffn)):
        found = [b for b in blocks if b["data-layer"] == str(layer) and b["data-part"] == part]
        check(len(found) == 1 and found[0]["data-variant"] == variant,
              f"layer {layer} {part}: {found}, expected {variant}")
        check(found[0]["data-kind"] in ("parent", "pruned", "linear", "noop"), f"kind {found[0]}")
tables = [a.get("class") for t, a in dom.elements if t == "table"]
for table in ("stages", "solutions", "quality", "speed", "scores", "costs", "library", "layers"):
    check(table in tables, f"no {table} table among {tables}")
check(not having("missing") and not having("unreadable"), "a section is missing or unreadable")
rows = 0
in_solutions = False
for tag, attrs in dom.elements:
    if tag == "table":
        in_solutions = attrs.get("class") == "solutions"
    elif tag == "tr" and in_solutions:
        rows += 1
check(rows == expected["records"] + 1, f"the solutions table has {rows - 1} rows, expected {expected['records']}")
print(f"DOM: {len(solutions)} solutions, {len(measured)} measured, {len(blocks)} blocks, tables {tables}")
PY

# The run that has done nothing: each section names its stage's command.
run_browser --dump-dom "file://$work/fresh/report.html" >"$work/fresh-dom.html" 2>"$work/browser.err" ||
  { cat "$work/browser.err"; fail "chromium --dump-dom failed on the fresh report"; }
python3 - "$work/fresh-dom.html" "$work/fresh.toml" <<'PY' || fail "the fresh report does not say what to run"
import re, sys
dom = open(sys.argv[1], encoding="utf-8").read()
stages = re.findall(r'<section[^>]*class="missing"[^>]*data-stage="([a-z-]+)"', dom)
want = ["solve", "solve", "solve", "evaluate", "score", "cost", "library"]
if stages != want:
    sys.exit(f"missing sections {stages}, expected {want}")
for stage in set(want):
    if f"tessera puzzle {stage} {sys.argv[2]}" not in dom:
        sys.exit(f"no command for {stage}")
if 'class="solution"' in dom or 'class="block"' in dom:
    sys.exit("points or blocks without solutions")
PY

# A screenshot: not blank, and showing the plots' colours (the main solution's blue, the
# architecture's parent and pruned blocks).
run_browser --window-size=1200,2600 --screenshot="$work/report.png" "file://$work/p/report.html" \
  >/dev/null 2>"$work/browser.err" || { cat "$work/browser.err"; fail "chromium --screenshot failed"; }
[ -s "$work/report.png" ] || { cat "$work/browser.err"; fail "no screenshot"; }
python3 - "$work/report.png" <<'PY' || fail "the screenshot is blank or lacks the plots"
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
if data[:8] != b"\x89PNG\r\n\x1a\n":
    sys.exit("not a PNG")
at, idat = 8, b""
while at < len(data):
    length, kind = struct.unpack(">I4s", data[at:at + 8])
    body = data[at + 8:at + 8 + length]
    if kind == b"IHDR":
        width, height, depth, colour = struct.unpack(">IIBB", body[:10])
    elif kind == b"IDAT":
        idat += body
    at += 12 + length
if depth != 8 or colour not in (2, 6):
    sys.exit(f"unexpected PNG: depth {depth}, colour type {colour}")
channels = 3 if colour == 2 else 4
raw = zlib.decompress(idat)
stride = width * channels
previous = bytearray(stride)
colours = {}
for y in range(height):
    line = raw[y * (stride + 1):(y + 1) * (stride + 1)]
    kind, row = line[0], bytearray(line[1:])
    if kind == 1:
        for i in range(channels, stride):
            row[i] = (row[i] + row[i - channels]) & 255
    elif kind == 2:
        row = bytearray((a + b) & 255 for a, b in zip(row, previous))
    elif kind == 3:
        for i in range(stride):
            left = row[i - channels] if i >= channels else 0
            row[i] = (row[i] + ((left + previous[i]) >> 1)) & 255
    elif kind == 4:
        for i in range(stride):
            a = row[i - channels] if i >= channels else 0
            b, c = previous[i], previous[i - channels] if i >= channels else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            row[i] = (row[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    for x in range(0, stride, channels):
        pixel = bytes(row[x:x + 3])
        colours[pixel] = colours.get(pixel, 0) + 1
    previous = row
pixels = width * height
white = colours.get(b"\xff\xff\xff", 0)
print(f"screenshot {width}x{height}: {len(colours)} colours, {100 * (pixels - white) / pixels:.1f}% not white")
if len(colours) < 16 or pixels - white < pixels // 100:
    sys.exit("the screenshot is (nearly) blank")
for name, rgb in (("the main solution's blue", b"\x1f\x6f\xeb"), ("a parent block's blue", b"\x54\xae\xff")):
    if colours.get(rgb, 0) < 20:
        sys.exit(f"no {name} in the screenshot")
PY
echo "report_browser: ok"
