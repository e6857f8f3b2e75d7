"""Prometheus text exposition to the rows of ``metrics/scrape-*.parquet`` (pure).

Terms. A *family* is one metric (``vllm:e2e_request_latency_seconds``) with its samples
(``_bucket``, ``_sum``, ``_count`` for a histogram). A :class:`FamilyFilter` drops families by
name (shell globs); ``*_created`` series (prometheus_client's creation timestamps, not
measurements) are always dropped. Parsing is prometheus-client's own text parser, the
maintained one, once per distinct series, with a fast path for the plain series lines that make
up nearly every exposition (see :class:`ExpositionParser`).
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

DEFAULT_EXCLUDE = ("python_*", "process_*")
_SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_info")


@dataclass(frozen=True, slots=True)
class SampleRow:
    name: str
    labels: str  # JSON, sorted keys, without "le"
    le: float | None
    value: float


class FamilyFilter:
    """Keeps a line unless its metric name matches an ``exclude`` glob (or ends ``_created``);
    with ``include`` globs, only names matching one of them are kept."""

    def __init__(self, include: Iterable[str] = (), exclude: Iterable[str] = DEFAULT_EXCLUDE):
        self._include = _compile(include)
        self._exclude = _compile(exclude)

    def keeps(self, name: str) -> bool:
        """Whether a sample of this name is kept (a glob matches the sample's own name or its
        family's: ``vllm:x_seconds`` keeps ``vllm:x_seconds_bucket`` too)."""
        if name.endswith("_created"):
            return False
        names = [name]
        for suffix in _SUFFIXES:
            if name.endswith(suffix):
                names.append(name.removesuffix(suffix))
        if self._exclude is not None and any(self._exclude.match(n) for n in names):
            return False
        return self._include is None or any(self._include.match(n) for n in names)


def _compile(globs: Iterable[str]) -> re.Pattern[str] | None:
    patterns = [fnmatch.translate(g) for g in globs]
    return re.compile("|".join(patterns)) if patterns else None


class ExpositionParser:
    """Parses expositions into rows, with prometheus-client's text parser.

    Cost. The parser is pure Python (about 60 us a line here), too slow for hundreds of
    instances scraped every second, and a series' name and labels repeat at every scrape while
    only its value changes. So each distinct *series line* (the text before the value) is parsed
    once by prometheus-client and remembered; at later scrapes only the value (and an optional
    timestamp, ignored) is read, with Python's float(), which reads the format's ``+Inf``,
    ``-Inf`` and ``NaN`` as Prometheus writes them. ``# HELP`` / ``# TYPE`` lines carry no
    sample and are skipped (sample names are stored as written: ``_bucket``, ``_sum``...).

    Many instances. Every instance's series differ (its model label), so at hundreds of
    instances the cache does not help the first scrape of each, and prometheus-client's
    character-by-character parser was most of a 2000-instance run's CPU. A series line with a
    legacy metric name and no backslash (no escape sequence: every label value is plain text
    between two quotes) is read by one regular expression (:data:`_PLAIN_SERIES`); anything
    else (escapes, quoted UTF-8 names, malformed text) goes to prometheus-client. A unit test
    holds the two to the same answer over real expositions.
    """

    def __init__(self, family_filter: FamilyFilter | None = None, cache_size: int = 200_000):
        self._filter = family_filter or FamilyFilter()
        self._series: dict[str, tuple[str, str, float | None] | None] = {}
        # whole lines seen lately (most lines repeat unchanged between scrapes: an idle counter,
        # a histogram's unmoved buckets): one dict lookup instead of a split and a float()
        self._lines: dict[str, tuple[str, str, float | None, float] | None] = {}
        self._cache_size = cache_size

    def parse(self, text: str) -> list[SampleRow]:
        """The samples of ``text``; ValueError when it is not the Prometheus text format."""
        rows: list[SampleRow] = []
        for name, labels, le, value in self.iter_samples(text):
            rows.append(SampleRow(name, labels, le, value))
        return rows

    def iter_samples(self, text: str) -> list[tuple[str, str, float | None, float]]:
        """(name, labels JSON, le, value) of every kept sample of ``text``, in order."""
        out: list[tuple[str, str, float | None, float]] = []
        series = self._series
        lines = self._lines
        if len(lines) > self._cache_size:
            lines.clear()
        keeps = self._filter.keeps
        for line in text.splitlines():
            if line in lines:
                known = lines[line]
                if known is not None:
                    out.append(known)
                continue
            if not line or line[0] == "#":
                continue
            brace = line.rfind("}")
            if brace >= 0:
                cut = brace + 1
            else:
                cut = line.find(" ")
                if cut < 0:
                    raise ValueError(f"not Prometheus text format: no value in {line[:80]!r}")
            head = line[:cut]
            tail = line[cut:].split()
            if not tail:
                raise ValueError(f"not Prometheus text format: no value in {line[:80]!r}")
            try:
                value = float(tail[0])
            except ValueError as exc:
                raise ValueError(f"not Prometheus text format: {line[:80]!r}: {exc}") from exc
            if head in series:
                parsed = series[head]
            else:
                parsed = self._parse_series(head, keeps)
                if len(series) < self._cache_size:
                    series[head] = parsed
            sample = None if parsed is None else (parsed[0], parsed[1], parsed[2], value)
            lines[line] = sample
            if sample is not None:
                out.append(sample)
        return out

    @staticmethod
    def _parse_series(
        head: str, keeps: Callable[[str], bool]
    ) -> tuple[str, str, float | None] | None:
        """Name, labels JSON and ``le`` of one series line (None: a family not kept)."""
        plain = _plain_series(head)
        if plain is not None:
            name, labels = plain
            if not keeps(name):
                return None
            le = _bound(labels.pop("le")) if "le" in labels else None
            return name, json.dumps(dict(sorted(labels.items())), separators=(",", ":")), le
        try:
            families = list(text_string_to_metric_families(f"{head} 0\n"))
        except (ValueError, TypeError, IndexError) as exc:
            raise ValueError(f"not Prometheus text format: {head[:80]!r}: {exc}") from exc
        samples = [sample for family in families for sample in family.samples]
        if len(samples) != 1:
            raise ValueError(f"not Prometheus text format: {head[:80]!r}")
        sample = samples[0]
        if not keeps(sample.name):
            return None
        labels = dict(sample.labels)
        le = _bound(labels.pop("le")) if "le" in labels else None
        encoded = json.dumps(dict(sorted(labels.items())), separators=(",", ":"))
        return sample.name, encoded, le


_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
_PLAIN_SERIES = re.compile(rf"({_NAME})(?:\{{((?:\s*{_LABEL}\s*=\s*\"[^\"]*\"\s*,)*"
                           rf"(?:\s*{_LABEL}\s*=\s*\"[^\"]*\"\s*)?)\}})?\s*")  # fmt: skip
_PLAIN_LABEL = re.compile(rf"\s*({_LABEL})\s*=\s*\"([^\"]*)\"\s*,?")


def _plain_series(head: str) -> tuple[str, dict[str, str]] | None:
    """Name and labels of a series line without escapes (None: not one, let the library read
    it). A repeated label name is left to the library too (it rejects it)."""
    if "\\" in head:
        return None
    match = _PLAIN_SERIES.fullmatch(head)
    if match is None:
        return None
    labels: dict[str, str] = {}
    body = match.group(2)
    if body:
        for label in _PLAIN_LABEL.finditer(body):
            if label.group(1) in labels:
                return None
            labels[label.group(1)] = label.group(2)
    return match.group(1), labels


def _bound(raw: str) -> float:
    return math.inf if raw in ("+Inf", "Inf", "inf") else float(raw)
