#!/usr/bin/env python3
"""Makes the tokenizer test data and the golden files Tessera's tokenizer tests compare with.

  python3 tests/golden/tokenizer/make_golden.py [--gguf PATH] [--cache DIR]

Needs: pip install gguf tokenizers transformers jinja2.
Writes
  tests/data/tokenizer/toy_{gpt2,smollm,llama3}.json  small trained byte-level BPEs (committed)
  tests/golden/tokenizer/toy_golden.json               ids Hugging Face gives with them
  tests/golden/tokenizer/chat_templates.json           transformers' apply_chat_template output
and, when the SmolLM2 GGUF exists,
  <cache>/tokenizers/SmolLM2-135M-Instruct/tokenizer.json  built from the GGUF metadata (big,
                                                           not committed)
  tests/golden/tokenizer/smollm2_golden.json           ids of the real SmolLM2 tokenizer
"""
import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent.parent
DATA = REPO / "tests" / "data" / "tokenizer"
DEFAULT_CACHE = Path(os.environ.get("TESSERA_CACHE_DIR", Path.home() / ".cache" / "tessera"))

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

GOLDEN_STRINGS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure they'll say we've done it, didn't you'd?",
    "DON'T SHOUT, I'M HERE AND YOU'RE THERE",
    "  two leading spaces",
    "trailing spaces   ",
    "multiple    spaces   between  words",
    "tabs\tand\t\ttabs",
    "new\nlines\n\n\nand\r\nCRLF\r\n",
    "   \n\n   \t  ",
    " ",
    "\n",
    "numbers 1234567890 and 3.14159 and 1,000,000",
    "x=42; y = x**2 + 17;",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "int main() {\n\tstd::cout << \"hi\\n\";\n\treturn 0;\n}",
    "emoji 😀🎉👍🏽 family 👨‍👩‍👧 flags 🇫🇷",
    "中文分词测试，你好世界。",
    "日本語のテキストです",
    "한국어 텍스트",
    "Ünïcödé àccents: café, naïve, Ærøskøbing",
    "Ελληνικά και русский текст",
    "العربية ١٢٣",
    "हिन्दी भाषा",
    "mixed123abc456def",
    "½ ¼ ² ³ superscripts and Ⅻ roman",
    "<|im_start|>user\nHi there<|im_end|>\n",
    "text<|im_end|>more<|endoftext|>",
    "<|im_start|><|im_start|>",
    "almost <|im_start special <|im_end",
    "https://example.com/path?q=1&r=2#frag",
    "email.address@example.com",
    "'s 't 're 've 'm 'll 'd",
    "quote's 'quoted' ''double'' '''",
    "\u00a0non-breaking\u2003em space\u3000ideographic",
    "zero\u200bwidth joiner\u200d",
    "a" * 300,
    "-----==== ****  !!!???",
    "The year 2024 had 366 days.",
    "U+FFFD \ufffd replacement",
    "ſ long s and K Kelvin",
    " \n \n x",
    "end with newline\n",
    "Mr. O'Neil's dog's bone",
]

CORPUS_LINES = [
    "the cat sat on the mat and the dog sat on the log",
    "hello world, hello there, hello again",
    "in the beginning there were tokens and merges",
    "I'm here, you're there, they've gone, we'll see, it's fine, he'd go",
    "def function(argument):\n    return argument + 1\n",
    "numbers like 123 and 4567 and 89 appear 2024 times",
    "    indented code\n\tand tabs\n\n",
    "emoji 😀 and 中文 and café",
]


def toy_corpus():
    lines = []
    for repeat in range(20):
        for line in CORPUS_LINES:
            lines.append(line if repeat % 2 == 0 else line.upper())
    return lines + GOLDEN_STRINGS


def train_toy(kind):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers, Regex

    tok = Tokenizer(models.BPE(ignore_merges=(kind == "llama3")))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if kind == "gpt2":
        tok.pre_tokenizer = byte_level
    elif kind == "smollm":
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), byte_level])
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, min_frequency=2, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok.train_from_iterator(toy_corpus(), trainer=trainer)
    if kind == "gpt2":
        tok.add_tokens(["<custom>"])  # a non-special added token
    return tok


def golden_ids(tok):
    cases = []
    for text in GOLDEN_STRINGS:
        ids = tok.encode(text, add_special_tokens=False).ids
        assert tok.decode(ids, skip_special_tokens=False) == text, text
        cases.append({"text": text, "ids": ids})
    return cases


def write_json(path, value):
    path.write_text(json.dumps(value, ensure_ascii=True, indent=1) + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes)")


def make_toys():
    DATA.mkdir(parents=True, exist_ok=True)
    goldens = {}
    for kind in ("gpt2", "smollm", "llama3"):
        tok = train_toy(kind)
        path = DATA / f"toy_{kind}.json"
        tok.save(str(path), pretty=False)
        print(f"wrote {path} ({path.stat().st_size} bytes)")
        goldens[kind] = golden_ids(tok)
    write_json(HERE / "toy_golden.json", goldens)


def read_gguf_tokenizer(gguf_path):
    import gguf
    reader = gguf.GGUFReader(str(gguf_path))
    fields = {k: f.contents() for k, f in reader.fields.items() if k.startswith("tokenizer")}
    return fields


def smollm2_tokenizer_json(fields):
    """A Hugging Face tokenizer.json from GGUF metadata (pre = smollm: Digits + ByteLevel)."""
    assert fields["tokenizer.ggml.model"] == "gpt2"
    assert fields["tokenizer.ggml.pre"] == "smollm", fields["tokenizer.ggml.pre"]
    tokens = fields["tokenizer.ggml.tokens"]
    types = fields["tokenizer.ggml.token_type"]
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": types[i] == 3}
             for i, t in enumerate(tokens) if types[i] in (3, 4)]
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
             "use_regex": True}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                           "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {t: i for i, t in enumerate(tokens)},
                  "merges": list(fields["tokenizer.ggml.merges"])},
    }


def make_smollm2(gguf_path, cache_dir):
    from tokenizers import Tokenizer
    fields = read_gguf_tokenizer(gguf_path)
    out_dir = cache_dir / "tokenizers" / "SmolLM2-135M-Instruct"
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "tokenizer.json"
    json_path.write_text(json.dumps(smollm2_tokenizer_json(fields), ensure_ascii=False))
    print(f"wrote {json_path} ({json_path.stat().st_size} bytes)")
    tok = Tokenizer.from_file(str(json_path))
    cases = golden_ids(tok)
    # Cross-check with transformers' own GGUF loader (its pre-tokenizer may differ).
    try:
        from transformers import AutoTokenizer
        hf = AutoTokenizer.from_pretrained(str(Path(gguf_path).parent),
                                           gguf_file=Path(gguf_path).name)
        differ = [c["text"] for c in cases
                  if hf.encode(c["text"], add_special_tokens=False) != c["ids"]]
        print(f"transformers GGUF loader differs on {len(differ)} of {len(cases)} strings:"
              f" {differ[:5]}")
    except Exception as error:  # the cross-check is informative only
        print(f"transformers GGUF cross-check skipped: {error}")
    write_json(HERE / "smollm2_golden.json", {
        "tokenizer_json": "tokenizers/SmolLM2-135M-Instruct/tokenizer.json",
        "bos_token_id": int(fields["tokenizer.ggml.bos_token_id"]),
        "eos_token_id": int(fields["tokenizer.ggml.eos_token_id"]),
        "cases": cases})
    return fields["tokenizer.chat_template"]


LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}")

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."},
     {"role": "user", "content": "What is 2+2?"},
     {"role": "assistant", "content": "4"},
     {"role": "user", "content": "And 3+3?"}],
    [{"role": "user", "content": "  spaced out \n"},
     {"role": "assistant", "content": "\n\nreply with blank lines\n"}],
    [{"role": "assistant", "content": "I speak first."}],
    [{"role": "user", "content": "first"}, {"role": "system", "content": "late system"}],
    [{"role": "user", "content": "Ünïcödé 中文 😀 <b>tags</b>"}],
]


def make_chat_goldens(smollm2_template):
    from transformers import PreTrainedTokenizerFast
    tok = PreTrainedTokenizerFast(tokenizer_file=str(DATA / "toy_gpt2.json"))
    templates = {"llama3": (LLAMA3_TEMPLATE, "<|begin_of_text|>")}
    if smollm2_template:
        templates["smollm2"] = (smollm2_template, "<|im_start|>")
    out = {}
    for name, (template, bos) in templates.items():
        cases = []
        for messages in CONVERSATIONS:
            for gen in (False, True):
                text = tok.apply_chat_template(messages, chat_template=template, tokenize=False,
                                               add_generation_prompt=gen, bos_token=bos)
                cases.append({"messages": messages, "add_generation_prompt": gen,
                              "expected": text})
        out[name] = {"template": template, "bos_token": bos, "cases": cases}
    write_json(HERE / "chat_templates.json", out)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gguf", default=str(DEFAULT_CACHE / "models" /
                                             "SmolLM2-135M-Instruct.Q4_1.gguf"))
    parser.add_argument("--cache", default=str(DEFAULT_CACHE))
    args = parser.parse_args()
    make_toys()
    template = None
    if Path(args.gguf).exists():
        template = make_smollm2(Path(args.gguf), Path(args.cache))
    else:
        print(f"{args.gguf} not found: SmolLM2 golden ids not regenerated", file=sys.stderr)
    make_chat_goldens(template)


if __name__ == "__main__":
    main()
