"""Secrets redaction: known values, credential shapes, structured data, where secrets come from."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servingperf.errors import ExitCode, TargetError
from servingperf.results.redact import MASK, Redactor

TOKEN = "sk-live-9f8e7d6c5b4a"


def test_known_secret_is_masked_everywhere_in_text() -> None:
    r = Redactor([TOKEN])
    assert r.text(TOKEN) == MASK
    assert r.text(f"HTTP 401: token {TOKEN} rejected; again {TOKEN}") == (
        "HTTP 401: token *** rejected; again ***"
    )
    assert TOKEN not in r.text(base64.b64encode(TOKEN.encode()).decode())
    assert r.text("nothing to hide") == "nothing to hide"


def test_secret_read_with_a_newline_is_masked_with_and_without_it() -> None:
    r = Redactor([TOKEN + "\n"])
    assert r.text(f"x {TOKEN} y") == "x *** y"


def test_short_secret_is_masked_only_as_a_whole_value() -> None:
    r = Redactor(["abc"])
    assert r.text("abc") == MASK
    assert r.text("abcdef") == "abcdef"  # masking 3 letters inside text would mangle it


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer eyJhbGciOi.x.y", "Authorization: Bearer ***"),
        ("bearer abc123", "bearer ***"),
        ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic ***"),
        ("https://alice:s3cret@api.example.com/v1", "https://***@api.example.com/v1"),
        ("http://token@host:8080", "http://***@host:8080"),
        ('{"password": "hunter2", "user": "bob"}', '{"password": "***", "user": "bob"}'),
        ("token: abc.def", "token: ***"),
        ("client-key-data: LS0tLS1CRUdJTg==", "client-key-data: ***"),
        ("GET /x?api_key=12345&page=2", "GET /x?api_key=***&page=2"),
        ("access_token=zzz; path=/", "access_token=***; path=/"),
    ],
)
def test_credential_shapes_are_masked_even_when_unknown(text: str, expected: str) -> None:
    assert Redactor().text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "token_env: MY_TOKEN_VAR",
        "token_file: secrets/token.txt",
        "max_tokens=128 output_tokens: 64",
        "tokens: 12",
        "http://127.0.0.1:8000/v1/models",
        "error_kind: timeout",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert Redactor().text(text) == text


def test_json_walk_masks_credential_keys_and_redacts_strings() -> None:
    r = Redactor([TOKEN])
    config = {
        "models": [
            {
                "name": "m",
                "endpoint": {
                    "url": "https://u:p@h/x",
                    "token_env": "MY_TOKEN",
                    "token_file": None,
                    "host_header": f"via {TOKEN}",
                },
            }
        ],
        "headers": {"Authorization": "Basic Zm9vOmJhcg==", "X-Api-Key": None},
        "kube": {"client-key-data": "abc", "token": ""},
        "numbers": [1, 2.5, True, None],
    }
    out = r.json(config)
    endpoint = out["models"][0]["endpoint"]
    assert endpoint == {
        "url": "https://***@h/x",
        "token_env": "MY_TOKEN",
        "token_file": None,
        "host_header": "via ***",
    }
    assert out["headers"] == {"Authorization": MASK, "X-Api-Key": None}
    assert out["kube"] == {"client-key-data": MASK, "token": ""}
    assert out["numbers"] == [1, 2.5, True, None]
    assert config["models"][0]["endpoint"]["host_header"] == f"via {TOKEN}"  # not mutated


def test_error_keeps_its_type_and_exit_code_but_not_the_secret() -> None:
    r = Redactor([TOKEN])
    clean = TargetError("http://x/v1/models: HTTP 200: fine")
    assert r.error(clean) is clean
    redacted = r.error(TargetError(f"HTTP 401: bad token {TOKEN}"))
    assert isinstance(redacted, TargetError)
    assert redacted.exit_code is ExitCode.TARGET_FAILURE
    assert str(redacted) == "HTTP 401: bad token ***"
    assert redacted.__cause__ is None


PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAsecretkeybody\nQWxsIHRoZSBrZXk=\n"
    "-----END RSA PRIVATE KEY-----\n"
)
KUBECONFIG = f"""\
apiVersion: v1
kind: Config
users:
  - name: admin
    user:
      token: kube-token-0123456789
      client-key-data: {base64.b64encode(PEM.encode()).decode()}
  - name: oidc
    user:
      auth-provider:
        name: oidc
        config: {{id-token: oidc-id-token-value, client-secret: oidc-client-secret}}
  - name: broken
"""


def test_for_scenario_reads_env_token_file_and_kubeconfig(tmp_path: Path) -> None:
    (tmp_path / "token.txt").write_text("file-token-abcdef\n")
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    config = {
        "models": [
            {"name": "a", "endpoint": {"url": "http://h", "token_env": "SP_T"}},
            {"name": "b", "endpoint": {"url": "http://h", "token_file": "token.txt"}},
            {"name": "c", "endpoint": {"url": "http://h", "token_file": "missing.txt"}},
            {"name": "d", "emulator": {"profile": "instant"}},
        ],
        "platform": {"kind": "kserve", "kubeconfig": str(tmp_path / "kubeconfig")},
    }
    r = Redactor.for_scenario(config, tmp_path, environ={"SP_T": "env-token-123456"})
    text = (
        "env-token-123456 file-token-abcdef kube-token-0123456789 MIIEowIBAAKCAQEAsecretkeybody"
        " QWxsIHRoZSBrZXk= oidc-id-token-value oidc-client-secret"
    )
    assert r.text(text) == " ".join([MASK] * 7)
    assert "BEGIN RSA PRIVATE KEY" in r.text(PEM)  # the armour is not secret, the body is
    assert "secretkeybody" not in r.text(PEM)


def test_kubeconfig_from_the_environment_and_unreadable_sources(tmp_path: Path) -> None:
    (tmp_path / "kc").write_text(KUBECONFIG)
    config = {"models": [], "platform": {"kind": "kserve"}}
    env = {"KUBECONFIG": f"{tmp_path / 'nope'}:{tmp_path / 'kc'}"}
    assert MASK in Redactor.for_scenario(config, tmp_path, environ=env).text(
        "kube-token-0123456789"
    )
    (tmp_path / "kc").write_text("{{{ not yaml")
    assert Redactor.for_scenario(config, tmp_path, environ=env).known == 0
    local = {"models": [], "platform": {"kind": "local"}}  # no kubeconfig read for local runs
    assert Redactor.for_scenario(local, tmp_path, environ=env).known == 0


_SECRET_CHARS = st.characters(
    min_codepoint=33, max_codepoint=0x2FFF, blacklist_characters="*", blacklist_categories=("Cs",)
)


@settings(max_examples=150, deadline=None)
@given(
    secret=st.text(_SECRET_CHARS, min_size=4, max_size=40),
    before=st.text(max_size=40),
    after=st.text(max_size=40),
)
def test_a_known_secret_never_survives_in_text(secret: str, before: str, after: str) -> None:
    redacted = Redactor([secret]).text(before + secret + after)
    assert secret.strip() not in redacted


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=10), children, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_json_walk_never_raises_and_keeps_shape(value: object) -> None:
    out = Redactor([TOKEN]).json(value)
    assert type(out) is type(value) or isinstance(value, tuple)
