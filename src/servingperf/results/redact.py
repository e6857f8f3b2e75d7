"""Secrets redaction: bearer tokens and kubeconfig credentials never reach run files, reports or
logs.

Terms. A *secret* is a credential value the tool reads from the environment or from a file: the
token named by an endpoint's ``token_env`` (an environment variable) or ``token_file``, the
Prometheus bearer token named by ``metrics.prometheus.bearer_token_env``, and the
credentials of a kubeconfig (``token``, ``client-key-data``, ``client-certificate-data``,
``password``, and an auth provider's tokens and client secret). A :class:`Redactor` knows the
secret values of one run and replaces every occurrence with ``***``; it also masks well-known
credential *shapes* wherever they appear, known or not: ``Bearer <value>``, the user-info part of a
URL (``https://user:pass@host``), and ``key: value`` / ``key=value`` pairs whose key names a
credential (``token``, ``password``, ``api_key``, ``authorization``, ``client-key-data``...).
Structured data (:meth:`Redactor.json`) is walked: strings are redacted, and the value under a
credential key is masked whole. Names of variables and files (``token_env``, ``token_file``) are
not secrets and are kept, so a reader can tell where a credential came from.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

MASK = "***"

# Keys whose value is a credential, compared lower-case with '-' read as '_'.
SECRET_KEYS = frozenset(
    {
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "bearer_token",
        "api_key",
        "apikey",
        "password",
        "passwd",
        "secret",
        "client_secret",
        "authorization",
        "client_key_data",
        "client_certificate_data",
    }
)
_KEY_ALTERNATION = "|".join(
    sorted({k.replace("_", "[-_]?") for k in SECRET_KEYS}, key=len, reverse=True)
)
_PATTERNS = (
    # Authorization: Bearer <token>, or a bare "Bearer <token>"
    re.compile(r"(?i)(\bbearer\s+)(?!\*\*\*)[A-Za-z0-9._~+/=-]+"),
    # http(s)://user:password@host -> http(s)://***@host
    re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://)(?!\*\*\*@)[^/\s:@]+(?::[^/\s@]*)?(?=@)"),
    # token: value, "password": "value", api_key=value, Authorization: Basic value
    re.compile(
        rf"(?i)(\b(?:{_KEY_ALTERNATION})[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic)\s+)?+)"
        r"(?!\*\*\*)[^\s\"',;&}\]]+"
    ),
)
_KUBECONFIG_USER_KEYS = ("token", "client-key-data", "client-certificate-data", "password")
_AUTH_PROVIDER_KEYS = ("id-token", "refresh-token", "access-token", "client-secret")
_MIN_EMBEDDED = 4  # a secret this short is masked only as a whole value, not inside other text

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)


def _normal(key: str) -> str:
    return key.lower().replace("-", "_")


class Redactor:
    """Masks the known secret values of one run and every credential-shaped string."""

    __slots__ = ("_embedded", "_secrets")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._embedded: tuple[str, ...] = ()  # masked inside text too; longest first
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        """Know one more secret value (and its base64 form, as kubeconfigs and headers hold it)."""
        value = secret.strip()
        if not value:
            return
        self._secrets.add(value)
        if value != secret:
            self._secrets.add(secret)
        if len(value) >= _MIN_EMBEDDED:
            self._secrets.add(base64.b64encode(value.encode()).decode())
        # Longest first: a secret that contains another must go as a whole.
        long_enough = (s for s in self._secrets if len(s) >= _MIN_EMBEDDED)
        self._embedded = tuple(sorted(long_enough, key=len, reverse=True))

    @property
    def known(self) -> int:
        """How many secret values (and encodings) are known."""
        return len(self._secrets)

    def text(self, value: str) -> str:
        """``value`` with every known secret and credential shape masked."""
        if value in self._secrets:
            return MASK
        for secret in self._embedded:
            if secret in value:
                value = value.replace(secret, MASK)
        for pattern in _PATTERNS:
            value = pattern.sub(lambda m: m.group(1) + MASK, value)
        return value

    def json(self, value: T) -> T:
        """A copy of JSON-like ``value`` with strings redacted and credential keys' values masked."""
        return self._walk(value)  # type: ignore[no-any-return]

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            out: dict[Any, Any] = {}
            for key, item in value.items():
                if isinstance(key, str) and _normal(key) in SECRET_KEYS and item not in (None, ""):
                    out[key] = MASK
                else:
                    out[key] = self._walk(item)
            return out
        if isinstance(value, list | tuple):
            return [self._walk(item) for item in value]
        return value

    def error(self, exc: E) -> E:
        """``exc`` itself when its message holds no secret, else a new one of its type with the
        message redacted and no link to the original (so no traceback can print the secret)."""
        message = str(exc)
        redacted = self.text(message)
        if redacted == message:
            return exc
        try:
            clean = type(exc)(redacted)
        except TypeError:  # an exception type with another signature: keep the type's meaning
            return exc
        clean.__cause__ = None
        clean.__suppress_context__ = True
        return clean

    # --- where a run's secrets come from -------------------------------------------------------

    @classmethod
    def for_scenario(
        cls,
        config: Mapping[str, Any],
        base_dir: Path,
        environ: Mapping[str, str] | None = None,
    ) -> Redactor:
        """The secrets a scenario (its ``model_dump(mode="json")``) may read: each endpoint's
        token from its environment variable or file, and the credentials of the kubeconfig the
        platform uses (``platform.kubeconfig``, else ``$KUBECONFIG``, else ``~/.kube/config``,
        when the platform is Kubernetes). Unreadable sources are skipped: reading them is the
        platform's business, and its error says why."""
        env = os.environ if environ is None else environ
        redactor = cls()
        models = config.get("models")
        for model in models if isinstance(models, list) else ():
            endpoint = model.get("endpoint") if isinstance(model, Mapping) else None
            if not isinstance(endpoint, Mapping):
                continue
            name = endpoint.get("token_env")
            if isinstance(name, str) and env.get(name):
                redactor.add(env[name])
            path = endpoint.get("token_file")
            if isinstance(path, str):
                with contextlib.suppress(OSError, UnicodeDecodeError):
                    redactor.add((base_dir / path).expanduser().read_text())
        metrics = config.get("metrics")
        prometheus = metrics.get("prometheus") if isinstance(metrics, Mapping) else None
        if isinstance(prometheus, Mapping):
            name = prometheus.get("bearer_token_env")
            if isinstance(name, str) and env.get(name):
                redactor.add(env[name])
        platform = config.get("platform")
        if isinstance(platform, Mapping) and platform.get("kind") == "kserve":
            path = platform.get("kubeconfig")
            for candidate in _kubeconfig_paths(path if isinstance(path, str) else None, env):
                with contextlib.suppress(OSError, UnicodeDecodeError):
                    redactor.add_kubeconfig(candidate.read_text())
        return redactor

    def add_kubeconfig(self, text: str) -> None:
        """Know every credential of a kubeconfig file's ``users`` (and the decoded form of the
        base64 ``*-data`` fields); a file that is not YAML adds nothing."""
        try:
            data = yaml.safe_load(text)
        except (yaml.YAMLError, RecursionError):
            return
        users = data.get("users") if isinstance(data, dict) else None
        for entry in users if isinstance(users, list) else ():
            user = entry.get("user") if isinstance(entry, dict) else None
            if not isinstance(user, dict):
                continue
            for key in _KUBECONFIG_USER_KEYS:
                self._add_value(user.get(key), decode=key.endswith("-data"))
            provider = user.get("auth-provider")
            settings = provider.get("config") if isinstance(provider, dict) else None
            if isinstance(settings, dict):
                for key in _AUTH_PROVIDER_KEYS:
                    self._add_value(settings.get(key), decode=False)

    def _add_value(self, value: object, *, decode: bool) -> None:
        if not isinstance(value, str) or not value.strip():
            return
        self.add(value)
        if decode:
            with contextlib.suppress(binascii.Error, ValueError):
                decoded = base64.b64decode(value, validate=True).decode("utf-8")
                for line in decoded.splitlines():
                    # PEM bodies: every base64 line is secret, the BEGIN/END lines are not
                    if line.strip() and not line.startswith("-----"):
                        self.add(line)


def _kubeconfig_paths(given: str | None, env: Mapping[str, str]) -> list[Path]:
    if given:
        return [Path(given).expanduser()]
    listed = env.get("KUBECONFIG")
    if listed:
        return [Path(p).expanduser() for p in listed.split(os.pathsep) if p]
    return [Path("~/.kube/config").expanduser()]
