"""PNG charts: each chart spec drawn to ``charts/<name>.png`` by vl-convert, with no browser.

Terms. *Scale* multiplies the spec's pixel size (2 gives sharp images on high-density screens
and in CI notifications). The *render time* of a chart is the wall time vl-convert took to turn
its spec into PNG bytes; writing the file is not included.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import vl_convert

from servingperf.errors import RunDirError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DEFAULT_SCALE = 2.0


@dataclass(frozen=True, slots=True)
class PngChart:
    name: str
    path: Path
    render_s: float
    size_bytes: int


def render_png(spec: Mapping[str, Any], scale: float = DEFAULT_SCALE) -> bytes:
    """The chart as PNG bytes. A spec vl-convert rejects is a bug in the spec builders: it raises.

    No base URL is allowed: the specs carry their data inline, and a spec that tried to fetch
    anything must fail here rather than reach the network.
    """
    png: bytes = vl_convert.vegalite_to_png(dict(spec), scale=scale, allowed_base_urls=[])
    return png


def write_pngs(
    specs: Mapping[str, Mapping[str, Any]], directory: Path, scale: float = DEFAULT_SCALE
) -> dict[str, PngChart]:
    """Write every chart as ``directory/<name>.png``; ``RunDirError`` if the files cannot be written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"cannot create the chart directory {directory}: {exc}") from exc
    written: dict[str, PngChart] = {}
    for name, spec in specs.items():
        started = time.perf_counter()
        png = render_png(spec, scale)
        elapsed = time.perf_counter() - started
        path = directory / f"{name}.png"
        try:
            path.write_bytes(png)
        except OSError as exc:
            raise RunDirError(f"cannot write the chart {path}: {exc}") from exc
        written[name] = PngChart(name, path, elapsed, len(png))
    return written
