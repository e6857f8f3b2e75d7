"""Conversations: the sessions multi-turn chat load replays, from a file or synthetic.

Terms. A :class:`Conversation` is an optional system prompt and the *user turns* of one session,
in order. Only the user turns are kept: when the load runs a session, the history it sends with
each turn holds the server's own earlier answers (what a chat client does), never the answers a
dataset recorded.

A JSONL file holds one conversation per line, in one of the shapes exports use:

- ShareGPT: ``{"conversations": [{"from": "human", "value": "..."}, {"from": "gpt", ...}]}``
  (``from``: ``system``, ``human`` / ``user``, ``gpt`` / ``assistant`` / ``chatgpt`` / ``bing``);
- OpenAI: ``{"messages": [{"role": "user", "content": "..."}, ...]}`` (also under ``turns``).

A line without a user turn is an error naming it; other keys are ignored. Synthetic sessions cut
their user turns from a :class:`~servingperf.datasets.word_pool.WordPool`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servingperf.datasets.word_pool import DEFAULT_POOL_WORDS, WordPool
from servingperf.errors import ConfigError

USER_ROLES = frozenset({"user", "human"})
ASSISTANT_ROLES = frozenset({"assistant", "gpt", "chatgpt", "bing", "bard", "model"})
SYSTEM_ROLES = frozenset({"system"})
MAX_TURN_BYTES = 1_000_000


@dataclass(frozen=True, slots=True)
class Conversation:
    """One session: ``index`` is its line (0-based, blank lines not counted) or synthetic number."""

    index: int
    system_prompt: str | None
    user_turns: tuple[str, ...]


def read_conversations(path: Path, max_turns: int | None = None) -> tuple[Conversation, ...]:
    """The conversations of the JSONL file at ``path``, each cut to ``max_turns`` user turns."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except OSError as exc:
        raise ConfigError(
            f"conversations file {path}: cannot be read: {exc.strerror or exc}"
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"conversations file {path}: not UTF-8 text ({exc.reason})") from exc
    conversations: list[Conversation] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise ConfigError(f"{where}: not JSON ({exc})") from None
        conversation = _conversation(obj, len(conversations), where)
        if max_turns is not None:
            conversation = Conversation(
                conversation.index, conversation.system_prompt, conversation.user_turns[:max_turns]
            )
        conversations.append(conversation)
    if not conversations:
        raise ConfigError(f"conversations file {path}: no conversations (empty or blank lines)")
    return tuple(conversations)


def _conversation(obj: Any, index: int, where: str) -> Conversation:
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    key = next((k for k in ("conversations", "messages", "turns") if k in obj), None)
    if key is None:
        raise ConfigError(f"{where}: no 'conversations', 'messages' or 'turns' list")
    turns = obj[key]
    if not isinstance(turns, list):
        raise ConfigError(f"{where}: {key!r} must be a list of turns")
    system: str | None = None
    users: list[str] = []
    for position, turn in enumerate(turns):
        role, text = _turn(turn, f"{where}: {key}[{position}]")
        if role in SYSTEM_ROLES:
            system = system or (text or None)
        elif role in USER_ROLES:
            users.append(text)
        elif role not in ASSISTANT_ROLES:
            raise ConfigError(f"{where}: {key}[{position}]: unknown role {role!r}")
    if not users:
        raise ConfigError(f"{where}: the conversation has no user turn")
    return Conversation(index, system, tuple(users))


def _turn(turn: Any, where: str) -> tuple[str, str]:
    if not isinstance(turn, dict):
        raise ConfigError(f"{where}: a turn must be an object")
    role = turn.get("from", turn.get("role"))
    text = turn.get("value", turn.get("content"))
    if not isinstance(role, str) or not isinstance(text, str):
        raise ConfigError(f"{where}: a turn needs 'from'/'role' and 'value'/'content' strings")
    if len(text.encode("utf-8")) > MAX_TURN_BYTES:
        raise ConfigError(f"{where}: a turn longer than {MAX_TURN_BYTES} bytes")
    return role.strip().lower(), text


def synthetic_conversations(
    sessions: int, turns: int, tokens_per_turn: int, seed: int
) -> tuple[Conversation, ...]:
    """``sessions`` sessions of ``turns`` user turns of ``tokens_per_turn`` words, all distinct."""
    words = sessions * turns * tokens_per_turn
    pool = WordPool(max(DEFAULT_POOL_WORDS // 10, words), seed)
    return tuple(
        Conversation(
            index=s,
            system_prompt=None,
            user_turns=tuple(
                pool.text((s * turns + t) * tokens_per_turn, tokens_per_turn) for t in range(turns)
            ),
        )
        for s in range(sessions)
    )
