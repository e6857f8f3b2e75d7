"""Requests of multi-turn conversations: each closed-loop user runs whole sessions.

Terms. A user's *session* replays one :class:`~servingperf.datasets.conversations.Conversation`:
turn t sends the system prompt (if any), the session's *history* (every earlier user turn and the
server's own answer to it) and user turn t. A session ends after its last turn, or at its first
failed turn (its history would be incomplete); the user then starts its next session at once.
Conversations are drawn at random per user (seeded by ``load.seed`` and the user), with
replacement. Between a turn's answer and the next turn the user thinks for ``think_time_s``.
Records carry the session id (``w<worker>u<user>s<n>``) and the turn (0-based).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from servingperf.datasets.conversations import (
    Conversation,
    read_conversations,
    synthetic_conversations,
)
from servingperf.datasets.select import resolve_path
from servingperf.errors import ConfigError
from servingperf.model.records import (
    Exchange,
    GenerationRequest,
    RequestContext,
    RequestStatus,
    TokenSource,
)
from servingperf.model.specs import DatasetSpec, OutputLength
from servingperf.scenarios.request_origin import RequestOrigin


def load_conversations(dataset: DatasetSpec, base_dir: Path) -> tuple[Conversation, ...]:
    spec = dataset.conversations
    if spec is None:  # the synthetic defaults
        from servingperf.model.workload_spec import ConversationsSpec

        spec = ConversationsSpec()
    if dataset.output_tokens is OutputLength.DATASET:
        raise ConfigError(
            "dataset: conversations have no output length per turn; set 'output_tokens'"
        )
    if spec.path is not None:
        return read_conversations(resolve_path(spec.path, base_dir), spec.max_turns)
    return synthetic_conversations(spec.sessions, spec.turns, spec.tokens_per_turn, dataset.seed)


@dataclass(slots=True)
class _Session:
    number: int
    conversation: Conversation
    turn: int = 0
    history: list[tuple[str, str]] = field(default_factory=list)


class ConversationRequests:
    """The request factory and :class:`~servingperf.load.sources.Conversational` source of
    conversation sessions (see the module docstring)."""

    def __init__(
        self,
        conversations: Sequence[Conversation],
        dataset: DatasetSpec,
        origin: RequestOrigin,
    ) -> None:
        if not conversations:
            raise ConfigError("conversations: none to run")
        spec = dataset.conversations
        self._think_s = spec.think_time_s if spec is not None else 0.0
        self._conversations = tuple(conversations)
        fixed = dataset.output_tokens
        self._max_tokens = None if fixed is OutputLength.DATASET else fixed
        self._instance, self._model_id, self._phase = origin.instance, origin.model_id, origin.phase
        self._load, self._worker, self._adapters = origin.load, origin.worker, origin.adapters
        self._count_from: TokenSource = origin.output_tokens_from
        self._sessions: dict[int, _Session] = {}
        self._started: dict[int, int] = {}
        self._rngs: dict[int, random.Random] = {}
        self._models: dict[int, str] = {}

    def _next_session(self, user: int) -> _Session:
        rng = self._rngs.get(user)
        if rng is None:
            rng = self._rngs[user] = random.Random(
                f"servingperf-conversations:{self._load.seed}:{user}"
            )
        number = self._started.get(user, 0)
        self._started[user] = number + 1
        session = _Session(number, rng.choice(self._conversations))
        self._sessions[user] = session
        if self._adapters is not None:  # one adapter per session: its history is that adapter's
            self._models[user] = self._adapters.choose(user)
        return session

    def __call__(self, user: int, sequence: int) -> tuple[GenerationRequest, RequestContext]:
        session = self._sessions.get(user) or self._next_session(user)
        conversation = session.conversation
        turn = conversation.user_turns[session.turn]
        messages = [("system", conversation.system_prompt)] if conversation.system_prompt else []
        messages += session.history
        messages.append(("user", turn))
        model = self._models.get(user, self._model_id)
        force = self._load.force_output_length
        request = GenerationRequest(
            request_id=f"{self._instance}:{self._phase}:w{self._worker}:u{user}:{sequence}",
            model=model,
            prompt=turn,
            max_tokens=self._max_tokens,
            min_tokens=self._max_tokens if force else None,
            ignore_eos=force,
            stream=self._load.stream,
            messages=tuple(messages),
            keep_text=True,
        )
        context = RequestContext(
            instance=self._instance,
            model=model,
            phase=self._phase,
            worker=self._worker,
            user=user,
            prompt_index=conversation.index,
            requested_output_tokens=self._max_tokens,
            output_tokens_from=self._count_from,
            session=f"w{self._worker}u{user}s{session.number}",
            turn=session.turn,
        )
        return request, context

    def answered(self, user: int, exchange: Exchange) -> float:
        """Add the turn and the server's answer to the history; end the session after its last
        turn or a failed one. The think time before the next turn (none before a new session)."""
        session = self._sessions.get(user)
        if session is None:
            return 0.0
        conversation = session.conversation
        if exchange.status is not RequestStatus.OK:
            del self._sessions[user]
            return 0.0
        answer = "".join(exchange.text_parts or ())
        session.history += [("user", conversation.user_turns[session.turn]), ("assistant", answer)]
        session.turn += 1
        if session.turn >= len(conversation.user_turns):
            del self._sessions[user]
            return 0.0
        return self._think_s
