"""Every documented `kit train` route, offline: probe and `--task classify` on a base HF model, `--train-last`,
2-class heads, Ctrl-C / crash keeping the best checkpoint, `--out` checked first, bad data refused, and torchrun (DDP)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from discriminator.cli.app import app
from discriminator.errors import InputError, UsageError
from discriminator.sources.checkpoint import read_checkpoint
from discriminator.sources.weights import read_state_dict
from discriminator.train import TrainRequest, train_detector
from discriminator.train.trainer import TrainingInterrupted, epoch_batches, _World
from tests.train_helpers import write_image_split

REPO = Path(__file__).resolve().parents[1]
HELPERS = REPO / "tests" / "train_helpers.py"
runner = CliRunner()
SMALL = ["--height", "32", "--width", "32", "--batch-size", "8"]


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    root = tmp_path_factory.mktemp("route-data")
    return write_image_split(root / "train", per_class=8, seed=0), write_image_split(root / "val", per_class=6, seed=1)


def vit_config(**overrides):
    from transformers import ViTConfig

    return ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=16, **overrides)


@pytest.fixture(scope="module")
def base_vit(tmp_path_factory) -> Path:
    from transformers import ViTModel

    folder = tmp_path_factory.mktemp("hf") / "vit-base"
    torch.manual_seed(0)
    ViTModel(vit_config(), add_pooling_layer=True).save_pretrained(folder)
    return folder


def one_line_error(result) -> str:
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_probe_on_a_base_model_trains_a_three_class_head_that_builds(tmp_path, splits, base_vit):
    from discriminator.build import BuildRequest, build_detector

    train_dir, val_dir = splits
    out = tmp_path / "probe"
    result = runner.invoke(app, ["train", "image", "--data", str(train_dir), "--val", str(val_dir), "--model", f"hf:{base_vit}",
                                 "--mode", "probe", "--epochs", "5", "--out", str(out), *SMALL])
    assert result.exit_code == 0, result.output
    record = read_checkpoint(out)
    assert record["task"] == "classify" and record["spec"]["class_names"] == ["real", "synthetic", "semisynthetic"]
    # Only the new head moved: the base model's weights are the saved ones.
    from transformers import ViTModel

    base = ViTModel.from_pretrained(base_vit).state_dict()
    trained = read_state_dict(out / "model.safetensors")
    shared = [k for k in trained if k.split(".", 1)[-1] in base and "classifier" not in k and "head" not in k]
    assert shared and all(torch.equal(trained[k], base[k.split(".", 1)[-1]]) for k in shared)
    built = build_detector(BuildRequest(modality="image", model=str(out), out_dir=tmp_path / "build"))
    assert built.spec.task == "classify" and built.spec.num_classes == 3 and built.head_trained


def test_task_classify_fine_tunes_a_base_model_and_task_is_not_a_model_option(tmp_path, splits, base_vit):
    train_dir, val_dir = splits
    args = ["train", "image", "--data", str(train_dir), "--val", str(val_dir), "--model", f"hf:{base_vit}", "--epochs", "1",
            *SMALL]
    plain = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert "--task classify" in one_line_error(plain) and plain.exit_code == 2
    as_option = runner.invoke(app, [*args, "--out", str(tmp_path / "b"), "--model-option", "task=classify"])
    assert "--task classify" in one_line_error(as_option)
    ok = runner.invoke(app, [*args, "--out", str(tmp_path / "c"), "--task", "classify"])
    assert ok.exit_code == 0, ok.output
    assert read_checkpoint(tmp_path / "c")["task"] == "classify"


def test_train_last_moves_only_the_last_blocks_and_the_head(tmp_path, splits, base_vit):
    from transformers import ViTForImageClassification

    folder = tmp_path / "vit-cls"
    torch.manual_seed(1)
    ViTForImageClassification(vit_config(num_labels=3)).save_pretrained(folder)
    train_dir, val_dir = splits
    result = train_detector(TrainRequest(modality="image", data=train_dir, val=val_dir, model=f"hf:{folder}", train_last=1,
                                         epochs=2, batch_size=8, learning_rate=1e-2, height=32, width=32, ema=False,
                                         out=tmp_path / "last1", show_progress=False))
    assert result.trained_part.startswith("last 1 of 2 blocks")
    before = ViTForImageClassification.from_pretrained(folder).state_dict()
    after = read_state_dict(tmp_path / "last1" / "model.safetensors")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    layer = ".layers." if any(".layers." in k for k in before) else ".layer."  # transformers 5 renamed encoder.layer
    assert changed and not any(f"{layer}0." in k or "embeddings" in k for k in changed)
    assert any(k.startswith("classifier.") for k in changed) and any(f"{layer}1." in k for k in changed)
    with pytest.raises(UsageError, match="between 1 and 2"):
        train_detector(TrainRequest(modality="image", data=train_dir, val=val_dir, model=f"hf:{folder}", train_last=3,
                                    epochs=1, height=32, width=32, out=tmp_path / "last3", show_progress=False))


def test_a_two_class_real_ai_head_is_kept_and_trains_with_classes_real_ai(tmp_path, splits):
    from transformers import ViTForImageClassification

    from discriminator.build import BuildRequest, build_detector

    folder = tmp_path / "vit-real-ai"
    torch.manual_seed(2)
    ViTForImageClassification(vit_config(num_labels=2, id2label={0: "real", 1: "ai"}, label2id={"real": 0, "ai": 1})
                              ).save_pretrained(folder)
    kept = build_detector(BuildRequest(modality="image", model=f"hf:{folder}", out_dir=tmp_path / "b2", height=32, width=32))
    assert kept.spec.class_names == ("real", "ai") and kept.head_trained
    train_dir, val_dir = splits
    result = runner.invoke(app, ["train", "image", "--data", str(train_dir), "--val", str(val_dir), "--model", f"hf:{folder}",
                                 "--classes", "real,ai", "--epochs", "1", "--out", str(tmp_path / "two"), *SMALL])
    assert result.exit_code == 0, result.output
    assert read_checkpoint(tmp_path / "two")["spec"]["class_names"] == ["real", "ai"]
    built = build_detector(BuildRequest(modality="image", model=str(tmp_path / "two"), out_dir=tmp_path / "b-two"))
    assert built.spec.num_classes == 2
    wrong = runner.invoke(app, ["train", "image", "--data", str(train_dir), "--val", str(val_dir), "--classes", "real,ai",
                                "--model-option", "channels=4,8", "--epochs", "1", "--out", str(tmp_path / "ex"), *SMALL])
    assert "3-output head, not 2" in one_line_error(wrong)


@pytest.mark.parametrize("failure", [KeyboardInterrupt, RuntimeError])
def test_ctrl_c_or_a_crash_keeps_the_best_checkpoint_so_far_and_says_where(tmp_path, splits, failure):
    train_dir, val_dir = splits
    seen = []

    def on_epoch(record):
        seen.append(record)
        if record.epoch == 3:
            raise failure("stop here")

    out = tmp_path / "run"
    with pytest.raises(TrainingInterrupted) as caught:
        train_detector(TrainRequest(modality="image", data=train_dir, val=val_dir, epochs=10, batch_size=8, height=32,
                                    width=32, source_options={"channels": [4, 8]}, out=out, show_progress=False),
                       on_epoch=on_epoch)
    best = max(seen, key=lambda r: (r.val_sn34, -r.val_loss))
    if best.epoch == 0:
        assert "nothing was saved" in caught.value.message and not (out / "checkpoint.json").exists()
        return
    assert str(out) in caught.value.message and f"epoch {best.epoch}" in caught.value.message
    record = read_checkpoint(out)
    assert record["training"]["complete"] is False and record["training"]["best_epoch"] == best.epoch
    assert record["spec"]["temperature"] == 1.0 and not list(out.glob(".kit-partial-*"))


def test_out_is_checked_before_any_work(tmp_path, splits):
    train_dir, _ = splits
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = runner.invoke(app, ["train", "image", "--data", str(train_dir), "--val", str(tmp_path / "no-val-yet"),
                                 "--out", str(blocker / "run"), *SMALL])
    assert "cannot write the checkpoint" in one_line_error(result) and result.exit_code == 2


def test_one_class_data_and_unknown_media_type_folders_are_refused(tmp_path, splits):
    train_dir, val_dir = splits
    only_real = tmp_path / "only-real"
    write_image_split(tmp_path / "tmp-split", per_class=3, seed=4)
    (only_real / "real").mkdir(parents=True)
    (tmp_path / "tmp-split" / "real" / "real-pics").rename(only_real / "real" / "real-pics")
    with pytest.raises(InputError, match="only real samples"):
        train_detector(TrainRequest(modality="image", data=only_real, val=val_dir, height=32, width=32,
                                    out=tmp_path / "o1", show_progress=False))
    misnamed = tmp_path / "misnamed"
    (misnamed / "real").mkdir(parents=True)
    (tmp_path / "tmp-split" / "synthetic").rename(misnamed / "fake")
    (tmp_path / "tmp-split" / "semisynthetic").rename(misnamed / "Synthetic")
    result = runner.invoke(app, ["train", "image", "--data", str(misnamed), "--val", str(val_dir), "--out", str(tmp_path / "o2"),
                                 *SMALL])
    line = one_line_error(result)
    assert "Synthetic/, fake/" in line and "real, synthetic, semisynthetic" in line and result.exit_code == 2
    assert not (tmp_path / "o2").exists()


def test_global_batches_are_the_same_for_one_and_two_processes():
    one = epoch_batches(37, 8, seed=3, epoch=2, world=_World(0, 1))
    two = [epoch_batches(37, 8, seed=3, epoch=2, world=_World(rank, 2)) for rank in (0, 1)]
    assert len(one) == len(two[0]) == len(two[1]) == 4
    for k, batch in enumerate(one):
        assert sorted(batch.tolist()) == sorted(two[0][k].tolist() + two[1][k].tolist())


def test_torchrun_two_cpu_processes_match_one_process(tmp_path, splits):
    """Two gloo processes (DDP) and one process, same seed: a model without batch norm computes the same
    averaged gradients, so validation figures agree to float rounding (tolerance 1e-3 on loss and sn34)."""
    train_dir, val_dir = splits
    common = ["train", "image", "--data", str(train_dir), "--val", str(val_dir), "--model", f"py:{HELPERS}:tiny_cnn",
              "--epochs", "3", "--lr", "1e-2", "--no-calibrate", *SMALL]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    one = runner.invoke(app, [*common, "--out", str(tmp_path / "one")])
    assert one.exit_code == 0, one.output
    completed = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
                                "-m", "discriminator.cli.app", *common, "--out", str(tmp_path / "two")],
                               cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "2 processes" in completed.stdout + completed.stderr
    single = read_checkpoint(tmp_path / "one")["training"]
    double = read_checkpoint(tmp_path / "two")["training"]
    assert double["processes"] == 2 and single["processes"] == 1
    for a, b in zip(single["history"], double["history"], strict=True):
        assert abs(a["val_loss"] - b["val_loss"]) < 1e-3 and abs(a["val_sn34"] - b["val_sn34"]) < 1e-3
    assert single["best_epoch"] == double["best_epoch"]
