"""Resolve what a protocol client needs for an instance: URL, model id, TLS and credentials.

The model id is the instance's own when its platform set one (``Instance.model_id``: a KServe
runtime serving under the InferenceService's name), else the scenario's. ``Target.model`` is then
the one id to put in requests too (the request factories take it from the target).
Credentials come from the environment or a file named in the scenario, never from the scenario
itself, and only the redacted target is ever written down. Files named in the scenario (token and
CA files) are relative to the scenario file's folder. A model's tokenizer (``tokens.tokenizer``)
is a local file, resolved from the scenario's folder and loaded once by :func:`check_tokenizers`
before anything is deployed, so a wrong one is bad input (exit 2), never a failed deployment.
"""

from __future__ import annotations

import os
from pathlib import Path

from servingperf.errors import ConfigError
from servingperf.model.specs import LoadSpec, ModelSpec, ScenarioSpec
from servingperf.model.target import Target
from servingperf.platforms.base import Instance
from servingperf.protocols.token_counter import load_counter, tokenizer_file


def read_token(model: ModelSpec, base_dir: Path) -> str | None:
    endpoint = model.endpoint
    if endpoint is None:
        return None
    if endpoint.token_env:
        value = os.environ.get(endpoint.token_env)
        if not value:
            raise ConfigError(
                f"model {model.name!r}: environment variable {endpoint.token_env} is not set"
            )
        return value.strip()
    if endpoint.token_file:
        path = (base_dir / endpoint.token_file).expanduser()
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"model {model.name!r}: cannot read token_file {path}: {exc}"
            ) from exc
    return None


def tokenizer_path(model: ModelSpec, base_dir: Path) -> str | None:
    """The resolved ``tokenizer.json`` of ``model``, or None; ConfigError naming the field."""
    raw = model.tokens.tokenizer
    if raw is None:
        return None
    try:
        return str(tokenizer_file(raw, base_dir))
    except ConfigError as exc:
        raise ConfigError(f"model {model.name!r}: tokens.tokenizer {exc}") from exc


def check_tokenizers(spec: ScenarioSpec, base_dir: Path) -> None:
    """Load every model's tokenizer once: ConfigError (naming the model) when one is missing,
    unreadable, a hub name, or the ``tokenizers`` package is not installed."""
    for model in spec.models:
        path = tokenizer_path(model, base_dir)
        if path is None:
            continue
        try:
            load_counter(path)
        except ConfigError as exc:
            raise ConfigError(f"model {model.name!r}: tokens.tokenizer: {exc}") from exc


def _scenario_path(path: str | None, base_dir: Path) -> str | None:
    """A file named in the scenario, relative to the scenario's folder (as ``token_file`` is)."""
    return None if path is None else str(base_dir / Path(path).expanduser())


def target_for(instance: Instance, model: ModelSpec, load: LoadSpec, base_dir: Path) -> Target:
    url = instance.grpc_url if model.protocol.value.endswith("-grpc") else instance.url
    if url is None:
        raise ConfigError(
            f"instance {instance.request.name!r} has no endpoint for {model.protocol}"
        )
    endpoint = model.endpoint
    return Target(
        url=url,
        model=instance.model_id or model.request_model,
        protocol=model.protocol,
        request_timeout_s=load.request_timeout_s,
        tls_insecure=(endpoint.tls_insecure if endpoint else False) or instance.tls_insecure,
        ca_file=_scenario_path(endpoint.ca_file if endpoint else None, base_dir)
        or instance.ca_file,
        token=read_token(model, base_dir),
        host_header=(endpoint.host_header if endpoint else None) or instance.host_header,
        tokenizer=tokenizer_path(model, base_dir),
        chunk_usage=model.tokens.chunk_usage,
        token_ids=model.tokens.token_ids,
    )
