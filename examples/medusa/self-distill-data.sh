#!/usr/bin/env bash
# Self-distillation text for Medusa heads: the model's own answers to questions made from the
# section titles of the Python documentation, one document per answer. Heads trained on the
# text the model itself writes see at training time what they will see while decoding.
#
#   examples/medusa/self-distill-data.sh MODEL DOCS_TEXT OUT [COUNT] [TOKENS]
#
# MODEL: the base model; DOCS_TEXT: the folder of .rst.txt files (scripts/fetch-corpus.sh);
# OUT: where the answers go (OUT/answer-NNNN.txt); COUNT answers (default 200) of at most
# TOKENS tokens (default 256). Answers already in OUT are kept, so a stopped run resumes.
set -euo pipefail
if [[ $# -lt 3 ]]; then
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
model=$1 docs=$2 out=$3 count=${4:-200} tokens=${5:-256}
tessera=${TESSERA:-tessera}
[[ -d "$docs" ]] || { echo "self-distill-data: no folder $docs" >&2; exit 1; }
mkdir -p "$out"

# Section titles: a line of text underlined by a line of '=', '-' or '~' as long as it.
mapfile -t titles < <(find "$docs" -name '*.rst.txt' | sort | xargs awk '
  prev != "" && $0 ~ /^[=~-]+$/ && length($0) >= length(prev) && prev !~ /[`*:|]/ { print prev }
  { prev = $0 }' | awk 'length($0) > 8 && !seen[$0]++' | shuf -n "$count" --random-source=<(yes))
echo "self-distill-data: ${#titles[@]} questions, $tokens tokens each, into $out" >&2

start=$SECONDS
made=0  # this run's answers: the rate leaves out those a stopped run left
for i in "${!titles[@]}"; do
  file=$(printf '%s/answer-%04d.txt' "$out" "$i")
  [[ -s "$file" ]] && continue
  "$tessera" generate "$model" -q -n "$tokens" \
    -p "Explain \"${titles[$i]}\" in Python, with an example." > "$file.partial" 2>/dev/null
  mv "$file.partial" "$file"
  made=$((made + 1))
  rate=$(((SECONDS - start) / made))
  printf '\r%d/%d answers, %ds each, %ds left ' "$((i + 1))" "${#titles[@]}" "$rate" \
    $((rate * (${#titles[@]} - i - 1))) >&2
done
echo >&2
