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

`fit_temperature` minimises the Brier of the scoring asked for, not a proxy such as
the NLL, because that Brier is the number sn34 reads. Calibrating for today's
rounds (`current`, multiclass) uses `fit_joint_temperature`: the lowest 3-class
Brier among temperatures that leave the binary Brier no higher than it was, since a
round may read either sn34. The ONNX era (`onnx-2026-02`) fits the binary Brier.
The searches run over log T on [1/50, 50]; T = 1 is kept unless they beat it. The
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


#: Points of the log T grid `fit_joint_temperature` scans before refining the best one.
JOINT_GRID_POINTS = 2001


def fit_joint_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 with the lowest 3-class Brier among those whose binary Brier is no higher than at T = 1.

    Today's rounds may read either sn34 (current-contract §5), so the multiclass fit must not buy its
    Brier with the binary one. Both Briers are scanned on a grid of log T over [1/50, 50], the best
    feasible grid point is refined by a golden-section search between its neighbours (kept only while
    the binary bound holds), and T = 1 stays unless it is beaten.
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"temperature scaling needs [N, K ≥ 2] logits, got shape {logits.shape}")
    if labels.size == 0 or not np.all(np.isfinite(logits)):
        return 1.0
    binary_bound = _brier_at(logits, labels, 0.0, "binary") + 1e-12
    grid = np.linspace(-LOG_T_LIMIT, LOG_T_LIMIT, JOINT_GRID_POINTS)
    feasible = [(_brier_at(logits, labels, g, "multiclass"), g) for g in grid
                if _brier_at(logits, labels, g, "binary") <= binary_bound]
    if not feasible:
        return 1.0
    best_brier, best = min(feasible)
    step = grid[1] - grid[0]
    low, high = best - step, best + step
    for _ in range(SEARCH_ITERATIONS // 2):
        a, b = high - GOLDEN * (high - low), low + GOLDEN * (high - low)
        if _brier_at(logits, labels, a, "multiclass") <= _brier_at(logits, labels, b, "multiclass"):
            high = b
        else:
            low = a
    refined = (low + high) / 2
    if (_brier_at(logits, labels, refined, "multiclass") < best_brier
            and _brier_at(logits, labels, refined, "binary") <= binary_bound):
        best, best_brier = refined, _brier_at(logits, labels, refined, "multiclass")
    return math.exp(best) if best_brier < _brier_at(logits, labels, 0.0, "multiclass") else 1.0


def calibrate_logits(logits: np.ndarray, labels: np.ndarray, current_temperature: float = 1.0,
                     profile: Profile | str = DEFAULT_PROFILE, scoring: str | None = None) -> CalibrationReport:
    """Fit T on raw (T = 1) logits for `scoring` (default: the profile's); report both scorings at
    `current_temperature` and at the fitted T.

    `binary` minimises the binary Brier; `multiclass` is `fit_joint_temperature`: the 3-class Brier
    goes down and the binary Brier does not go up."""
    scoring = scoring or profile_scoring(profile)
    temperature = fit_joint_temperature(logits, labels) if scoring == "multiclass" else fit_temperature(logits, labels, scoring)
    return CalibrationReport(
        temperature=temperature,
        before=score_logits(logits, labels, current_temperature, profile),
        after=score_logits(logits, labels, temperature, profile),
        samples=int(len(labels)),
        scoring=scoring,
    )
