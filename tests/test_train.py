"""`kit train` as a library: the validator's pixels in memory, fine-tuning, the linear probe, and build round trips."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from discriminator.build import BuildRequest, build_detector
from discriminator.errors import InputError, OutputExistsError, UsageError
from discriminator.sources.checkpoint import read_checkpoint
from discriminator.sources.weights import read_state_dict
from discriminator.train import TrainRequest, train_detector
from discriminator.train.calibration import score_logits
from discriminator.train.data import load_split
from tests.sim_helpers import write_video
from tests.train_helpers import write_image_split, write_video_split
from validator_sim.decode import decode_video
from validator_sim.preprocess import clip_to_tchw

CLASSES = ("real", "synthetic", "semisynthetic")
TINY_IMAGE = {"channels": [4, 8]}


@pytest.fixture(scope="module")
def image_splits(tmp_path_factory):
    root = tmp_path_factory.mktemp("image-data")
    return write_image_split(root / "train", per_class=16, seed=0), write_image_split(root / "val", per_class=8, seed=1)


@pytest.fixture(scope="module")
def video_splits(tmp_path_factory):
    root = tmp_path_factory.mktemp("video-data")
    return write_video_split(root / "train", per_class=6, seed=0), write_video_split(root / "val", per_class=4, seed=1)


def run_onnx(path, inputs: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: inputs})[0]


def test_load_split_gives_the_validators_frames_labels_and_drop_counts(tmp_path, video_splits):
    train_dir, _ = video_splits
    broken = train_dir / "real" / "real-clips" / "zz-broken.mkv"
    broken.write_bytes(b"not a video at all")
    try:
        split = load_split(train_dir, "video", 24, 24, 16, CLASSES)
    finally:
        broken.unlink()
    assert split.inputs.shape == (18, 16, 3, 24, 24) and split.inputs.dtype == torch.uint8
    assert split.class_counts(CLASSES) == {"real": 6, "synthetic": 6, "semisynthetic": 6}
    assert split.binary_labels.tolist() == [0 if c == 0 else 1 for c in split.labels.tolist()]
    assert split.dropped == {"not a decodable video": 1}
    # 6-frame clips: frames 6..15 repeat the last one, exactly as the simulator pads them.
    first = sorted((train_dir / "real" / "real-clips").iterdir())[0]
    expected = clip_to_tchw(decode_video(first, 16), 16, 24, 24, "shortest_edge_center_crop")
    index = split.dataset_names.index("real-clips")
    np.testing.assert_array_equal(split.inputs[index].numpy(), expected)
    assert torch.equal(split.inputs[index, 5], split.inputs[index, 15])


def test_load_split_names_the_problem_when_there_is_nothing_to_load(tmp_path):
    with pytest.raises(InputError, match="not a folder"):
        load_split(tmp_path / "missing", "image", 32, 32, None, CLASSES)
    (tmp_path / "real" / "only-clips").mkdir(parents=True)
    write_video(tmp_path / "real" / "only-clips" / "a.mkv", [np.zeros((16, 16, 3), np.uint8)] * 2)
    with pytest.raises(InputError, match="no image datasets"):
        load_split(tmp_path, "image", 32, 32, None, CLASSES)


def test_finetune_lowers_validation_loss_and_keeps_the_best_epoch(tmp_path, image_splits):
    train_dir, val_dir = image_splits
    result = train_detector(TrainRequest(
        modality="image", data=train_dir, val=val_dir, epochs=5, batch_size=8, learning_rate=1e-2, height=32, width=32,
        out=tmp_path / "ckpt", source_options=TINY_IMAGE, show_progress=False))
    losses = [r.val_loss for r in result.history]
    assert result.history[0].epoch == 0 and result.history[0].train_loss is None
    assert min(losses[1:]) < losses[0] - 0.05
    best = result.history[result.best_epoch]
    assert best.val_sn34 == max(r.val_sn34 for r in result.history)
    record = read_checkpoint(result.checkpoint)
    assert record["source"] == "example-image" and record["source_options"] == TINY_IMAGE
    assert record["training"]["best_epoch"] == result.best_epoch and record["spec"]["height"] == 32
    # The same seed trains the same model: identical figures on one thread or without the EMA; with the EMA on
    # two threads, oneDNN's evaluation of the averaged copy differed in the last float bits (≤ 3e-7) between runs.
    again = train_detector(TrainRequest(
        modality="image", data=train_dir, val=val_dir, epochs=5, batch_size=8, learning_rate=1e-2, height=32, width=32,
        out=tmp_path / "again", source_options=TINY_IMAGE, show_progress=False))
    assert [r.val_loss for r in again.history] == pytest.approx(losses, rel=1e-5, abs=1e-6)


def test_probe_trains_only_the_head_on_cached_embeddings(tmp_path, image_splits):
    train_dir, val_dir = image_splits
    start = train_detector(TrainRequest(
        modality="image", data=train_dir, val=val_dir, epochs=1, batch_size=8, height=32, width=32,
        out=tmp_path / "start", source_options=TINY_IMAGE, calibrate=False, show_progress=False))
    probe = train_detector(TrainRequest(
        modality="image", data=train_dir, val=val_dir, model=str(start.checkpoint), mode="probe", epochs=40,
        out=tmp_path / "probe", show_progress=False))
    assert min(r.val_loss for r in probe.history[1:]) < probe.history[0].val_loss
    before, after = read_state_dict(start.checkpoint / "model.safetensors"), read_state_dict(probe.checkpoint / "model.safetensors")
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed == ["head.1.bias", "head.1.weight"]
    assert read_checkpoint(probe.checkpoint)["source"] == "example-image"  # the base source, not the folder


def test_trained_video_checkpoint_round_trips_through_build(tmp_path, video_splits):
    train_dir, val_dir = video_splits
    result = train_detector(TrainRequest(
        modality="video", data=train_dir, val=val_dir, epochs=1, batch_size=6, height=32, width=32,
        out=tmp_path / "ckpt", source_options={"channels": [4, 8]}, show_progress=False))
    assert result.calibration is not None and result.spec.temperature == result.calibration.temperature
    built = build_detector(BuildRequest(modality="video", model=str(result.checkpoint), out_dir=tmp_path / "build"))
    assert built.spec.temperature == pytest.approx(result.spec.temperature)
    assert (built.spec.height, built.spec.width, built.spec.frames) == (32, 32, 16)
    val = load_split(val_dir, "video", 32, 32, 16, CLASSES)
    exported = run_onnx(built.onnx_path, val.inputs.numpy())
    # The build scores exactly what training reported after calibration.
    assert score_logits(exported, val.binary_labels).brier == pytest.approx(result.calibration.after.brier, abs=1e-5)
    assert score_logits(exported, val.binary_labels).accuracy == result.calibration.after.accuracy


def test_train_refuses_to_overwrite_and_rejects_bad_settings(tmp_path, image_splits):
    train_dir, val_dir = image_splits
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "checkpoint.json").write_text("{}")
    base = dict(modality="image", data=train_dir, val=val_dir, height=32, width=32, source_options=TINY_IMAGE, show_progress=False)
    with pytest.raises(OutputExistsError):
        train_detector(TrainRequest(out=tmp_path / "ckpt", **base))
    with pytest.raises(UsageError, match="--mode"):
        train_detector(TrainRequest(out=tmp_path / "other", mode="distill", **base))
    with pytest.raises(UsageError, match="--epochs"):
        train_detector(TrainRequest(out=tmp_path / "other", epochs=0, **base))
