"""The validator's scoring, as pure functions (contract §3 and §4).

Nothing here keeps state or reads files: the simulator, training and calibration
all call these same functions, so a number means the same thing everywhere.
Labels are 0 for real and 1 for AI (synthetic or semisynthetic); AI is the positive class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from validator_sim.profiles import DecisionRule, Profile, get_profile

#: p(AI) is clipped to [EPS, 1 − EPS] before Brier and cross-entropy.
EPS = 1e-7
#: sn34 never falls below sqrt of this once a sample has been scored.
SCORE_FLOOR_SQUARED = 1e-12
MCC_EXPONENT = 1.2
BRIER_EXPONENT = 1.8
#: Brier of a constant 0.5 guess: the point where the calibration half of sn34 reaches zero.
BRIER_BASELINE = 0.25


def softmax(logits: Sequence[float] | np.ndarray) -> np.ndarray:
    """Softmax of one flattened row in float32, as the validator computes it.

    Any NaN or ±inf logit makes every probability NaN (contract §3).
    """
    row = np.asarray(logits, dtype=np.float32).reshape(-1)
    if not np.all(np.isfinite(row)):
        return np.full(row.shape, np.nan, dtype=np.float32)
    shifted = np.exp(row - row.max())
    return shifted / shifted.sum(dtype=np.float32)


def sigmoid(logit: float | np.floating) -> np.float32:
    """The logistic function in float32 (the `current` profile's single-logit rule)."""
    x = np.float32(logit)
    with np.errstate(over="ignore"):
        return np.float32(1.0) / (np.float32(1.0) + np.exp(-x))


def _always_ai(row: np.ndarray) -> tuple[int, float, np.ndarray]:
    return 1, 1.0, softmax(row)


def _sigmoid_rule(row: np.ndarray) -> tuple[int, float, np.ndarray]:
    p = sigmoid(row[0]) if np.isfinite(row[0]) else np.float32(np.nan)
    return int(p > 0.5), float(p), np.array([p], dtype=np.float32)


def _argmax_is_1(row: np.ndarray) -> tuple[int, float, np.ndarray]:
    probs = softmax(row)
    return int(_first_argmax(probs) == 1), float(probs[1]), probs


def _argmax_not_0(row: np.ndarray) -> tuple[int, float, np.ndarray]:
    probs = softmax(row)
    return int(_first_argmax(probs) != 0), float(np.float32(1.0) - probs[0]), probs


def _not_real_above_half(row: np.ndarray) -> tuple[int, float, np.ndarray]:
    # gasbench reads the float32 probabilities as Python floats and forms 1 − p[0] in float64;
    # in float32 the difference rounds (up to ~3e-8), which moves Brier in its 9th digit and
    # can flip a decision at p[0] just below 0.5.
    probs = softmax(row)
    p_ai = 1.0 - float(probs[0])
    return int(p_ai > 0.5), p_ai, probs


def _p0_above_half(row: np.ndarray) -> tuple[int, float, np.ndarray]:
    probs = softmax(row)
    return int(probs[0] > 0.5), float(probs[0]), probs


def _first_argmax(probs: np.ndarray) -> int:
    """numpy's argmax: ties go to the lowest index, and an all-NaN row gives 0 (predicted real)."""
    return int(np.argmax(probs))


#: Contract §3's table, keyed by the rule names profiles use.
DECISION_RULES = {
    "always_ai": _always_ai,
    "sigmoid": _sigmoid_rule,
    "argmax_is_1": _argmax_is_1,
    "argmax_not_0": _argmax_not_0,
    "p0_above_half": _p0_above_half,
    "not_real_above_half": _not_real_above_half,
}


def decide_with_probs(logits: Sequence[float] | np.ndarray, profile: Profile | str) -> tuple[int, float, np.ndarray]:
    """(predicted AI as 0/1, p(AI), the probabilities the validator saw) for one output row."""
    profile = get_profile(profile) if isinstance(profile, str) else profile
    row = np.asarray(logits, dtype=np.float32).reshape(-1)
    rule: DecisionRule = profile.rule_for(row.size)
    return DECISION_RULES[rule](row)


def decide(logits: Sequence[float] | np.ndarray, profile: Profile | str) -> tuple[int, float]:
    """(predicted AI as 0/1, p(AI) used for Brier/CE) for one output row, per the profile's rule."""
    pred, p_ai, _ = decide_with_probs(logits, profile)
    return pred, p_ai


def confusion(labels: Sequence[int], preds: Sequence[int]) -> dict[str, int]:
    """True/false positives/negatives with AI (1) as the positive class."""
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(preds, dtype=np.int64)
    return {
        "tp": int(np.sum((p == 1) & (y == 1))),
        "tn": int(np.sum((p == 0) & (y == 0))),
        "fp": int(np.sum((p == 1) & (y == 0))),
        "fn": int(np.sum((p == 0) & (y == 1))),
    }


def accuracy(labels: Sequence[int], preds: Sequence[int]) -> float:
    """mean(pred == label); 0.0 when there are no samples."""
    y = np.asarray(labels, dtype=np.int64)
    if y.size == 0:
        return 0.0
    return float(np.mean(np.asarray(preds, dtype=np.int64) == y))


def binary_mcc(labels: Sequence[int], preds: Sequence[int]) -> float:
    """Matthews correlation; 0.0 when any marginal is empty (one class only, or no samples)."""
    c = confusion(labels, preds)
    tp, tn, fp, fn = c["tp"], c["tn"], c["fp"], c["fn"]
    denominator = math.sqrt(float(tp + fp) * float(tp + fn) * float(tn + fp) * float(tn + fn))
    if denominator == 0:
        return 0.0
    return (tp * tn - fp * fn) / denominator


def _clipped(p_ai: Sequence[float]) -> np.ndarray:
    return np.clip(np.asarray(p_ai, dtype=np.float64), EPS, 1 - EPS)


def brier(labels: Sequence[int], p_ai: Sequence[float]) -> float:
    """mean((clip(p) − y)²); 0.25 when empty; NaN when any p(AI) is NaN."""
    y = np.asarray(labels, dtype=np.float64)
    if y.size == 0:
        return BRIER_BASELINE
    return float(np.mean((_clipped(p_ai) - y) ** 2))


def cross_entropy(labels: Sequence[int], p_ai: Sequence[float]) -> float:
    """−mean(y·ln q + (1 − y)·ln(1 − q)) with q = clip(p); 0.0 when empty."""
    y = np.asarray(labels, dtype=np.float64)
    if y.size == 0:
        return 0.0
    q = _clipped(p_ai)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))


def sn34_score(mcc: float, brier_score: float, num_samples: int | None = None) -> float:
    """sqrt(max(1e-12, m·b)) in [0, 1]; 0.0 when `num_samples` is 0.

    m = clamp((MCC + 1)/2, 0, 1)^1.2, b = max(0, (0.25 − Brier)/0.25)^1.8.
    A NaN Brier gives b = 0, so the score sits on its floor of 1e-6.
    """
    if num_samples == 0:
        return 0.0
    m = min(1.0, max(0.0, (mcc + 1) / 2)) ** MCC_EXPONENT
    calibration = (BRIER_BASELINE - brier_score) / BRIER_BASELINE
    b = calibration ** BRIER_EXPONENT if calibration > 0 else 0.0  # NaN compares False: b = 0
    return min(1.0, max(0.0, math.sqrt(max(SCORE_FLOOR_SQUARED, m * b))))


def compute_metrics(labels: Sequence[int], preds: Sequence[int], p_ai: Sequence[float]) -> dict[str, Any]:
    """Every contract §4 number for one set of scored samples."""
    mcc = binary_mcc(labels, preds)
    brier_score = brier(labels, p_ai)
    total = len(labels)
    correct = int(np.sum(np.asarray(preds, dtype=np.int64) == np.asarray(labels, dtype=np.int64))) if total else 0
    return {
        "total_samples": total,
        "correct_predictions": correct,
        "accuracy": accuracy(labels, preds),
        "binary_mcc": mcc,
        "binary_brier": brier_score,
        "binary_cross_entropy": cross_entropy(labels, p_ai),
        "sn34_score": sn34_score(mcc, brier_score, total),
        **confusion(labels, preds),
    }


def timing_summary(per_sample_ms: Sequence[float]) -> dict[str, float]:
    """Mean and 95th percentile (linear interpolation) of per-sample inference time; zeros when empty."""
    values = np.asarray(per_sample_ms, dtype=np.float64)
    if values.size == 0:
        return {"avg_inference_time_ms": 0.0, "p95_inference_time_ms": 0.0}
    return {
        "avg_inference_time_ms": float(values.mean()),
        "p95_inference_time_ms": float(np.percentile(values, 95, method="linear")),
    }


# ---------------------------------------------------------------------------------------------
# Today's scoring (current-contract §5): both readings, projection of any head onto K classes,
# provenance weights. Every function takes per-sample weights (all 1 when none are set).
# ---------------------------------------------------------------------------------------------

#: Classes the multiclass reading scores for image and video: real 0, synthetic 1, semisynthetic 2.
MULTICLASS_K = 3
#: Substrings of a dataset name that make it a provenance class (current-contract §5).
PROVENANCE_MARKERS = (("holdout", "-holdout-"), ("gasstation", "gasstation"))
PROVENANCE_CLASSES = ("public", "holdout", "gasstation")


def project_probs(probs: Sequence[float] | np.ndarray, p_ai: float, k: int = MULTICLASS_K) -> np.ndarray:
    """The model's probabilities on exactly `k` classes: one value → [1 − p, p], narrower zero-padded, wider truncated."""
    row = np.asarray(probs, dtype=np.float64).reshape(-1)
    if row.size == 1:
        row = np.array([1.0 - p_ai, p_ai], dtype=np.float64)
    out = np.zeros(k, dtype=np.float64)
    out[:min(k, row.size)] = row[:k]
    return out


def provenance_of(dataset_name: str) -> str:
    """`holdout` for names containing `-holdout-`, `gasstation` for names containing it, else `public`."""
    lowered = dataset_name.lower()
    for provenance, marker in PROVENANCE_MARKERS:
        if marker in lowered:
            return provenance
    return "public"


def provenance_weights(provenances: Sequence[str], shares: dict[str, float]) -> np.ndarray:
    """weight = share · N / n_class per sample; a class without a share counts 0; all 1 when every share is 0."""
    names = list(provenances)
    if not names or not any(shares.get(p, 0.0) for p in PROVENANCE_CLASSES):
        return np.ones(len(names), dtype=np.float64)
    total = len(names)
    counts = {p: names.count(p) for p in set(names)}
    return np.array([shares.get(p, 0.0) * total / counts[p] for p in names], dtype=np.float64)


def gorodkin_rk(confusion_matrix: np.ndarray) -> float:
    """Gorodkin's R_K over a (weighted) K×K confusion matrix, rows = true class; 0 when undefined."""
    c = np.asarray(confusion_matrix, dtype=np.float64)
    n = c.sum()
    t, p = c.sum(axis=1), c.sum(axis=0)
    denominator = math.sqrt(max(0.0, (n * n - float(p @ p)) * (n * n - float(t @ t))))
    if denominator == 0:
        return 0.0
    return float((n * np.trace(c) - float(t @ p)) / denominator)


def weighted_confusion(labels: Sequence[int], preds: Sequence[int], weights: np.ndarray, k: int) -> np.ndarray:
    """K×K matrix of summed weights, rows = true class, columns = predicted class."""
    c = np.zeros((k, k), dtype=np.float64)
    np.add.at(c, (np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)), weights)
    return c


def sn34_from(mcc: float, brier_score: float, baseline: float, scored: bool = True) -> float:
    """sqrt(max(1e-12, m·b)) in [0, 1] with b measured against `baseline`; 0.0 when nothing was scored."""
    if not scored:
        return 0.0
    m = min(1.0, max(0.0, (mcc + 1) / 2)) ** MCC_EXPONENT
    calibration = (baseline - brier_score) / baseline
    b = calibration ** BRIER_EXPONENT if calibration > 0 else 0.0  # NaN compares False: b = 0
    return min(1.0, max(0.0, math.sqrt(max(SCORE_FLOOR_SQUARED, m * b))))


def score_samples(binary_labels: Sequence[int], binary_preds: Sequence[int], p_ai: Sequence[float],
                  class_labels: Sequence[int], class_probs: np.ndarray, weights: np.ndarray | None = None,
                  k: int = MULTICLASS_K) -> dict[str, Any]:
    """Both sn34 readings and their parts for one set of scored samples (current-contract §5).

    `class_probs` is [N, k] (already projected); the multiclass prediction is its argmax
    (ties to the lower index). Accuracy compares that argmax with the class label.
    """
    y = np.asarray(binary_labels, dtype=np.int64)
    n = y.size
    w = np.ones(n, dtype=np.float64) if weights is None else np.asarray(weights, dtype=np.float64)
    scored = n > 0 and w.sum() > 0
    probs = np.asarray(class_probs, dtype=np.float64).reshape(n, k)
    labels_k = np.asarray(class_labels, dtype=np.int64)
    preds_k = np.argmax(probs, axis=1) if n else np.zeros(0, dtype=np.int64)
    if scored:
        binary = weighted_confusion(y, binary_preds, w, 2)
        b_mcc = _binary_mcc_of(binary)
        q = _clipped(p_ai)
        b_brier = float(np.sum(w * (q - y) ** 2) / w.sum())
        b_ce = float(-np.sum(w * (y * np.log(q) + (1 - y) * np.log(1 - q))) / w.sum())
        multi = weighted_confusion(labels_k, preds_k, w, k)
        g_mcc = gorodkin_rk(multi)
        onehot = np.eye(k)[labels_k]
        m_brier = float(np.sum(w * np.sum((probs - onehot) ** 2, axis=1)) / w.sum())
        acc = float(np.sum(w * (preds_k == labels_k)) / w.sum())
    else:
        multi = np.zeros((k, k))
        b_mcc = g_mcc = b_ce = 0.0
        b_brier, m_brier, acc = BRIER_BASELINE, (k - 1) / k, 0.0
    recall = {}
    for cls in range(k):
        mask = labels_k == cls
        recall[cls] = float(np.sum(w[mask] * (preds_k[mask] == cls)) / w[mask].sum()) if mask.any() and w[mask].sum() else None
    return {
        "samples": n,
        "accuracy": acc,
        "binary_mcc": b_mcc,
        "binary_brier": b_brier,
        "binary_cross_entropy": b_ce,
        "binary_sn34_score": sn34_from(b_mcc, b_brier, BRIER_BASELINE, scored),
        "gorodkin_mcc": g_mcc,
        "multiclass_brier": m_brier,
        "multiclass_sn34_score": sn34_from(g_mcc, m_brier, (k - 1) / k, scored),
        "per_class_recall": recall,
        "multiclass_confusion": multi.tolist(),
    }


def _binary_mcc_of(c: np.ndarray) -> float:
    tn, fp, fn, tp = c[0, 0], c[0, 1], c[1, 0], c[1, 1]
    denominator = math.sqrt(float(tp + fp) * float(tp + fn) * float(tn + fp) * float(tn + fn))
    if denominator == 0:
        return 0.0
    return float((tp * tn - fp * fn) / denominator)
