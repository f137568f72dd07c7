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
