"""The base every user-facing spec shares: unknown keys rejected, frozen, validated defaults."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$"

Name = Annotated[
    str,
    Field(
        pattern=NAME_PATTERN,
        description="lower-case letters, digits, '-' and '.', at most 63 characters (a DNS label)",
    ),
]


class FieldError(ValueError):
    """A cross-field rule broken at a known place: ``loc`` is relative to the validated model, so the
    config loader can point at the line of the offending field rather than at the whole model."""

    def __init__(self, loc: tuple[int | str, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class Spec(BaseModel):
    """Base of every user-facing spec: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
