"""Today's scoring re-derived independently: Gorodkin R_K as a covariance ratio, multiclass Brier from one-hots,
projection of any head, provenance weights as sample replication, bootstrap intervals and the paired comparison.

The reference formulas are written here from current-contract §5 with plain numpy, not with the simulator's code.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from discriminator.errors import UsageError
from validator_sim.metrics import gorodkin_rk, project_probs, provenance_of, provenance_weights, score_samples
from validator_sim.scoring import (
    KING_MARGIN,
    ScoringOptions,
    _resample_counts,
    bootstrap_intervals,
    paired_comparison,
    score_rows,
    shares_from_cli,
)


def _rk_as_covariance(truth: np.ndarray, guess: np.ndarray, k: int) -> float:
    """Gorodkin's R_K in its covariance form: cov(X, Y) / sqrt(cov(X, X)·cov(Y, Y)) over one-hot matrices."""
    x, y = np.eye(k)[truth], np.eye(k)[guess]
    xc, yc = x - x.mean(0), y - y.mean(0)
    cov = lambda a, b: float(np.sum(a * b))  # noqa: E731
    denominator = math.sqrt(cov(xc, xc) * cov(yc, yc))
    return cov(xc, yc) / denominator if denominator else 0.0


def _sn34(mcc: float, brier: float, baseline: float) -> float:
    m = min(1.0, max(0.0, (mcc + 1) / 2)) ** 1.2
    b = max(0.0, (baseline - brier) / baseline) ** 1.8
    return min(1.0, max(0.0, math.sqrt(max(1e-12, m * b))))


def _random_run(seed: int, n: int = 60, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, size=n)
    logits = rng.normal(size=(n, k)) + 2.0 * np.eye(k)[truth] * rng.random((n, 1))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return truth, probs


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_gorodkin_equals_its_covariance_form_and_binary_mcc_at_k2(seed: int) -> None:
    truth, probs = _random_run(seed)
    guess = probs.argmax(1)
    c = np.zeros((3, 3))
    np.add.at(c, (truth, guess), 1)
    assert gorodkin_rk(c) == pytest.approx(_rk_as_covariance(truth, guess, 3), abs=1e-12)
    b_truth, b_guess = (truth > 0).astype(int), (guess > 0).astype(int)
    tp, tn = np.sum((b_guess == 1) & (b_truth == 1)), np.sum((b_guess == 0) & (b_truth == 0))
    fp, fn = np.sum((b_guess == 1) & (b_truth == 0)), np.sum((b_guess == 0) & (b_truth == 1))
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    c2 = np.zeros((2, 2))
    np.add.at(c2, (b_truth, b_guess), 1)
    assert gorodkin_rk(c2) == pytest.approx(mcc, abs=1e-12)


def test_score_samples_matches_the_contract_written_out() -> None:
    truth, probs = _random_run(5)
    p_ai = 1 - probs[:, 0]
    labels, preds = (truth > 0).astype(int), (p_ai > 0.5).astype(int)
    result = score_samples(labels, preds, p_ai, truth, probs)
    multi_brier = float(np.mean(np.sum((probs - np.eye(3)[truth]) ** 2, axis=1)))
    rk = _rk_as_covariance(truth, probs.argmax(1), 3)
    assert result["multiclass_brier"] == pytest.approx(multi_brier, abs=1e-12)
    assert result["gorodkin_mcc"] == pytest.approx(rk, abs=1e-12)
    assert result["multiclass_sn34_score"] == pytest.approx(_sn34(rk, multi_brier, 2 / 3), abs=1e-12)
    q = np.clip(p_ai, 1e-7, 1 - 1e-7)
    assert result["binary_brier"] == pytest.approx(float(np.mean((q - labels) ** 2)), abs=1e-12)
    assert result["accuracy"] == pytest.approx(float(np.mean(probs.argmax(1) == truth)))
    for cls in range(3):
        assert result["per_class_recall"][cls] == pytest.approx(float(np.mean(probs.argmax(1)[truth == cls] == cls)))


def test_projection_pads_truncates_and_expands_one_logit() -> None:
    np.testing.assert_allclose(project_probs([0.8], 0.8), [0.2, 0.8, 0.0])
    np.testing.assert_allclose(project_probs([0.3, 0.7], 0.7), [0.3, 0.7, 0.0])
    np.testing.assert_allclose(project_probs([0.1, 0.2, 0.3, 0.4], 0.9), [0.1, 0.2, 0.3])
    np.testing.assert_allclose(project_probs([0.1, 0.2, 0.3, 0.4], 0.9, k=4), [0.1, 0.2, 0.3, 0.4])


def test_a_two_logit_head_never_gets_a_semisynthetic_sample_right() -> None:
    truth = np.array([0, 1, 2, 2])
    probs = np.array([project_probs(p, p[1]) for p in ([0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.1, 0.9])])
    result = score_samples((truth > 0).astype(int), (probs[:, 1] > 0.5).astype(int), probs[:, 1], truth, probs)
    assert result["per_class_recall"][2] == 0.0
    assert result["accuracy"] == 0.5


def test_provenance_names_and_weights_follow_the_contract() -> None:
    assert [provenance_of(n) for n in ("sdxl-holdout-2026", "gasstation-may", "my-GasStation", "holdout")] == [
        "holdout", "gasstation", "gasstation", "public"]
    names = ["public"] * 6 + ["holdout"] * 3 + ["gasstation"]
    w = provenance_weights(names, {"holdout": 0.5, "public": 0.5})
    np.testing.assert_allclose(w, [0.5 * 10 / 6] * 6 + [0.5 * 10 / 3] * 3 + [0.0])
    np.testing.assert_allclose(provenance_weights(names, {}), np.ones(10))
    np.testing.assert_allclose(provenance_weights(names, {"holdout": 0.0}), np.ones(10))
    assert shares_from_cli(0.3, None) == pytest.approx({"holdout": 0.3, "public": 0.7})
    assert shares_from_cli(None, None) == {}
    with pytest.raises(UsageError):
        shares_from_cli(0.7, 0.6)
    with pytest.raises(UsageError):
        shares_from_cli(-0.1, None)


def _records(truth: np.ndarray, probs: np.ndarray, datasets: list[str]) -> list[dict]:
    p_ai = 1 - probs[:, 0]
    return [{"dataset": d, "sample": f"s{i}", "status": "ok", "label": int(t > 0), "predicted": int(p > 0.5),
             "p_ai": float(p), "class_label": int(t), "class_probs": list(map(float, row))}
            for i, (t, p, row, d) in enumerate(zip(truth, p_ai, probs, datasets))]


def test_integer_weights_equal_replicated_samples() -> None:
    truth, probs = _random_run(7, n=30)
    datasets = ["pub"] * 20 + ["x-holdout-1"] * 10
    # holdout share 2/3 over 30 samples: public weight (1/3)·30/20 = 0.5, holdout (2/3)·30/10 = 2 → ×4 relative.
    weighted = score_rows(_records(truth, probs, datasets), ScoringOptions(shares={"holdout": 2 / 3, "public": 1 / 3}))
    repeat = np.array([1] * 20 + [4] * 10)
    replicated = score_rows(_records(np.repeat(truth, repeat), np.repeat(probs, repeat, axis=0),
                                     list(np.repeat(datasets, repeat))), ScoringOptions())
    for key in ("gorodkin_mcc", "multiclass_brier", "binary_mcc", "binary_brier", "sn34_score", "accuracy"):
        assert weighted[key] == pytest.approx(replicated[key], abs=1e-12), key


def test_bootstrap_is_seeded_stratified_and_brackets_the_estimate() -> None:
    truth, probs = _random_run(8, n=80)
    datasets = ["a"] * 50 + ["b"] * 30
    rows = _records(truth, probs, datasets)
    counts = _resample_counts(datasets, np.ones(80), 200, 0)
    np.testing.assert_array_equal(counts[:, :50].sum(1), 50)
    np.testing.assert_array_equal(counts[:, 50:].sum(1), 30)
    options = ScoringOptions()
    first, again = bootstrap_intervals(rows, options), bootstrap_intervals(rows, options)
    assert first == again
    point = score_rows(rows, options)
    for key in ("sn34_score", "binary_sn34_score", "multiclass_sn34_score", "accuracy"):
        low, high = first[key]
        assert low <= point[key] <= high and high - low > 0


def test_paired_comparison_gives_delta_interval_and_verdict() -> None:
    truth, probs = _random_run(9, n=120)
    better = probs + 0.6 * np.eye(3)[truth]
    better /= better.sum(1, keepdims=True)
    datasets = ["a"] * 60 + ["b"] * 60
    ours, theirs = _records(truth, better, datasets), _records(truth, probs, datasets)
    result = paired_comparison(ours, theirs, ScoringOptions())
    assert result["delta_sn34"] == pytest.approx(score_rows(ours, ScoringOptions())["sn34_score"]
                                                 - score_rows(theirs, ScoringOptions())["sn34_score"])
    low, high = result["delta_interval"]
    assert low > KING_MARGIN and "with 95 % confidence" in result["verdict"]
    same = paired_comparison(theirs, theirs, ScoringOptions())
    assert same["delta_sn34"] == 0 and same["delta_interval"] == [0.0, 0.0] and "does not clear" in same["verdict"]
    with pytest.raises(UsageError, match="different samples"):
        paired_comparison(ours[:-1], theirs, ScoringOptions())


def test_cross_entropy_is_weighted_like_every_other_metric() -> None:
    truth, probs = _random_run(11, n=30)
    datasets = ["pub"] * 20 + ["x-holdout-1"] * 10
    weighted = score_rows(_records(truth, probs, datasets), ScoringOptions(shares={"holdout": 2 / 3, "public": 1 / 3}))
    repeat = np.array([1] * 20 + [4] * 10)
    replicated = score_rows(_records(np.repeat(truth, repeat), np.repeat(probs, repeat, axis=0),
                                     list(np.repeat(datasets, repeat))), ScoringOptions())
    assert weighted["binary_cross_entropy"] == pytest.approx(replicated["binary_cross_entropy"], abs=1e-12)
    p_ai = np.clip(1 - probs[:, 0], 1e-7, 1 - 1e-7)
    y = (truth > 0).astype(float)
    plain = score_rows(_records(truth, probs, datasets), ScoringOptions())
    assert plain["binary_cross_entropy"] == pytest.approx(float(-np.mean(y * np.log(p_ai) + (1 - y) * np.log(1 - p_ai))))


@pytest.mark.parametrize("against", ["binary", "multiclass"])
def test_accuracy_interval_is_of_the_accuracy_the_profile_reports(against):
    """A model that calls everything synthetic: binary accuracy 2/3, argmax-vs-class accuracy 1/3."""
    from validator_sim.scoring import ScoringOptions, bootstrap_intervals

    rows = []
    for i, (dataset, class_label) in enumerate([("r", 0), ("s", 1), ("m", 2)] * 20):
        rows.append({"dataset": dataset, "sample": str(i), "status": "ok", "label": int(class_label > 0),
                     "predicted": 1, "p_ai": 0.9, "class_label": class_label, "class_probs": [0.1, 0.8, 0.1]})
    low, high = bootstrap_intervals(rows, ScoringOptions(), accuracy_against=against)["accuracy"]
    expected = 2 / 3 if against == "binary" else 1 / 3
    assert low <= expected <= high
