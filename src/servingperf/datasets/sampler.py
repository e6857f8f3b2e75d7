"""Which prompt a virtual user sends next.

Each user owns a :class:`PromptSampler` drawing uniformly, with replacement, from the run's subset.
Its random stream is fixed by the load seed and the user's number, so a rerun sends every user the
same prompt sequence, and users do not move in lock-step. Draws are independent of timing: what a
user sends as its k-th request does not depend on how fast the server answered.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from servingperf.datasets.prompts import Prompt
from servingperf.errors import ConfigError


class PromptSampler:
    """Uniform, reproducible prompt draws for one user; ``next`` is on the request hot path."""

    __slots__ = ("_choice", "_prompts")

    def __init__(self, prompts: Sequence[Prompt], seed: int, user: int) -> None:
        if not prompts:
            raise ConfigError("a prompt sampler needs at least one prompt")
        # A tuple is kept as is, so the users of one worker share one subset.
        self._prompts = tuple(prompts)
        # A string seed is hashed the same way in every process; (seed, user) pairs never collide.
        self._choice = random.Random(f"servingperf-sampler:{seed}:{user}").choice

    def next(self) -> Prompt:
        """The prompt for this user's next request."""
        return self._choice(self._prompts)
