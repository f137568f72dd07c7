"""Temperature scaling: one number T > 0 that makes p(AI) mean what it says, fitted on validation logits.

Why: sn34 multiplies a discrimination term (MCC) by a calibration term
((0.25 − Brier) / 0.25)^1.8, so an over-confident detector loses half its score
however well it ranks. Dividing every logit by T leaves each argmax, and so
accuracy and MCC, exactly as they were; only the probabilities soften (T > 1) or
sharpen (T < 1).

What is minimised: the validator's own Brier score of p(AI) = 1 − softmax(z / T)[0]
(for 2 and 3 logits alike), because that is the number sn34 reads, not a proxy
such as the 3-class NLL. The search is a golden-section search over log T on
[1/50, 50]; T = 1 is kept unless the search beats it. The fitted T is stored in
the checkpoint's spec and divided into the logits inside the exported graph.

Reported before and after: accuracy, MCC, Brier, cross-entropy, ECE (10 equal-width
bins of p(AI)) and sn34, all computed with `validator_sim.metrics`, the functions
`kit bench` scores with.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from validator_sim.metrics import compute_metrics, decide_with_probs
from validator_sim.plots import RELIABILITY_BINS, reliability_bins
from validator_sim.profiles import DEFAULT_PROFILE, Profile, get_profile

#: The golden-section search brackets log T in [−LOG_T_LIMIT, LOG_T_LIMIT].
LOG_T_LIMIT = math.log(50.0)
SEARCH_ITERATIONS = 60
GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


@dataclass(frozen=True)
class ScoreCard:
    """The validator's binary metrics for one set of logits at one temperature."""

    temperature: float
    accuracy: float
    mcc: float
    brier: float
    cross_entropy: float
    ece: float
    sn34: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class CalibrationReport:
    """A fitted temperature and the metrics before (at the old temperature) and after it."""

    temperature: float
    before: ScoreCard
    after: ScoreCard
    samples: int

    def to_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "samples": self.samples,
                "before": self.before.to_dict(), "after": self.after.to_dict()}


def p_ai(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """1 − softmax(logits / T)[:, 0] in float64 (the validator's p(AI) for 2 and 3 logits)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return 1.0 - e[:, 0] / e.sum(axis=1)


def expected_calibration_error(binary_labels: np.ndarray, probabilities: np.ndarray, bins: int = RELIABILITY_BINS) -> float:
    """Σ over equal-width p(AI) bins of (bin share) · |mean p(AI) − observed AI fraction|."""
    labels = np.asarray(binary_labels, dtype=np.float64)
    if labels.size == 0:
        return 0.0
    rows = reliability_bins(labels, np.asarray(probabilities, dtype=np.float64), bins)
    return float(sum(row["count"] * abs(row["mean_p"] - row["observed"]) for row in rows) / labels.size)


def score_logits(logits: np.ndarray, binary_labels: np.ndarray, temperature: float = 1.0,
                 profile: Profile | str = DEFAULT_PROFILE) -> ScoreCard:
    """What the validator would score for these logits once the graph divides them by `temperature`."""
    profile = get_profile(profile) if isinstance(profile, str) else profile
    scaled = np.asarray(logits, dtype=np.float32) / np.float32(temperature)  # float32, as in the graph
    decisions = [decide_with_probs(row, profile)[:2] for row in scaled]
    preds = [d[0] for d in decisions]
    probabilities = np.asarray([d[1] for d in decisions], dtype=np.float64)
    metrics = compute_metrics(binary_labels, preds, probabilities)
    return ScoreCard(
        temperature=float(temperature),
        accuracy=metrics["accuracy"],
        mcc=metrics["binary_mcc"],
        brier=metrics["binary_brier"],
        cross_entropy=metrics["binary_cross_entropy"],
        ece=expected_calibration_error(binary_labels, probabilities),
        sn34=metrics["sn34_score"],
    )


def _brier_at(logits: np.ndarray, labels: np.ndarray, log_t: float) -> float:
    q = np.clip(p_ai(logits, math.exp(log_t)), 1e-7, 1 - 1e-7)
    return float(np.mean((q - labels) ** 2))


def fit_temperature(logits: np.ndarray, binary_labels: np.ndarray) -> float:
    """The T > 0 minimising the Brier score of p(AI) = 1 − softmax(logits / T)[0] (see the module docstring)."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(binary_labels, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"temperature scaling needs [N, K ≥ 2] logits, got shape {logits.shape}")
    if labels.size == 0 or not np.all(np.isfinite(logits)):
        return 1.0
    low, high = -LOG_T_LIMIT, LOG_T_LIMIT
    a, b = high - GOLDEN * (high - low), low + GOLDEN * (high - low)
    fa, fb = _brier_at(logits, labels, a), _brier_at(logits, labels, b)
    for _ in range(SEARCH_ITERATIONS):
        if fa <= fb:
            high, b, fb = b, a, fa
            a = high - GOLDEN * (high - low)
            fa = _brier_at(logits, labels, a)
        else:
            low, a, fa = a, b, fb
            b = low + GOLDEN * (high - low)
            fb = _brier_at(logits, labels, b)
    best = (a + b) / 2
    return math.exp(best) if _brier_at(logits, labels, best) < _brier_at(logits, labels, 0.0) else 1.0


def calibrate_logits(logits: np.ndarray, binary_labels: np.ndarray, current_temperature: float = 1.0,
                     profile: Profile | str = DEFAULT_PROFILE) -> CalibrationReport:
    """Fit T on raw (T = 1) logits; report the metrics at `current_temperature` and at the fitted T."""
    temperature = fit_temperature(logits, binary_labels)
    return CalibrationReport(
        temperature=temperature,
        before=score_logits(logits, binary_labels, current_temperature, profile),
        after=score_logits(logits, binary_labels, temperature, profile),
        samples=int(len(binary_labels)),
    )
