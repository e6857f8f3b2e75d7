"""Read an acknowledgements file (known changes that must not fail the gate)."""

from __future__ import annotations

from pathlib import Path

import yaml

from servingperf.analysis.gate import Acknowledgement, parse_acknowledgements
from servingperf.errors import ConfigError


def read_acknowledgements(path: Path | None) -> tuple[Acknowledgement, ...]:
    """The acknowledgements in ``path`` (none when None); ConfigError names file and field."""
    if path is None:
        return ()
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    return parse_acknowledgements(data, str(path))
