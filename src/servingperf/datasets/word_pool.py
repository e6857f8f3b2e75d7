"""A pool of synthetic words from which prompts of any length are cut in constant time.

Terms. The *pool* is one long text of ``size`` words drawn with a seeded generator from the
synthetic vocabulary (:data:`servingperf.datasets.synthetic.WORDS`), and the character offset of
every word. :meth:`WordPool.text` is the run of ``count`` words starting at word ``start``: a
slice of the pool, so a 7,000-word prompt costs a string copy, not 7,000 draws (a trace replayer
builds each prompt on the send path). Two prompts cut at different starts differ from their first
word on, so they share no prefix a server's cache could reuse by accident; prompts meant to share
a prefix are built from the same cuts (:mod:`servingperf.datasets.trace_prompts`).
"""

from __future__ import annotations

import random

import numpy as np
import numpy.typing as npt

from servingperf.datasets.synthetic import WORDS
from servingperf.errors import ConfigError

DEFAULT_POOL_WORDS = 1_000_000
MAX_POOL_WORDS = 50_000_000


class WordPool:
    """``size`` seeded words; :meth:`text` cuts runs of them."""

    __slots__ = ("_starts", "_text", "size")

    def __init__(self, size: int, seed: int) -> None:
        if not 1 <= size <= MAX_POOL_WORDS:
            raise ConfigError(f"a word pool holds 1 to {MAX_POOL_WORDS} words, not {size}")
        rng = random.Random(f"servingperf-word-pool:{seed}")
        words = rng.choices(WORDS, k=size)
        self._text = " ".join(words) + " "
        lengths = np.fromiter((len(w) + 1 for w in words), dtype=np.int64, count=size)
        starts: npt.NDArray[np.int64] = np.zeros(size + 1, dtype=np.int64)
        np.cumsum(lengths, out=starts[1:])
        self._starts = starts
        self.size = size

    def text(self, start: int, count: int) -> str:
        """Words ``start`` .. ``start + count - 1`` of the pool (wrapping around its end),
        joined by single spaces."""
        if count < 1:
            raise ValueError(f"count must be >= 1, not {count}")
        if count > self.size:
            raise ValueError(f"a cut of {count} words from a pool of {self.size}")
        start %= self.size
        end = start + count
        starts = self._starts
        if end <= self.size:
            return self._text[starts[start] : starts[end] - 1]
        wrapped = end - self.size
        return self._text[starts[start] :] + self._text[: starts[wrapped] - 1]
