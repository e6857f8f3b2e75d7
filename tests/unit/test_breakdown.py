"""Per-adapter and per-turn figures of a window (#18): groups by the model a request named and
by its conversation turn, on hand-made records."""

from __future__ import annotations

import pytest

from servingperf.analysis.summary import summarize_window
from servingperf.results.rundir import PhaseWindow
from tests.fakes.records import record, table

WINDOW = PhaseWindow("m", "load", 0.0, 0.0, 10.0, 10.0)


def _ok(i: int, model: str, ttft: float, turn: int | None = None) -> object:
    return record(
        request_id=f"r{i}",
        model=model,
        t_sent_s=1.0,
        t_first_token_s=1.0 + ttft,
        t_first_content_s=1.0 + ttft,
        t_end_s=2.0,
        output_tokens=10,
        turn=turn,
        session="s" if turn is not None else None,
    )


def test_requests_naming_several_models_are_broken_down_by_model() -> None:
    rows = [_ok(i, "lora-a", 0.1) for i in range(3)] + [_ok(9, "lora-b", 0.4)]
    summary = summarize_window(table(*rows), WINDOW, None)
    by_model = summary["by_model"]
    assert list(by_model) == ["lora-a", "lora-b"]
    assert by_model["lora-a"]["n"] == 3 and by_model["lora-b"]["n"] == 1
    assert by_model["lora-a"]["output_tps"] == pytest.approx(3.0)  # 30 tokens over 10 s
    assert by_model["lora-b"]["stats"]["ttft_s"]["p50"] == pytest.approx(0.4)
    assert "by_turn" not in summary


def test_one_model_and_no_turns_add_no_breakdown() -> None:
    summary = summarize_window(table(_ok(0, "m", 0.1), _ok(1, "m", 0.2)), WINDOW, None)
    assert "by_model" not in summary and "by_turn" not in summary


def test_conversation_turns_are_broken_down_in_turn_order() -> None:
    rows = [_ok(i, "m", 0.1 * (t + 1), turn=t) for i, t in enumerate([0, 1, 2, 10, 0, 1])]
    by_turn = summarize_window(table(*rows), WINDOW, None)["by_turn"]
    assert list(by_turn) == ["0", "1", "2", "10"]
    assert by_turn["0"]["n"] == 2
    assert by_turn["10"]["stats"]["ttft_s"]["p50"] == pytest.approx(1.1)
