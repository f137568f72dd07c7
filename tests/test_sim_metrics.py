"""Contract §3–§4 scoring: the worked example, the decision table per logit width, and the edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from discriminator.errors import UsageError
from validator_sim import metrics
from validator_sim.profiles import PROFILES, get_profile

LABELS = [0, 0, 1, 1, 1, 0]
PREDS = [0, 1, 1, 0, 1, 0]
P_AI = [0.1, 0.6, 0.8, 0.3, 1.0, 0.0]


def test_worked_example_matches_the_contract() -> None:
    result = metrics.compute_metrics(LABELS, PREDS, P_AI)
    assert round(result["binary_mcc"], 6) == 0.333333
    assert round(result["binary_brier"], 6) == 0.15
    assert round(result["binary_cross_entropy"], 6) == 0.408128
    assert round(result["sn34_score"], 6) == 0.343716
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert (result["tp"], result["tn"], result["fp"], result["fn"]) == (2, 2, 1, 1)


def test_calibration_dominates_as_the_contract_says() -> None:
    assert round(metrics.sn34_score(0.95, 0.20), 2) == 0.23


def test_one_class_only_gives_zero_mcc() -> None:
    assert metrics.binary_mcc([1, 1, 1], [1, 1, 0]) == 0.0
    assert metrics.binary_mcc([0, 1], [1, 1]) == 0.0


def test_empty_set_defaults() -> None:
    result = metrics.compute_metrics([], [], [])
    assert result["binary_brier"] == 0.25
    assert result["binary_cross_entropy"] == 0.0
    assert result["binary_mcc"] == 0.0
    assert result["sn34_score"] == 0.0
    assert result["accuracy"] == 0.0


def test_floor_is_one_millionth_once_anything_is_scored() -> None:
    assert metrics.sn34_score(-1.0, 0.5, num_samples=3) == pytest.approx(1e-6)
    assert metrics.sn34_score(1.0, 0.0, num_samples=3) == 1.0


def test_probabilities_are_clipped_before_brier_and_ce() -> None:
    assert metrics.cross_entropy([1, 0], [0.0, 1.0]) == pytest.approx(-math.log(1e-7))
    assert metrics.brier([1], [0.0]) == pytest.approx((1 - 1e-7) ** 2)


def test_nan_probability_makes_brier_nan_and_floors_the_score() -> None:
    result = metrics.compute_metrics([1, 0], [0, 0], [float("nan"), 0.1])
    assert math.isnan(result["binary_brier"])
    assert math.isnan(result["binary_cross_entropy"])
    assert result["sn34_score"] == pytest.approx(1e-6)


def test_softmax_is_float32_and_nan_for_non_finite_logits() -> None:
    probs = metrics.softmax([1.0, 2.0, 3.0])
    assert probs.dtype == np.float32
    e = np.exp(np.float32([1, 2, 3]) - np.float32(3))
    np.testing.assert_array_equal(probs, e / e.sum(dtype=np.float32))
    for bad in (float("nan"), float("inf"), float("-inf")):
        assert np.isnan(metrics.softmax([0.5, bad])).all()


@pytest.mark.parametrize(
    ("logits", "expected_pred", "expected_p"),
    [
        ([0.0, 1.0], 1, "p1"),            # 2 logits: argmax = 1
        ([1.0, 1.0], 0, "p1"),            # tie goes to 0
        ([0.0, 2.0, -1.0], 1, "1-p0"),    # 3 logits: argmax ≠ 0
        ([2.0, 2.0, 2.0], 0, "1-p0"),     # three-way tie goes to real
        ([0.0, -1.0, 3.0], 1, "1-p0"),
        ([3.0, 0.0, 0.0, 0.0], 1, "p0"),  # ≥4: p[0] > 0.5 means AI (the era's inverted rule)
        ([0.0, 3.0, 0.0, 0.0, 0.0], 0, "p0"),
    ],
)
def test_decision_table_onnx_2026_02(logits: list[float], expected_pred: int, expected_p: str) -> None:
    probs = metrics.softmax(logits)
    pred, p_ai = metrics.decide(logits, "onnx-2026-02")
    assert pred == expected_pred
    want = {"p1": probs[1], "1-p0": np.float32(1) - probs[0], "p0": probs[0]}[expected_p]
    assert p_ai == float(want)


def test_single_logit_is_always_ai_under_onnx_2026_02_and_sigmoid_under_current() -> None:
    assert metrics.decide([-5.0], "onnx-2026-02") == (1, 1.0)
    pred, p_ai = metrics.decide([-2.0], "current")
    assert pred == 0 and p_ai == pytest.approx(1 / (1 + math.exp(2.0)), rel=1e-6)
    assert metrics.decide([0.0], "current") == (0, 0.5)  # exactly 0.5 is not AI
    assert metrics.decide([3.0], "current")[0] == 1


def test_nan_logits_are_predicted_real_with_nan_probability() -> None:
    for logits in ([float("nan"), 1.0], [1.0, float("nan"), 0.0], [float("inf"), 0.0, 0.0, 0.0]):
        pred, p_ai = metrics.decide(logits, "onnx-2026-02")
        assert pred == 0 and math.isnan(p_ai)
    pred, p_ai = metrics.decide([float("nan")], "current")
    assert pred == 0 and math.isnan(p_ai)


def test_every_profile_covers_every_logit_width() -> None:
    for profile in PROFILES.values():
        for width in (1, 2, 3, 4, 9):
            assert profile.rule_for(width) in metrics.DECISION_RULES


def test_unknown_profile_suggests_the_closest() -> None:
    with pytest.raises(UsageError) as caught:
        get_profile("onnx-2026")
    assert "did you mean 'onnx-2026-02'" in caught.value.one_line()


def test_timing_summary_uses_linear_percentile() -> None:
    summary = metrics.timing_summary([1.0, 2.0, 3.0, 4.0, 5.0])
    assert summary["avg_inference_time_ms"] == 3.0
    assert summary["p95_inference_time_ms"] == pytest.approx(4.8)
    assert metrics.timing_summary([]) == {"avg_inference_time_ms": 0.0, "p95_inference_time_ms": 0.0}
