"""Temperature scaling: the fit, the scores it reports, and a calibrated checkpoint's exported logits."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from discriminator.build import BuildRequest, build_detector
from discriminator.errors import OutputExistsError, UsageError
from discriminator.sources.checkpoint import read_checkpoint, write_checkpoint
from discriminator.train import calibrate_checkpoint, fit_temperature, score_logits
from discriminator.train.calibration import calibrate_logits, expected_calibration_error, p_ai
from discriminator.train.data import load_split
from tests.train_helpers import ColourScore, write_colour_split

HELPERS = "tests/train_helpers.py"


def overconfident_logits(count: int, factor: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """3-class logits whose true p(AI) is sigmoid(s), then multiplied by `factor` (over-confident when > 1)."""
    rng = np.random.default_rng(seed)
    s = rng.normal(0.0, 1.5, count)
    labels = (rng.random(count) < 1 / (1 + np.exp(-s))).astype(np.int64)
    # p(AI) = 1 − softmax([0, s − ln 2, s − ln 2])[0] = sigmoid(s) exactly.
    logits = np.stack([np.zeros(count), s - np.log(2), s - np.log(2)], axis=1) * factor
    return logits.astype(np.float32), labels


def test_temperature_undoes_a_known_overconfidence_and_lowers_brier():
    logits, labels = overconfident_logits(4000, factor=5.0)
    temperature = fit_temperature(logits, labels)
    assert 4.0 < temperature < 6.2  # the true factor is 5
    before, after = score_logits(logits, labels, 1.0), score_logits(logits, labels, temperature)
    assert after.brier < before.brier - 0.02
    assert after.ece < before.ece and after.sn34 > before.sn34
    assert (after.accuracy, after.mcc) == (before.accuracy, before.mcc)  # dividing by T > 0 keeps every argmax
    # A minimum: nudging T either way does not lower Brier.
    for nudged in (temperature * 0.9, temperature * 1.1):
        assert score_logits(logits, labels, nudged).brier >= after.brier - 1e-9


def test_calibrated_logits_keep_a_temperature_near_one():
    logits, labels = overconfident_logits(4000, factor=1.0, seed=3)
    assert 0.8 < fit_temperature(logits, labels) < 1.25


def test_underconfident_logits_get_sharpened():
    logits, labels = overconfident_logits(4000, factor=0.3, seed=4)
    assert fit_temperature(logits, labels) < 0.5


def test_p_ai_and_ece_by_hand():
    np.testing.assert_allclose(p_ai(np.array([[0.0, 0.0, 0.0], [np.log(3.0), 0.0, 0.0]])), [2 / 3, 0.4])
    # Every sample says 0.9 but only half are AI: one bin, |0.9 − 0.5| = 0.4.
    assert expected_calibration_error(np.array([1, 0, 1, 0]), np.full(4, 0.9)) == pytest.approx(0.4)
    # Two bins, each exactly right: ECE 0.
    assert expected_calibration_error(np.array([0, 0, 1, 1]), np.array([0.0, 0.0, 1.0, 1.0])) == pytest.approx(0.0)


def test_score_logits_matches_the_validator_rule_for_ties_and_two_logits():
    labels = np.array([0, 1])
    # A 3-way tie goes to index 0 (real); a 2-logit row reads p(AI) from index 1.
    tied = score_logits(np.array([[1.0, 1.0, 1.0], [0.0, 2.0, 0.0]], dtype=np.float32), labels)
    assert tied.accuracy == 1.0
    two = score_logits(np.array([[2.0, 0.0], [0.0, 2.0]], dtype=np.float32), labels)
    expected_brier = (1 / (1 + np.exp(2.0))) ** 2
    assert two.brier == pytest.approx(expected_brier, rel=1e-6)


def test_calibrating_an_overconfident_checkpoint_lowers_brier_and_the_build_carries_t(tmp_path):
    val = write_colour_split(tmp_path / "val", per_class=40, seed=1)
    source = f"py:{HELPERS}:colour_score"
    ckpt = write_checkpoint(tmp_path / "ckpt", ColourScore(), source, "image", {}, {"height": 24, "width": 24})

    with pytest.raises(OutputExistsError):
        calibrate_checkpoint(ckpt, val, show_progress=False)  # in place needs force
    result = calibrate_checkpoint(ckpt, val, out=tmp_path / "calibrated", show_progress=False)
    report = result.report
    assert report.before.temperature == 1.0 and report.temperature > 1.5
    assert report.after.brier < report.before.brier - 0.01
    assert report.after.ece < report.before.ece
    assert report.after.sn34 > report.before.sn34
    record = read_checkpoint(tmp_path / "calibrated")
    assert record["spec"]["temperature"] == pytest.approx(report.temperature)
    assert read_checkpoint(ckpt)["spec"].get("temperature", 1.0) == 1.0  # the original is untouched

    # ONNX only: the py: source is a test helper module, not a stand-alone bundle model.py.
    built = build_detector(BuildRequest(modality="image", model=str(tmp_path / "calibrated"), out_dir=tmp_path / "build",
                                        formats=("onnx",)))
    assert built.spec.temperature == pytest.approx(report.temperature)
    split = load_split(val, "image", 24, 24, None, built.spec.class_names)
    session = ort.InferenceSession(str(built.onnx_path), providers=["CPUExecutionProvider"])
    exported = session.run(None, {session.get_inputs()[0].name: split.inputs.numpy()})[0]
    with torch.no_grad():
        raw = ColourScore()((split.inputs.float() / 255 - 0.5) / 0.5).numpy()
    np.testing.assert_allclose(exported, raw / report.temperature, atol=1e-4)
    # Scoring the exported logits as the validator would gives the reported "after" figures.
    assert score_logits(exported, split.binary_labels).brier == pytest.approx(report.after.brier, abs=1e-6)

    again = calibrate_checkpoint(tmp_path / "calibrated", val, force=True, show_progress=False)
    assert again.report.before.temperature == pytest.approx(report.temperature)  # "before" is the stored T
    assert again.report.temperature == pytest.approx(report.temperature, rel=1e-6)
    assert json.loads((tmp_path / "calibrated" / "checkpoint.json").read_text())["calibration"]["samples"] == 80


def test_calibrate_refuses_a_folder_that_is_not_a_checkpoint(tmp_path):
    with pytest.raises(UsageError):
        calibrate_checkpoint(tmp_path, tmp_path, show_progress=False)


def test_multiclass_temperature_minimises_the_three_class_brier_and_both_scorings_are_reported():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 300)
    guessed = np.where(rng.random(300) < 0.75, labels, rng.integers(0, 3, 300))  # right 75-83 % of the time …
    logits = (np.eye(3)[guessed] * 8.0 + rng.normal(0, 0.5, (300, 3))).astype(np.float32)  # … and always sure
    temperature = fit_temperature(logits, labels, "multiclass")
    assert temperature > 1.0
    after = score_logits(logits, labels, temperature)
    for nudged in (temperature * 0.9, temperature * 1.1):
        assert score_logits(logits, labels, nudged).multiclass_brier >= after.multiclass_brier - 1e-9
    assert score_logits(logits, labels, 1.0).multiclass_sn34 < after.multiclass_sn34
    # The binary fit minimises the binary Brier instead, and generally lands elsewhere.
    binary_t = fit_temperature(logits, labels, "binary")
    assert score_logits(logits, labels, binary_t).brier <= after.brier + 1e-9


def test_a_two_logit_head_is_zero_padded_for_the_three_class_scoring():
    labels = np.array([0, 1, 2, 2])
    card = score_logits(np.array([[3.0, 0.0], [0.0, 3.0], [0.0, 3.0], [0.0, 3.0]], dtype=np.float32), labels)
    assert card.accuracy == 1.0 and card.multiclass_accuracy == 0.5  # semisynthetic can never be argmax
    p = 1 / (1 + np.exp(-3.0))
    expected = np.mean([(p - 1) ** 2 + (1 - p) ** 2, (1 - p) ** 2 + (p - 1) ** 2, (1 - p) ** 2 + p ** 2 + 1, (1 - p) ** 2 + p ** 2 + 1])
    assert card.multiclass_brier == pytest.approx(expected, abs=1e-6)


def test_todays_temperature_lowers_the_three_class_brier_without_raising_the_binary_one():
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 3, 400)
    # Real vs AI is nearly always right and sure; synthetic vs semisynthetic is a coin toss, just as sure.
    guessed = np.where(labels == 0, 0, np.where(rng.random(400) < 0.6, labels, 3 - labels))
    guessed = np.where(rng.random(400) < 0.04, rng.integers(0, 3, 400), guessed)
    logits = (np.eye(3)[guessed] * 9.0 + rng.normal(0, 0.3, (400, 3))).astype(np.float32)
    report = calibrate_logits(logits, labels, 1.0, "current")
    assert report.scoring == "multiclass"
    assert report.after.multiclass_brier < report.before.multiclass_brier
    assert report.after.brier <= report.before.brier + 1e-9
    # The unconstrained 3-class fit softens further and pays for it in the binary Brier; the joint fit does not.
    free = score_logits(logits, labels, fit_temperature(logits, labels, "multiclass"))
    assert free.brier > report.before.brier
    assert report.after.multiclass_brier >= free.multiclass_brier - 1e-9
