"""Build the tiny random-weight Llama and its tokenizer that the real-engine tests serve with vLLM.

Run it with the engine venv's Python (it needs torch, transformers and tokenizers, which servingperf
itself does not): ``$SERVINGPERF_VLLM_PYTHON scripts/build_tiny_model.py`` prints the model folder.
Nothing is downloaded: the tokenizer is a BPE trained here on generated ASCII text, the weights are
random (seeded), so the folder is the same on every machine for a given recipe. It is built once
into ``${XDG_CACHE_HOME:-~/.cache}/servingperf/models/tiny-llama-<recipe hash>`` (or ``--cache-dir``)
and reused while complete (a ``COMPLETE`` file is written last; a build goes to a temporary folder
renamed into place, so an interrupted build never looks complete).

Why it is shaped so:

- head_dim 64 (hidden 128, 2 heads): vLLM's CPU attention refuses head_dim 16 at the first request.
- Every ordinary token decodes to complete, non-empty ASCII text (no pre-tokenizer, a ``Fuse``
  decoder, an ASCII alphabet, no byte fallback; prompts are normalised to printable ASCII). With a
  byte-level BPE a random model emits tokens that decode to partial UTF-8, and vLLM then streams
  chunks with empty text: a client counting token-bearing chunks would undercount.
- The only special token is the end-of-sequence ``</s>`` (no BOS, no UNK), so no generated token is
  skipped in detokenisation except EOS, which a free-length request (no ``ignore_eos``) needs.
- The EOS row of ``lm_head`` is scaled up (``EOS_SCALE``): its logit then swings widely with the
  hidden state, so EOS is sampled now and then (about 1% of steps at temperature 1, two thirds of
  128-token answers end early; ``--check`` prints the rate) and free-length requests do end
  early, while with fixed lengths (``ignore_eos``/``min_tokens``) the engine masks it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

RECIPE = {
    "version": 1,
    "vocab_size": 384,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "max_position_embeddings": 4096,
    "eos_scale": 16.0,
    "corpus_lines": 4000,
    "seed": 0,
}
EOS = "</s>"
WORDS = (
    "the model serving latency token request cluster batch queue prefix cache answer question"
    " system user data fast slow large small engine stream first time output input window"
    " release gate kernel memory device worker load test run scale many single multi rate"
).split()
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def recipe_hash() -> str:
    return hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()[:12]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "servingperf" / "models"


def corpus(lines: int, seed: int) -> list[str]:
    """Generated sentences over a fixed word list plus punctuation and digits, so BPE learns
    word-sized merges and every printable ASCII character is in the alphabet anyway."""
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 30))]
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words)), str(rng.randint(0, 9999)))
        out.append(" ".join(words) + rng.choice([".", "?", "!", ",", ":"]))
    return out


def build(folder: Path) -> None:
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    ascii_alphabet = [chr(c) for c in range(0x20, 0x7F)]
    tokenizer = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    # Prompts may carry any Unicode: whitespace becomes a space, anything else outside printable
    # ASCII is dropped, so every token, prompt or generated, is plain ASCII.
    tokenizer.normalizer = normalizers.Sequence(
        [
            normalizers.NFKD(),
            normalizers.Replace(Regex(r"\s"), " "),
            normalizers.Replace(Regex(r"[^\x20-\x7e]"), ""),
        ]
    )
    tokenizer.decoder = decoders.Fuse()  # a token's text is exactly its characters
    trainer = trainers.BpeTrainer(
        vocab_size=RECIPE["vocab_size"],
        special_tokens=[EOS],
        initial_alphabet=ascii_alphabet,
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus(RECIPE["corpus_lines"], RECIPE["seed"]), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token=EOS, clean_up_tokenization_spaces=False
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder)

    torch.manual_seed(RECIPE["seed"])
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=RECIPE["hidden_size"],
        intermediate_size=RECIPE["intermediate_size"],
        num_hidden_layers=RECIPE["num_hidden_layers"],
        num_attention_heads=RECIPE["num_attention_heads"],
        num_key_value_heads=RECIPE["num_attention_heads"],
        max_position_embeddings=RECIPE["max_position_embeddings"],
        bos_token_id=None,
        eos_token_id=fast.eos_token_id,
        pad_token_id=None,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight[fast.eos_token_id] *= RECIPE["eos_scale"]
    model.save_pretrained(folder, safe_serialization=True)


def ensure(cache_dir: Path) -> Path:
    """The model folder for this recipe, built if absent or incomplete."""
    folder = cache_dir / f"tiny-llama-{recipe_hash()}"
    if (folder / "COMPLETE").exists():
        return folder
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tiny-llama-", dir=cache_dir))
    staging.chmod(0o755)
    try:
        build(staging)
        (staging / "recipe.json").write_text(json.dumps(RECIPE, indent=2, sort_keys=True))
        (staging / "COMPLETE").write_text(recipe_hash() + "\n")
        if folder.exists():  # an incomplete earlier build
            shutil.rmtree(folder)
        try:
            staging.rename(folder)
        except OSError:  # another build finished first
            if not (folder / "COMPLETE").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def check(folder: Path, steps: int) -> None:
    """Sample ``steps`` tokens with transformers and print the EOS rate and whether every other
    token decodes to non-empty ASCII (the properties the tests rely on)."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = LlamaForCausalLM.from_pretrained(folder)
    torch.manual_seed(1)
    ids = tokenizer("the model answers a question", return_tensors="pt").input_ids
    eos = bad = 0
    with torch.no_grad():
        for _ in range(steps):
            logits = model(ids).logits[0, -1]
            token = int(torch.multinomial(torch.softmax(logits, -1), 1))
            if token == tokenizer.eos_token_id:
                eos += 1
            else:
                text = tokenizer.decode([token])
                bad += not text or not text.isascii()
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)[:, -256:]
    print(f"EOS rate {eos / steps:.3f}, tokens decoding to empty or non-ASCII text: {bad}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument("--check", type=int, metavar="STEPS", default=0, help="sample and report")
    args = parser.parse_args()
    folder = ensure(args.cache_dir.expanduser())
    if args.check:
        check(folder, args.check)
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
