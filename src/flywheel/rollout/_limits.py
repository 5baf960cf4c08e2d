"""The limits a challenger must stay within: error rate, p99 latency, prediction divergence and
the labelled metric. Each check returns its numbers and, when breached, a sentence saying which
limit and by how much.

The checks are statistical where noise could cause a false rollback: before a stage has its
minimum of requests, the error rate breaches only when an always-valid test (a Beta-mixture
likelihood ratio, safe to look at after every request) rejects "the rate is within the
limit"; divergence counts only when a chi-square test finds it significant; the
metric breaches only when the always-valid confidence sequence of the gain lies wholly below
``-max_metric_drop``. A p99 is judged only on 100 or more requests.

A challenger whose labelled metric is confidently better than the champion's is expected to
predict differently: its divergence is reported but not counted as a breach. When the metric
limit is on (labels are expected), divergence is therefore judged at the end of a stage, once
the metric has had its labels; without labels, as soon as it is significant.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon
from scipy.special import betainc, betaln

from flywheel.core.spec import RolloutLimits
from flywheel.rollout._evidence import ArmEvidence
from flywheel.rollout._outcomes import GREATER_IS_BETTER
from flywheel.rollout._sequential import msprt

__all__ = ["LimitCheck", "check_limits", "error_rate_p_value"]

MIN_LATENCY_ROWS = 100
MIN_DIVERGENCE_ROWS = 50
MIN_METRIC_LABELS = 20


@dataclasses.dataclass(frozen=True)
class LimitCheck:
    """The outcome of every check: breaches (sentences) and the numbers behind them."""

    breached: tuple[str, ...]
    numbers: dict[str, Any]


def error_rate_p_value(k: int, n: int, limit: float) -> float:
    """Always-valid p-value of "the error rate is at most ``limit``" after ``k`` errors in
    ``n`` calls.

    The likelihood ratio of a Beta(1, b) mixture over rates above the limit (b puts the
    prior's mean at five times the limit) against the limit itself is a supermartingale for
    any rate within the limit, so by Ville's inequality its reciprocal may be checked after
    every call without inflating false alarms. With a 1 % limit, a 5 % error rate is caught
    after about a hundred calls.
    """
    if n == 0 or k == 0 or limit >= 1.0:
        return 1.0
    if limit <= 0.0:
        return 0.0
    b = max(1.0, 1.0 / (5.0 * limit) - 1.0)
    mixture = betaln(1.0 + k, b + n - k) + math.log1p(-betainc(1.0 + k, b + n - k, limit)) \
        - betaln(1.0, b) - math.log1p(-betainc(1.0, b, limit))
    null = k * math.log(limit) + (n - k) * math.log1p(-limit)
    return float(min(1.0, math.exp(min(0.0, null - mixture))))


def check_limits(limits: RolloutLimits, challenger: ArmEvidence, champion: ArmEvidence | None,
                 *, stage_end: bool, metric: str | None = None, latency: bool = True,
                 divergence: bool = True) -> LimitCheck:
    """Judge ``challenger`` against ``limits`` (and ``champion`` for relative limits).

    Args:
        stage_end: The stage has its minimum of requests: the error rate's point estimate
            must be within the limit (before, only a conclusive excess breaches).
        metric: The labelled metric to compare, or None to skip that check.
    """
    breached: list[str] = []
    numbers: dict[str, Any] = {}
    _error_rate(limits, challenger, stage_end, breached, numbers)
    if latency:
        _latency(limits, challenger, champion, breached, numbers)
    better = False
    labelled = metric is not None and champion is not None and limits.max_metric_drop is not None
    if metric is not None and champion is not None and limits.max_metric_drop is not None:
        better = _metric(limits, challenger, champion, metric, breached, numbers)
    if divergence and champion is not None and limits.max_divergence is not None:
        # With labels expected, divergence is judged at the stage's end, once the metric had
        # its labels: a better model predicts differently, and that is no reason to go back.
        judged = stage_end or not labelled
        _divergence(limits, challenger, champion, better or not judged, breached, numbers)
    return LimitCheck(tuple(breached), numbers)


def _error_rate(limits: RolloutLimits, arm: ArmEvidence, stage_end: bool,
                breached: list[str], numbers: dict[str, Any]) -> None:
    k, n, limit = arm.errors, arm.requests, limits.max_error_rate
    p_value = error_rate_p_value(k, n, limit)
    numbers["error_rate"] = {"errors": k, "requests": n, "rate": arm.error_rate,
                             "p_value": p_value, "limit": limit}
    conclusive = p_value <= limits.alpha
    if conclusive or (stage_end and arm.error_rate > limit):
        how = f"conclusively (always-valid p = {p_value:.2g})" if conclusive else \
            "at the end of the stage"
        breached.append(f"error rate: {arm.error_rate:.2%} of {n} {arm.arm} calls failed "
                        f"({k}), over the limit of {limit:.2%} {how}")


def _latency(limits: RolloutLimits, arm: ArmEvidence, champion: ArmEvidence | None,
             breached: list[str], numbers: dict[str, Any]) -> None:
    if arm.requests < MIN_LATENCY_ROWS or not math.isfinite(arm.p99_ms):
        return
    numbers["p99_ms"] = {arm.arm: round(arm.p99_ms, 3)}
    if limits.max_p99_latency_ms is not None and arm.p99_ms > limits.max_p99_latency_ms:
        breached.append(f"p99 latency: {arm.p99_ms:.1f} ms over the budget of "
                        f"{limits.max_p99_latency_ms:g} ms")
    if limits.max_latency_ratio is None or champion is None or \
            champion.requests < MIN_LATENCY_ROWS or not math.isfinite(champion.p99_ms):
        return
    allowed = limits.max_latency_ratio * champion.p99_ms + limits.latency_slack_ms
    numbers["p99_ms"].update({"champion": round(champion.p99_ms, 3),
                              "allowed": round(allowed, 3)})
    if arm.p99_ms > allowed:
        breached.append(f"p99 latency: {arm.p99_ms:.1f} ms against the champion's "
                        f"{champion.p99_ms:.1f} ms, over {limits.max_latency_ratio:g}x + "
                        f"{limits.latency_slack_ms:g} ms = {allowed:.1f} ms")


def _divergence(limits: RolloutLimits, arm: ArmEvidence, champion: ArmEvidence, excused: bool,
                breached: list[str], numbers: dict[str, Any]) -> None:
    keys = sorted(set(arm.histogram) | set(champion.histogram))
    a = np.array([arm.histogram.get(k, 0) for k in keys], dtype=float)
    b = np.array([champion.histogram.get(k, 0) for k in keys], dtype=float)
    if a.sum() < MIN_DIVERGENCE_ROWS or b.sum() < MIN_DIVERGENCE_ROWS:
        return
    distance = float(jensenshannon(a / a.sum(), b / b.sum(), base=2))
    table = np.vstack([a, b])[:, (a + b) > 0]
    p_value = float(sps.chi2_contingency(table)[1]) if table.shape[1] > 1 else 1.0
    limit = limits.max_divergence if limits.max_divergence is not None else 1.0
    numbers["divergence"] = {"jensen_shannon": round(distance, 6), "p_value": p_value,
                             "limit": limit, "counted": not excused}
    if distance > limit and p_value < limits.alpha and not excused:
        breached.append(f"prediction divergence: Jensen-Shannon distance {distance:.3f} from "
                        f"the champion's predictions, over the limit of "
                        f"{limit:g} (chi-square p = {p_value:.2g})")


def _metric(limits: RolloutLimits, arm: ArmEvidence, champion: ArmEvidence, metric: str,
            breached: list[str], numbers: dict[str, Any]) -> bool:
    """Breach when confidently worse; True when confidently better."""
    a, b = champion.outcome, arm.outcome
    if a.n < MIN_METRIC_LABELS or b.n < MIN_METRIC_LABELS:
        return False
    drop = limits.max_metric_drop or 0.0
    # The mixture's scale: a quarter of the outcome's spread, so a clear difference shows
    # within a hundred or so labels (any scale keeps the guard valid; this one gives it power).
    spread = math.sqrt(max((a.var + b.var) / 2.0, 1e-12))
    test = msprt(a, b, tau=max(drop, 0.25 * spread), alpha=limits.alpha)
    sign = 1.0 if GREATER_IS_BETTER[metric] else -1.0
    low, high = sorted((sign * test.low, sign * test.high))
    numbers["metric"] = {"name": metric, "champion": round(a.mean, 6),
                         "challenger": round(b.mean, 6), "labels": [a.n, b.n],
                         "gain": round(sign * test.difference, 6),
                         "gain_interval": [round(low, 6), round(high, 6)],
                         "max_drop": drop}
    if high < -drop:
        breached.append(f"{metric}: {b.mean:.4f} on {b.n} labelled requests against the "
                        f"champion's {a.mean:.4f} ({a.n}); the gain's always-valid "
                        f"{1 - limits.alpha:.0%} interval [{low:.4f}, {high:.4f}] lies below "
                        f"-{drop:g}")
    return low > 0.0
