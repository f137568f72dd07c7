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

Both are computed by `validator_sim.metrics` (`score_samples`), the functions `kit bench` scores with.

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

from validator_sim.metrics import MULTICLASS_K, compute_metrics, decide_with_probs, project_probs, score_samples
from validator_sim.plots import RELIABILITY_BINS, reliability_bins
from validator_sim.profiles import DEFAULT_PROFILE, Profile, get_profile

#: The golden-section search brackets log T in [−LOG_T_LIMIT, LOG_T_LIMIT].
LOG_T_LIMIT = math.log(50.0)
SEARCH_ITERATIONS = 60
GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
SCORINGS = ("binary", "multiclass")


def profile_scoring(profile: Profile | str) -> str:
    """'multiclass' or 'binary': the sn34 rounds under `profile` read (its `default_scoring`)."""
    return (get_profile(profile) if isinstance(profile, str) else profile).default_scoring


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


def multiclass_probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """`validator_sim.metrics.project_probs` for a whole `[N, K ≥ 2]` batch of logits / T, vectorised for the
    temperature search: softmax, zero-padded to 3 classes when narrower, truncated when wider."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    e = np.exp(z - z.max(axis=1, keepdims=True))
    probs = e / e.sum(axis=1, keepdims=True)
    if probs.shape[1] < MULTICLASS_K:
        probs = np.pad(probs, ((0, 0), (0, MULTICLASS_K - probs.shape[1])))
    return probs[:, :MULTICLASS_K]


def score_logits(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0,
                 profile: Profile | str = DEFAULT_PROFILE) -> ScoreCard:
    """What the validator would score for these logits once the graph divides them by `temperature`, under
    both scorings (`validator_sim.metrics`, the functions `kit bench` scores with).

    `labels` are the media types (0 real, 1 synthetic, 2 semisynthetic); binary labels (0/1) work too.
    """
    profile = get_profile(profile) if isinstance(profile, str) else profile
    media = np.asarray(labels, dtype=np.int64)
    binary_labels = (media > 0).astype(np.int64)
    scaled = np.asarray(logits, dtype=np.float32) / np.float32(temperature)  # float32, as in the graph
    decisions = [decide_with_probs(row, profile) for row in scaled]
    preds = [d[0] for d in decisions]
    probabilities = np.asarray([d[1] for d in decisions], dtype=np.float64)
    projected = np.asarray([project_probs(d[2], d[1]) for d in decisions], dtype=np.float64).reshape(-1, MULTICLASS_K)
    metrics = compute_metrics(binary_labels, preds, probabilities)
    both = score_samples(binary_labels, preds, probabilities, media, projected)
    return ScoreCard(
        temperature=float(temperature),
        accuracy=metrics["accuracy"],
        mcc=metrics["binary_mcc"],
        brier=metrics["binary_brier"],
        cross_entropy=metrics["binary_cross_entropy"],
        ece=expected_calibration_error(binary_labels, probabilities),
        sn34=metrics["sn34_score"],
        multiclass_accuracy=both["accuracy"],
        multiclass_mcc=both["gorodkin_mcc"],
        multiclass_brier=both["multiclass_brier"],
        multiclass_sn34=both["multiclass_sn34_score"],
    )


def _brier_at(logits: np.ndarray, labels: np.ndarray, log_t: float, scoring: str) -> float:
    temperature = math.exp(log_t)
    if scoring == "multiclass":
        onehot = np.eye(MULTICLASS_K)[labels]
        return float(np.mean(np.sum((multiclass_probabilities(logits, temperature) - onehot) ** 2, axis=1)))
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
