"""Run validity: may the figures of a run be trusted, or was the client (or its clock) the limit?

Terms. A verdict is ``valid``, ``suspect`` (judge it, but read the reasons) or ``invalid`` (the
figures do not describe the load the scenario asked for: the gate refuses to judge it unless told
to). It is drawn per (instance, phase) window, the run taking its worst window's, from measured
evidence only:

- *client lag*: the share of issued requests sent more than ``BEHIND_S`` after their scheduled
  time (an open-loop schedule not kept is coordinated omission; a closed-loop user sent late
  means the client, not the server, paced it), and open-loop arrivals never sent (*unsent*);
- the load processes' own health (``load_health.json``): CPU share near a whole core (the
  open-loop dispatcher's wait spin left out: :mod:`servingperf.load.health`), event-loop
  lag (chunks time-stamped late by that much), clock drift (wall clock stepped or suspended);
- *clock trouble* in the records: a negative TTFT, E2E or ITL (a clock that went backwards);
- cut and error shares, and whether a load phase measured anything at all (many-model validation
  queries are not a load: they have no load health, and an instance that never answered is a
  deployment failure, reported as such);
- the start-of-run *calibration* (``environment.client_calibration``): the CPU the phase's requests
  and tokens would cost at the calibrated per-request and per-token costs, as a share of what the
  load processes had: "the client used 35 % of what it can issue" (*headroom* is the rest);
- *scrape gaps* of server metrics, when the run has them (``summary.server_metrics.gaps``).

Thresholds are constants below, stated in the README; each reason quotes the measured value.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

BEHIND_S = 0.010  # a request sent later than this after its scheduled time fell behind
SUSPECT_BEHIND_SHARE = 0.01
MIN_BEHIND = 5  # fewer late sends than this are scheduler noise, not a pattern
INVALID_BEHIND_SHARE = 0.10
INVALID_UNSENT_SHARE = 0.05
SUSPECT_CPU_SHARE = 0.90
SUSPECT_LOOP_LAG_S = 0.100
INVALID_LOOP_LAG_S = 0.500
SUSPECT_CLOCK_DRIFT_S = 0.5
SUSPECT_CUT_SHARE = 0.30
SUSPECT_ERROR_SHARE = 0.05
SUSPECT_USAGE = 0.80
SUSPECT_SCRAPE_GAP_S = 5.0


class Verdict(enum.IntEnum):
    VALID = 0
    SUSPECT = 1
    INVALID = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(slots=True)
class WindowValidity:
    key: str
    verdict: Verdict = Verdict.VALID
    reasons: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)

    def flag(self, level: Verdict, reason: str) -> None:
        self.verdict = max(self.verdict, level)
        self.reasons.append(f"{level.label}: {reason}")

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict.label, "reasons": self.reasons, "evidence": self.evidence}


def _share(part: float, whole: float) -> float:
    return part / whole if whole > 0 else 0.0


def _processes(
    health: Sequence[Mapping[str, Any]], key: tuple[str, str]
) -> list[Mapping[str, Any]]:
    found: list[Mapping[str, Any]] = []
    for entry in health:
        if (entry.get("instance"), entry.get("phase")) == key:
            found += [p for p in entry.get("processes", []) if isinstance(p, Mapping)]
    return found


def window_validity(
    key: str,
    entry: Mapping[str, Any],
    processes: Sequence[Mapping[str, Any]],
    calibration: Mapping[str, Any] | None,
) -> WindowValidity:
    """The verdict of one summary window (``summary.json`` instances entry) given its load
    processes' health and the run's calibration."""
    result = WindowValidity(key)
    counts = entry.get("counts", {})
    issued = int(counts.get("issued", 0))
    behind = int(counts.get("behind", 0))
    unsent = sum(int(p.get("unsent", 0)) for p in processes)
    evidence = result.evidence
    evidence.update(issued=issued, behind=behind, unsent=unsent)
    if int(counts.get("measured", 0)) == 0 and processes:  # a load phase (not validation queries)
        result.flag(Verdict.INVALID, "no request was measured (none ok inside the window)")
    behind_share = _share(behind, issued)
    evidence["behind_share"] = behind_share
    if behind_share > INVALID_BEHIND_SHARE:
        result.flag(
            Verdict.INVALID,
            f"{behind_share:.0%} of requests were sent more than {BEHIND_S * 1000:.0f} ms after"
            " their scheduled time: the client could not keep the schedule",
        )
    elif behind_share > SUSPECT_BEHIND_SHARE and behind >= MIN_BEHIND:
        result.flag(
            Verdict.SUSPECT,
            f"{behind_share:.1%} of requests were sent more than {BEHIND_S * 1000:.0f} ms late",
        )
    unsent_share = _share(unsent, issued + unsent)
    evidence["unsent_share"] = unsent_share
    if unsent_share > INVALID_UNSENT_SHARE:
        result.flag(
            Verdict.INVALID,
            f"{unsent} open-loop arrivals ({unsent_share:.0%}) were never sent before the phase"
            " ended (coordinated omission)",
        )
    elif unsent:
        result.flag(Verdict.SUSPECT, f"{unsent} open-loop arrivals were never sent")
    _health(result, processes)
    _clock(result, entry)
    cut_share = _share(int(counts.get("cut", 0)), issued)
    error_share = _share(int(counts.get("error", 0)), issued)
    evidence.update(cut_share=cut_share, error_share=error_share)
    if cut_share > SUSPECT_CUT_SHARE:
        result.flag(
            Verdict.SUSPECT,
            f"{cut_share:.0%} of issued requests were cut at the end: the window is short for"
            " the requests' length",
        )
    if error_share > SUSPECT_ERROR_SHARE:
        result.flag(Verdict.SUSPECT, f"{error_share:.0%} of issued requests failed")
    _usage(result, entry, processes, calibration)
    gaps = (
        entry.get("server_metrics", {}).get("max_scrape_gap_s")
        if isinstance(entry.get("server_metrics"), Mapping)
        else None
    )
    if isinstance(gaps, int | float):
        evidence["max_scrape_gap_s"] = float(gaps)
        if gaps > SUSPECT_SCRAPE_GAP_S:
            result.flag(Verdict.SUSPECT, f"server metrics have a {gaps:.1f} s gap between scrapes")
    return result


def _health(result: WindowValidity, processes: Sequence[Mapping[str, Any]]) -> None:
    evidence = result.evidence
    evidence["processes"] = len(processes)
    if not processes:
        evidence["load_health"] = "not recorded"
        return
    shares = [  # the CPU the process worked: less the open-loop dispatcher's wait spin
        max(0.0, float(p.get("cpu_s", 0)) - float(p.get("wait_spin_s", 0.0))) / float(p["wall_s"])
        for p in processes
        if p.get("wall_s")
    ]
    lags = [float(p["loop_lag_p99_s"]) for p in processes if p.get("loop_lag_p99_s") is not None]
    drifts = [abs(float(p.get("clock_drift_s", 0.0))) for p in processes]
    evidence.update(
        cpu_share_max=max(shares, default=0.0),
        loop_lag_p99_max_s=max(lags, default=0.0),
        clock_drift_max_s=max(drifts, default=0.0),
    )
    if shares and max(shares) >= SUSPECT_CPU_SHARE:
        result.flag(
            Verdict.SUSPECT,
            f"a load process used {max(shares):.0%} of a core: the client may have been the limit",
        )
    if lags and max(lags) > INVALID_LOOP_LAG_S:
        result.flag(
            Verdict.INVALID,
            f"event-loop lag p99 {max(lags) * 1000:.0f} ms: chunk times are late by that much",
        )
    elif lags and max(lags) > SUSPECT_LOOP_LAG_S:
        result.flag(Verdict.SUSPECT, f"event-loop lag p99 {max(lags) * 1000:.0f} ms")
    if drifts and max(drifts) > SUSPECT_CLOCK_DRIFT_S:
        result.flag(
            Verdict.SUSPECT,
            f"the wall clock drifted {max(drifts):.2f} s from the monotonic clock (stepped or"
            " suspended): wall-clock times of the run are off",
        )


def _clock(result: WindowValidity, entry: Mapping[str, Any]) -> None:
    stats = entry.get("stats", {})
    for name in ("ttft_s", "e2e_s", "itl_s", "tpot_s"):
        figure = stats.get(name)
        low = figure.get("min") if isinstance(figure, Mapping) else None
        if isinstance(low, int | float) and low < 0:
            result.flag(Verdict.INVALID, f"negative {name} ({low:.4g} s): a clock went backwards")


def _usage(
    result: WindowValidity,
    entry: Mapping[str, Any],
    processes: Sequence[Mapping[str, Any]],
    calibration: Mapping[str, Any] | None,
) -> None:
    evidence = result.evidence
    if not calibration or calibration.get("status") != "ok" or not processes:
        reason = (calibration or {}).get("reason", "no calibration") if calibration else None
        evidence["client_usage"] = None
        evidence["calibration"] = reason or "no calibration"
        return
    wall = sum(float(p.get("wall_s", 0.0)) for p in processes)
    counts = entry.get("counts", {})
    tokens = entry.get("stats", {}).get("output_tokens")
    mean_tokens = float(tokens["mean"]) if isinstance(tokens, Mapping) else 0.0
    issued = int(counts.get("issued", 0))
    cost = issued * (
        float(calibration["request_cpu_s"]) + float(calibration["token_cpu_s"]) * mean_tokens
    )
    usage = _share(cost, wall)
    evidence["client_usage"] = usage
    evidence["headroom"] = max(0.0, 1.0 - usage)
    if usage > SUSPECT_USAGE:
        result.flag(
            Verdict.SUSPECT,
            f"the client used {usage:.0%} of what it can issue (calibrated ceiling)",
        )


def run_validity(
    summary: Mapping[str, Any],
    health: Sequence[Mapping[str, Any]],
    calibration: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The run's validity for ``summary.json`` and the store: its worst window's verdict, every
    window's reasons (prefixed with the window), and each window's evidence."""
    windows: dict[str, Any] = {}
    worst = Verdict.VALID
    reasons: list[str] = []
    for key, entry in summary.get("instances", {}).items():
        instance, phase = entry.get("instance", key), entry.get("phase", "load")
        judged = window_validity(key, entry, _processes(health, (instance, phase)), calibration)
        windows[key] = judged.to_json()
        worst = max(worst, judged.verdict)
        reasons += [f"{key}: {reason}" for reason in judged.reasons]
    if not windows and summary.get("kind") != "many-model":  # many-model: deployments, no load
        worst = Verdict.INVALID
        reasons.append("no load window: nothing was measured")
    usage = [w["evidence"].get("client_usage") for w in windows.values()]
    known = [u for u in usage if isinstance(u, float)]
    return {
        "verdict": worst.label,
        "reasons": reasons,
        "client_usage_max": max(known) if known else None,
        "calibration": dict(calibration) if calibration else None,
        "windows": windows,
    }


def is_invalid(validity: Mapping[str, Any] | None) -> bool:
    return bool(validity) and validity is not None and validity.get("verdict") == "invalid"
