"""Change points in a KPI's release history: E-divisive with a permutation significance test.

Terms. A *history* is one KPI's value per release (or run), in release order. A *change point* at
index ``i`` means the values from ``i`` on behave differently from those before; its *segment
before* and *segment after* run to the neighbouring change points. *Magnitude* is the relative
change of the segment means, ``mean_after / mean_before - 1``; its *direction* is good or bad from
the metric's ``better``.

Algorithm: E-divisive (Matteson & James 2014, "A Nonparametric Approach for Multiple Change Point
Analysis of Multivariate Data"). Each segment's best split ``(tau, kappa)`` maximises the energy
divergence ``Q = m n / (m + n) * E`` between ``x[s:tau]`` and ``x[tau:kappa]``; the best split over
all segments is kept when a permutation test (values shuffled within the current segments, seeded,
a bounded number of permutations) finds it significant; this repeats until a split is not. Then
change points whose magnitude is below ``min_magnitude`` are merged away, weakest first (as in
Otava's merge step), so a result is both significant and large enough, like the gate's verdicts.

Why our own ~150 lines rather than a library (DESIGN.md §6 asks for a maintained one): the
``apache-otava`` distribution pins ``numpy==2.2.0`` and ``scipy<1.17`` (we run numpy 2.4 and scipy
1.17) and pulls Google Cloud, Slack and PostgreSQL clients for its CLI; a pyproject cannot depend on
it without those. Its analysis module also judges significance with a Student t-test on segment
means, which calls ``[1.0, 1.0, 1.3]`` a certain change (zero variance gives p = 0): a false alarm
on exactly the short histories a release series has. MongoDB's signal-processing-algorithms pins
Python < 3.12 and numpy < 2; ruptures has no significance test. A permutation test cannot call a
change significant unless the history is long enough for the observed split to be rare among
shuffles: at the default ``alpha = 0.01`` a clean step needs about 12 values (a 20% step in 2%
noise is found in 9 of 10 such histories, in 4 of 10 at 10 values, almost never at 8), so short
histories give no change point by construction rather than by a tuned threshold. The latest
release is judged by the gate, on per-request samples; change points are the long view. The
divergence ``Q`` was checked against Otava 0.8.0's ``PairDistanceCalculator`` (same best split and
value on 300 random series); only the significance test and the merge differ.
"""

from __future__ import annotations

import enum
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from servingperf.model.metrics import Better, MetricDef

FloatArray = npt.NDArray[np.float64]
Index = npt.NDArray[np.int_] | int

# A history longer than this is refused: the pairwise-distance matrix is O(n^2) in memory and each
# permutation costs O(n^2) (about 1 s per split tested at 200 values); pass the latest releases.
MAX_HISTORY = 200

# Relative tolerance under which a shuffled split's Q counts as equal to the observed one: the same
# arrangement summed in another order differs in the last bits, and a tie must count as extreme.
_TIE = 1e-9


class Direction(enum.StrEnum):
    GOOD = "good"
    BAD = "bad"


@dataclass(frozen=True, slots=True)
class ChangePoint:
    """A change at ``index`` (the first value of the new regime) with its evidence.

    ``p_value`` is the permutation test's, at the time the split was accepted.
    """

    index: int
    label: str | None
    p_value: float
    mean_before: float
    mean_after: float
    magnitude: float
    direction: Direction


@dataclass(frozen=True, slots=True)
class _Split:
    tau: int  # absolute index of the first value after the split
    q: float


def _prefix(d: FloatArray) -> FloatArray:
    """2-D prefix sums with a zero first row and column: block sums in O(1)."""
    p = np.zeros((d.shape[0] + 1, d.shape[1] + 1), dtype=np.float64)
    p[1:, 1:] = d.cumsum(axis=0).cumsum(axis=1)
    return p


def _best_split(p: FloatArray, start: int, end: int, min_size: int) -> _Split | None:
    """The ``(tau, kappa)`` maximising Q within ``[start, end)``; None if no split is allowed.

    With the distance matrix's prefix sums ``p`` every block sum is O(1), so all ``(tau, kappa)``
    pairs are evaluated at once in O(L^2) for a segment of length L.
    """
    length = end - start
    if length < 2 * min_size:
        return None
    t = np.arange(start + min_size, end - min_size + 1)[:, None]  # tau, absolute
    k = np.arange(start + 2 * min_size, end + 1)[None, :]  # kappa (exclusive end), absolute
    n = (t - start).astype(np.float64)
    m = (k - t).astype(np.float64)
    valid = m >= min_size
    tt, kk = np.broadcast_arrays(t, k)

    def block(r0: Index, r1: Index, c0: Index, c1: Index) -> FloatArray:
        """Sum of ``d[r0:r1, c0:c1]``, elementwise over the (tau, kappa) grid."""
        return np.asarray(p[r1, c1] - p[r0, c1] - p[r1, c0] + p[r0, c0], dtype=np.float64)

    within_x = block(start, tt, start, tt)  # ordered pairs of x: twice the sum over i < j
    within_y = block(tt, kk, tt, kk)
    between = block(start, tt, tt, kk)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_between = between / (n * m)
        mean_x = np.where(n > 1, within_x / (n * (n - 1)), 0.0)
        mean_y = np.where(m > 1, within_y / (m * (m - 1)), 0.0)
        q = (n * m / (n + m)) * (2 * mean_between - mean_x - mean_y)
    q = np.where(valid, q, -np.inf)
    i, j = np.unravel_index(int(np.argmax(q)), q.shape)
    best = float(q[i, j])
    if not math.isfinite(best):
        return None
    return _Split(tau=int(tt[i, j]), q=best)


def _bounds(cuts: Sequence[int], n: int) -> list[tuple[int, int]]:
    edges = [0, *sorted(cuts), n]
    return list(itertools.pairwise(edges))


def _best_over_segments(
    d: FloatArray, segments: Sequence[tuple[int, int]], min_size: int
) -> _Split | None:
    p = _prefix(d)
    splits = [_best_split(p, a, b, min_size) for a, b in segments]
    candidates = [s for s in splits if s is not None]
    return max(candidates, key=lambda s: s.q) if candidates else None


def change_points(
    history: Sequence[float],
    metric: MetricDef,
    *,
    labels: Sequence[str] | None = None,
    alpha: float = 0.01,
    permutations: int = 499,
    min_size: int = 2,
    min_magnitude: float = 0.05,
    seed: int = 0,
) -> list[ChangePoint]:
    """Significant, large-enough change points of ``history``, in index order.

    ``alpha``: significance of each split's permutation test. ``permutations`` bounds the work
    (p-values are multiples of ``1 / (permutations + 1)``). ``min_size``: fewest values on each
    side of a change, so a history shorter than ``2 * min_size`` has none. ``min_magnitude``:
    smallest relative change of segment means that counts (0.05 = 5%, the gate's default
    threshold). ``labels`` (e.g. release names) are copied onto the change points. Deterministic
    for a given ``seed``. Raises ValueError on non-finite values or invalid parameters.
    """
    x = np.asarray(history, dtype=np.float64).ravel()
    if labels is not None and len(labels) != x.size:
        raise ValueError(f"{len(labels)} labels for {x.size} values")
    if not np.all(np.isfinite(x)):
        raise ValueError("history has non-finite values; drop releases without this KPI first")
    if x.size > MAX_HISTORY:
        raise ValueError(f"history of {x.size} values exceeds {MAX_HISTORY}")
    if not 0 < alpha < 1 or permutations < 1 or min_size < 1 or min_magnitude < 0:
        raise ValueError("need 0 < alpha < 1, permutations >= 1, min_size >= 1, min_magnitude >= 0")

    n = x.size
    if n < 2 * min_size:
        return []
    d: FloatArray = np.abs(x[:, None] - x[None, :])
    rng = np.random.default_rng(seed)
    cuts: list[int] = []
    p_values: dict[int, float] = {}
    while True:
        segments = _bounds(cuts, n)
        observed = _best_over_segments(d, segments, min_size)
        if observed is None or observed.q <= 0:
            break
        extreme = 0
        for _ in range(permutations):
            order = np.concatenate([a + rng.permutation(b - a) for a, b in segments])
            shuffled = _best_over_segments(d[np.ix_(order, order)], segments, min_size)
            if shuffled is not None and shuffled.q >= observed.q - _TIE * observed.q:
                extreme += 1
        p = (extreme + 1) / (permutations + 1)
        if p > alpha:
            break
        cuts.append(observed.tau)
        cuts.sort()
        p_values[observed.tau] = p

    # Merge step: drop the weakest change below min_magnitude, then re-measure its neighbours.
    while cuts:
        stats = _magnitudes(x, cuts)
        weakest = min(range(len(cuts)), key=lambda i: abs(stats[i][2]))
        if abs(stats[weakest][2]) >= min_magnitude:
            break
        del cuts[weakest]

    result: list[ChangePoint] = []
    for cut, (before, after, magnitude) in zip(cuts, _magnitudes(x, cuts), strict=True):
        worse = magnitude > 0 if metric.better is Better.LOWER else magnitude < 0
        result.append(
            ChangePoint(
                index=cut,
                label=None if labels is None else labels[cut],
                p_value=p_values[cut],
                mean_before=before,
                mean_after=after,
                magnitude=magnitude,
                direction=Direction.BAD if worse else Direction.GOOD,
            )
        )
    return result


def _magnitudes(x: FloatArray, cuts: Sequence[int]) -> list[tuple[float, float, float]]:
    """(mean before, mean after, relative change) of each cut, between its neighbouring cuts."""
    edges = [0, *cuts, x.size]
    out: list[tuple[float, float, float]] = []
    for i in range(1, len(edges) - 1):
        before = float(np.mean(x[edges[i - 1] : edges[i]]))
        after = float(np.mean(x[edges[i] : edges[i + 1]]))
        out.append((before, after, _relative(before, after)))
    return out


def _relative(before: float, after: float) -> float:
    """``after / before - 1``; a change from 0 is infinite, unless nothing changed."""
    if before == 0:
        return 0.0 if after == 0 else math.inf
    return after / before - 1.0
