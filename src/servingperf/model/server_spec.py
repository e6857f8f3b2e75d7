"""A real serving engine as a model instance of the local platform (``models[].server``).

Instead of the embedded emulator, the local platform starts the given command (vLLM's ``vllm
serve``, TGI, a caikit runtime...) as the instance's server process, on loopback, and takes it as
ready when an HTTP GET of ``ready_path`` answers 200. The command and the environment values are
templates: ``{host}`` and ``{port}`` (the address the platform chose for it; the server must
listen there), ``{grpc_port}`` (a second port, for gRPC protocols), ``{model_id}`` (the id
requests carry: serve the model under that name) and ``{instance_dir}`` (the instance's folder in
the run directory, for files the server writes). ``{{`` and ``}}`` are literal braces. The
server's output goes to ``server.log`` in that folder; the platform sets ``PYTHONUNBUFFERED=1``
(unless ``env`` sets it) so that a Python engine's log is current when a failure quotes its end.
"""

from __future__ import annotations

import string
from typing import Self

from pydantic import Field, model_validator

from servingperf.model.spec_base import FieldError, Spec

PLACEHOLDERS = ("host", "port", "grpc_port", "model_id", "instance_dir")


def placeholders_in(template: str) -> set[str]:
    """The placeholder names a template uses; ValueError naming the problem if it is malformed
    or uses a name outside :data:`PLACEHOLDERS`."""
    names: set[str] = set()
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"malformed placeholder: {exc} (write {{{{ and }}}} for braces)") from exc
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in PLACEHOLDERS or spec or conversion:
            raise ValueError(
                f"unknown placeholder {{{name}}}; use {', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
                " (write {{ and }} for literal braces)"
            )
        names.add(name)
    return names


def expand(template: str, values: dict[str, str]) -> str:
    """A template with its placeholders replaced (validated beforehand by the spec)."""
    return template.format_map(values)


class ServerSpec(Spec):
    """A serving engine the local platform starts for one instance (vLLM, TGI, a caikit runtime):
    its command and environment may use {host}, {port}, {grpc_port}, {model_id} and
    {instance_dir}; its output goes to the instance's server.log; see docs/real-engines.md."""

    command: list[str] = Field(
        min_length=1,
        description="program and arguments; must listen on {host}:{port}, e.g. [vllm, serve, ...]",
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="added to the server's environment (placeholders too)"
    )
    ready_path: str = Field(
        default="/health",
        description="ready when GET http://{host}:{port}<ready_path> answers 200, within"
        " platform.ready_timeout_s",
    )

    @model_validator(mode="after")
    def _templates(self) -> Self:
        used: set[str] = set()
        for index, part in enumerate(self.command):
            try:
                used |= placeholders_in(part)
            except ValueError as exc:
                raise FieldError(("command", index), str(exc)) from exc
        for key, value in self.env.items():
            try:
                placeholders_in(value)
            except ValueError as exc:
                raise FieldError(("env", key), str(exc)) from exc
        if "port" not in used:
            raise FieldError(
                ("command",),
                "the command must use {port} (the server has to listen where the platform probes)",
            )
        if not self.ready_path.startswith("/"):
            raise FieldError(("ready_path",), "a path starting with '/', e.g. /health")
        return self

    @property
    def uses_grpc_port(self) -> bool:
        return any("grpc_port" in placeholders_in(part) for part in self.command)
