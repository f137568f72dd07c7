"""`kit train` and `kit calibrate` from the command line: success output, and one-line errors with non-zero exits."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from discriminator.cli.app import app
from discriminator.cli.train import parse_model_options
from discriminator.errors import UsageError
from discriminator.sources.checkpoint import read_checkpoint
from tests.train_helpers import write_image_split

runner = CliRunner()
TINY = ["--height", "32", "--width", "32", "--model-option", "channels=4,8", "--epochs", "1", "--batch-size", "8"]


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-data")
    return write_image_split(root / "train", per_class=6, seed=0), write_image_split(root / "val", per_class=4, seed=1)


def one_line_error(result) -> str:
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_train_then_calibrate_then_refuse_to_overwrite(tmp_path, splits):
    train_dir, val_dir = splits
    out = tmp_path / "run"
    args = ["train", "image", "--data", str(train_dir), "--val", str(val_dir), "--out", str(out), *TINY]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"checkpoint {out}" in result.output and "Brier" in result.output and f"kit build image --model {out}" in result.output
    assert read_checkpoint(out)["source_options"] == {"channels": [4, 8]}
    # Today's objective by default: --epochs 1 gives "of 1" (never "of 2"), kept by the multiclass sn34,
    # and the calibration table shows both readings before and after.
    assert "of 1 by multiclass sn34" in result.output and "temperature fitted for the multiclass Brier" in result.output
    assert "3-class Brier" in result.output and "binary Brier" in result.output
    assert read_checkpoint(out)["training"]["profile"] == "current"

    again = runner.invoke(app, args)
    assert "already exists" in one_line_error(again) and again.exit_code == 1

    refused = runner.invoke(app, ["calibrate", str(out), "--data", str(val_dir)])
    assert "--force" in one_line_error(refused)
    calibrated = runner.invoke(app, ["calibrate", str(out), "--data", str(val_dir), "--out", str(tmp_path / "recal")])
    assert calibrated.exit_code == 0, calibrated.output
    assert "before" in calibrated.output and "after" in calibrated.output and "3-class sn34" in calibrated.output
    assert "current pixels, temperature fitted for the multiclass Brier" in " ".join(calibrated.output.split())
    assert read_checkpoint(tmp_path / "recal")["spec"]["temperature"] > 0


@pytest.mark.parametrize("case,expected", [
    ("missing data", "is not a folder"),
    ("empty dataset", "holds no image or video files"),
    ("bad option", "not KEY=VALUE"),
    ("bad mode", "distill"),
    ("no threads", "--threads must be at least 1"),
    ("zero batch", "--batch-size must be positive, got 0"),
])
def test_mistakes_are_one_line_with_a_non_zero_exit(tmp_path, splits, case, expected):
    train_dir, val_dir = splits
    empty = tmp_path / "empty"
    (empty / "real" / "nothing-here").mkdir(parents=True)
    data = {"missing data": tmp_path / "nope", "empty dataset": empty}.get(case, train_dir)
    extra = {"bad option": ["--model-option", "channels"], "bad mode": ["--mode", "distill"],
             "no threads": ["--threads", "0"], "zero batch": ["--batch-size", "0"]}.get(case, [])
    result = runner.invoke(app, ["train", "image", "--data", str(data), "--val", str(val_dir), "--out", str(tmp_path / "o"),
                                 *TINY, *extra])
    assert expected in result.output
    assert result.exit_code == 2


def test_model_options_parse_numbers_lists_and_text():
    assert parse_model_options(["channels=8,16,32", "seed=3", "name=abc", "dims=[1, 2]"]) == {
        "channels": [8, 16, 32], "seed": 3, "name": "abc", "dims": [1, 2]}
    with pytest.raises(UsageError):
        parse_model_options(["=3"])


def test_threads_sets_the_training_threads(tmp_path, splits):
    import torch

    train_dir, val_dir = splits
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        result = runner.invoke(app, ["train", "image", "--data", str(train_dir), "--val", str(val_dir),
                                     "--out", str(tmp_path / "run"), *TINY, "--threads", "1"])
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 1
        assert read_checkpoint(tmp_path / "run")["training"]["threads"] == 1  # recorded: it changes the rounding
    finally:
        torch.set_num_threads(before)


def test_a_run_that_beats_nothing_warns_instead_of_reporting_success(tmp_path, splits):
    train_dir, val_dir = splits
    # A learning rate of 1000 wrecks the weights in one step, so the starting weights stay the best.
    result = runner.invoke(app, ["train", "image", "--data", str(train_dir), "--val", str(val_dir),
                                 "--out", str(tmp_path / "run"), *TINY, "--lr", "1e3", "--no-ema"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "warning: checkpoint" in text and "no epoch of 1 beat the starting weights" in text
    assert "train longer (--epochs)" in text and "next: kit build" not in text and "✓ checkpoint" not in text
    assert read_checkpoint(tmp_path / "run")["training"]["best_epoch"] == 0
