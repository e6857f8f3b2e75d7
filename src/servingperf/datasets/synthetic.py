"""Synthetic prompts of an exact length, for load shaped by input size rather than content.

Each prompt is ``input_tokens`` words drawn uniformly, with a seeded :class:`random.Random`, from a
fixed list of short common English words, joined by single spaces; its toy-token count is exactly
``input_tokens``, and most real tokenizers give close to one token per word. Prompts differ from
one another (so a server's prefix cache does not make them free) and are identical for the same
seed on every machine and Python version we support. They carry no output length of their own.
"""

from __future__ import annotations

import random

from servingperf.datasets.jsonl import MAX_PROMPT_BYTES
from servingperf.datasets.prompts import Prompt
from servingperf.errors import ConfigError

MAX_SYNTHETIC_TOKENS = 50_000_000
"""Cap on prompts × input tokens: the prompts are all held in memory (about 6 bytes a word)."""

_WORD_TEXT = """
    the of and to in is was for on are with as be at by this had not but from or have an they
    which one you were all we her she there would their will when who him been has more if no out
    so said what up its about than into them can only other time new some could these two may
    first then do any like my now over such our man me even most made after also did many off
    before must well back through years much where your way down should because each just those
    people how too little state good very make world still own see men work long get here between
    both life being under never day same another know while last might us great old year since
    come against go came right used take three place small found part house water light hand
    high night point room city tree river stone bread music field paper story green black white
    early voice power table order large young color north south east west sun moon star cloud rain
    wind snow fire earth sea ship road town farm garden school market bridge window door chair
"""
WORDS: tuple[str, ...] = tuple(_WORD_TEXT.split())
"""The synthetic vocabulary: 200 distinct short words, each one toy token."""


def synthetic_prompts(count: int, input_tokens: int, seed: int) -> tuple[Prompt, ...]:
    """``count`` prompts of exactly ``input_tokens`` toy tokens each, fixed by ``seed``.

    Prompt ``i`` depends only on the seed, ``input_tokens`` and ``i``, not on ``count``, so asking
    for more prompts keeps the first ones unchanged.
    """
    if count < 1 or input_tokens < 1:
        raise ConfigError(
            f"synthetic prompts need count >= 1 and input tokens >= 1, not {count} and"
            f" {input_tokens}"
        )
    total = count * input_tokens
    if total > MAX_SYNTHETIC_TOKENS:
        raise ConfigError(
            f"synthetic dataset of {count} prompts x {input_tokens} tokens = {total} tokens is more"
            f" than the {MAX_SYNTHETIC_TOKENS} held in memory; lower 'prompts' or"
            " 'synthetic_input_tokens'"
        )
    rng = random.Random(f"servingperf-synthetic:{seed}")
    prompts = []
    for i in range(count):
        text = " ".join(rng.choices(WORDS, k=input_tokens))
        if len(text) > MAX_PROMPT_BYTES:  # ASCII: characters are bytes
            raise ConfigError(
                f"a synthetic prompt of {input_tokens} tokens is {len(text)} bytes, more than the"
                f" {MAX_PROMPT_BYTES} bytes any prompt may have; lower 'synthetic_input_tokens'"
            )
        prompts.append(Prompt(index=i, text=text, system_prompt=None, expected_output_tokens=None))
    return tuple(prompts)
