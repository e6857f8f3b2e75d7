"""The bundled sample: original prompts shipped inside the package (see ``data/README.md``).

It is the default dataset, so a scenario runs with no file of its own. It is read through
:mod:`importlib.resources`, which works from a source tree, an installed wheel or a zip, and parsed
by the same JSONL reader as user files, so it obeys the same rules.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources

from servingperf.datasets.jsonl import parse_jsonl
from servingperf.datasets.prompts import Prompt

BUNDLED_SOURCE = "servingperf/datasets/data/prompts.jsonl"
"""How error messages and run descriptions name the bundled sample."""


def read_bundled() -> Iterator[Prompt]:
    """Yield the bundled prompts in file order (OpenOrca-style, each with an output length)."""
    resource = resources.files("servingperf.datasets").joinpath("data", "prompts.jsonl")
    with resource.open("rb") as stream:
        yield from parse_jsonl(stream, BUNDLED_SOURCE)
