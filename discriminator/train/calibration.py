"""Temperature scaling and the two scorings: one number T > 0 fitted on validation logits, reported both ways.

Why: sn34 multiplies a discrimination term (MCC) by a calibration term
(((B0 − Brier) / B0)^1.8), so an over-confident detector loses half its score
however well it ranks. Dividing every logit by T leaves each argmax, and so
accuracy and MCC, exactly as they were; only the probabilities soften (T > 1) or
sharpen (T < 1).

Two scorings, as the network uses them (../shared/docs/current-contract.md §5):

* **binary** — p(AI) = 1 − softmax(z)[0], MCC on AI vs real, Brier of p(AI) (B0 = 0.25);
* **multiclass** — the probabilities projected onto the 3 classes real / synthetic /
  semisynthetic (a 2-logit head zero-padded, a single logit → [1 − p, p, 0]),
  Gorodkin's R_K on the argmax, Brier = mean Σ_k (p_k − onehot_k)² (B0 = 2/3).

`fit_temperature` minimises the Brier of the scoring asked for (the profile's own:
multiclass under `current`, binary under `onnx-2026-02`), not a proxy such as the
NLL, because that Brier is the number sn34 reads. The search is a golden-section
search over log T on [1/50, 50]; T = 1 is kept unless the search beats it. The
fitted T is stored in the checkpoint's spec and divided into the logits inside the
exported graph. Reported before and after: accuracy, MCC, Brier, cross-entropy,
ECE (10 equal-width bins of p(AI)) and sn34 under both scorings.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from validator_sim.metrics import BRIER_EXPONENT, MCC_EXPONENT, SCORE_FLOOR_SQUARED, compute_metrics, decide_with_probs
from validator_sim.plots import RELIABILITY_BINS, reliability_bins
from validator_sim.profiles import DEFAULT_PROFILE, Profile, get_profile

#: The golden-section search brackets log T in [−LOG_T_LIMIT, LOG_T_LIMIT].
LOG_T_LIMIT = math.log(50.0)
SEARCH_ITERATIONS = 60
GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
#: Classes the network scores image and video with: real 0, synthetic 1, semisynthetic 2.
SCORED_CLASSES = 3
SCORINGS = ("binary", "multiclass")
#: The scoring each profile's rounds use (contract §5: multiclass today, binary in the ONNX era).
PROFILE_SCORING = {"current": "multiclass", "onnx-2026-02": "binary"}


def profile_scoring(profile: Profile | str) -> str:
    """'multiclass' or 'binary': how rounds under `profile` score image and video."""
    name = profile.name if isinstance(profile, Profile) else get_profile(profile).name
    return PROFILE_SCORING.get(name, "binary")


@dataclass(frozen=True)
class ScoreCard:
    """The validator's metrics for one set of logits at one temperature, under both scorings."""

    temperature: float
    #: Binary scoring: AI (synthetic or semisynthetic) vs real.
    accuracy: float
    mcc: float
    brier: float
    cross_entropy: float
    ece: float
    sn34: float
    #: Multiclass scoring: real / synthetic / semisynthetic.
    multiclass_accuracy: float
    multiclass_mcc: float
    multiclass_brier: float
    multiclass_sn34: float

    def sn34_for(self, scoring: str) -> float:
        return self.multiclass_sn34 if scoring == "multiclass" else self.sn34

    def brier_for(self, scoring: str) -> float:
        return self.multiclass_brier if scoring == "multiclass" else self.brier

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class CalibrationReport:
    """A fitted temperature and the metrics before (at the old temperature) and after it."""

    temperature: float
    before: ScoreCard
    after: ScoreCard
    samples: int
    #: The scoring whose Brier the temperature minimises.
    scoring: str = "binary"

    def to_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "samples": self.samples, "scoring": self.scoring,
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


def multiclass_probabilities(logits: np.ndarray, classes: int = SCORED_CLASSES) -> np.ndarray:
    """Per-sample probabilities projected onto `classes` (contract §5): softmax (sigmoid for one logit),
    zero-padded when the head is narrower, truncated when wider (the extra mass is lost)."""
    z = np.asarray(logits, dtype=np.float64)
    if z.shape[1] == 1:
        p = 1.0 / (1.0 + np.exp(-z[:, 0]))
        probs = np.stack([1.0 - p, p], axis=1)
    else:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        probs = e / e.sum(axis=1, keepdims=True)
    if probs.shape[1] < classes:
        probs = np.pad(probs, ((0, 0), (0, classes - probs.shape[1])))
    return probs[:, :classes]


def gorodkin_rk(labels: np.ndarray, preds: np.ndarray, classes: int = SCORED_CLASSES) -> float:
    """Gorodkin's multiclass MCC R_K from the confusion matrix; 0.0 when a denominator term is 0."""
    confusion = np.zeros((classes, classes), dtype=np.float64)
    np.add.at(confusion, (np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)), 1.0)
    n = confusion.sum()
    true_counts, predicted_counts = confusion.sum(axis=1), confusion.sum(axis=0)
    denominator = math.sqrt((n * n - float(predicted_counts @ predicted_counts)) * (n * n - float(true_counts @ true_counts)))
    if denominator == 0:
        return 0.0
    return float((n * np.trace(confusion) - float(true_counts @ predicted_counts)) / denominator)


def multiclass_brier(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """mean over samples of Σ_k (p_k − onehot_k)²; the baseline (K − 1)/K when empty."""
    labels = np.asarray(labels, dtype=np.int64)
    classes = probabilities.shape[1]
    if labels.size == 0:
        return (classes - 1) / classes
    onehot = np.eye(classes)[labels]
    return float(np.mean(np.sum((probabilities - onehot) ** 2, axis=1)))


def sn34_from(mcc: float, brier_score: float, baseline: float) -> float:
    """sqrt(max(1e-12, m·b)) with m = clip((MCC + 1)/2, 0, 1)^1.2, b = max(0, (B0 − Brier)/B0)^1.8."""
    m = min(1.0, max(0.0, (mcc + 1) / 2)) ** MCC_EXPONENT
    calibration = (baseline - brier_score) / baseline
    b = calibration ** BRIER_EXPONENT if calibration > 0 else 0.0
    return min(1.0, max(0.0, math.sqrt(max(SCORE_FLOOR_SQUARED, m * b))))


def score_logits(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0,
                 profile: Profile | str = DEFAULT_PROFILE) -> ScoreCard:
    """What the validator would score for these logits once the graph divides them by `temperature`.

    `labels` are the media types (0 real, 1 synthetic, 2 semisynthetic); binary labels (0/1) work too.
    """
    profile = get_profile(profile) if isinstance(profile, str) else profile
    media = np.asarray(labels, dtype=np.int64)
    binary_labels = (media > 0).astype(np.int64)
    scaled = np.asarray(logits, dtype=np.float32) / np.float32(temperature)  # float32, as in the graph
    decisions = [decide_with_probs(row, profile)[:2] for row in scaled]
    preds = [d[0] for d in decisions]
    probabilities = np.asarray([d[1] for d in decisions], dtype=np.float64)
    metrics = compute_metrics(binary_labels, preds, probabilities)
    projected = multiclass_probabilities(scaled)
    predicted_class = projected.argmax(axis=1)
    rk = gorodkin_rk(media, predicted_class)
    mc_brier = multiclass_brier(media, projected)
    return ScoreCard(
        temperature=float(temperature),
        accuracy=metrics["accuracy"],
        mcc=metrics["binary_mcc"],
        brier=metrics["binary_brier"],
        cross_entropy=metrics["binary_cross_entropy"],
        ece=expected_calibration_error(binary_labels, probabilities),
        sn34=metrics["sn34_score"],
        multiclass_accuracy=float(np.mean(predicted_class == media)) if media.size else 0.0,
        multiclass_mcc=rk,
        multiclass_brier=mc_brier,
        multiclass_sn34=sn34_from(rk, mc_brier, (SCORED_CLASSES - 1) / SCORED_CLASSES) if media.size else 0.0,
    )


def _brier_at(logits: np.ndarray, labels: np.ndarray, log_t: float, scoring: str) -> float:
    temperature = math.exp(log_t)
    if scoring == "multiclass":
        return multiclass_brier(labels, multiclass_probabilities(np.asarray(logits) / temperature))
    q = np.clip(p_ai(logits, temperature), 1e-7, 1 - 1e-7)
    return float(np.mean((q - (labels > 0)) ** 2))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, scoring: str = "binary") -> float:
    """The T > 0 minimising the Brier of `scoring` on logits / T (see the module docstring).

    `labels` are media types (0/1/2) or binary labels (0/1).
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if scoring not in SCORINGS:
        raise ValueError(f"scoring must be one of {SCORINGS}, got {scoring!r}")
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"temperature scaling needs [N, K ≥ 2] logits, got shape {logits.shape}")
    if labels.size == 0 or not np.all(np.isfinite(logits)):
        return 1.0

    def brier_at(log_t: float) -> float:
        return _brier_at(logits, labels, log_t, scoring)

    low, high = -LOG_T_LIMIT, LOG_T_LIMIT
    a, b = high - GOLDEN * (high - low), low + GOLDEN * (high - low)
    fa, fb = brier_at(a), brier_at(b)
    for _ in range(SEARCH_ITERATIONS):
        if fa <= fb:
            high, b, fb = b, a, fa
            a = high - GOLDEN * (high - low)
            fa = brier_at(a)
        else:
            low, a, fa = a, b, fb
            b = low + GOLDEN * (high - low)
            fb = brier_at(b)
    best = (a + b) / 2
    return math.exp(best) if brier_at(best) < brier_at(0.0) else 1.0


def calibrate_logits(logits: np.ndarray, labels: np.ndarray, current_temperature: float = 1.0,
                     profile: Profile | str = DEFAULT_PROFILE, scoring: str | None = None) -> CalibrationReport:
    """Fit T on raw (T = 1) logits for `scoring` (default: the profile's); report both scorings at
    `current_temperature` and at the fitted T."""
    scoring = scoring or profile_scoring(profile)
    temperature = fit_temperature(logits, labels, scoring)
    return CalibrationReport(
        temperature=temperature,
        before=score_logits(logits, labels, current_temperature, profile),
        after=score_logits(logits, labels, temperature, profile),
        samples=int(len(labels)),
        scoring=scoring,
    )
