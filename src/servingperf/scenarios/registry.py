"""The registry of scenario flavours: one entry per ``kind:`` a scenario file may give.

Explicit on purpose (no discovery at import time): adding a flavour is one new module, a function
of a :class:`~servingperf.scenarios.context.RunContext`, and one line here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from servingperf.errors import ConfigError
from servingperf.model.specs import ScenarioKind
from servingperf.scenarios.context import ScenarioFn
from servingperf.scenarios.many_model import run_many_model
from servingperf.scenarios.multi_model import run_multi_model
from servingperf.scenarios.single_model import run_single_model

FLAVOURS: Mapping[ScenarioKind, ScenarioFn] = MappingProxyType(
    {
        ScenarioKind.SINGLE_MODEL: run_single_model,
        ScenarioKind.MULTI_MODEL: run_multi_model,
        ScenarioKind.MANY_MODEL: run_many_model,
    }
)


def flavour(kind: ScenarioKind) -> ScenarioFn:
    """The flavour that runs scenarios of ``kind``; ConfigError for a kind without one."""
    try:
        return FLAVOURS[kind]
    except KeyError:
        raise ConfigError(f"scenario kind {kind.value!r} is not available in this build") from None
