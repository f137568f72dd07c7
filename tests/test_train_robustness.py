"""`kit train --robustness-augment P`: copies of a seeded P-share of the training samples through the evaluator's own
robustness chain (`validator_sim.robustness`), computed once at load, recorded in the checkpoint, off by default."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import click
import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

import discriminator.train.data as data_module
from discriminator.cli.app import app
from discriminator.demo import train_args
from discriminator.errors import UsageError
from discriminator.sources.checkpoint import read_checkpoint
from discriminator.train import TrainRequest, train_detector
from discriminator.train.data import choose_robustness_copies, load_split, robustness_copies
from discriminator.train.presets import DEMO_PRESETS
from discriminator.train.from_bundle import BundleTrainRequest, train_from_bundle
from tests.sim_helpers import image_bytes
from tests.train_helpers import MEDIA_TYPES, picture, write_image_split, write_video_split
from validator_sim.datasets import iter_payloads
from validator_sim.decode import decode_image, decode_video, video_decoder
from validator_sim.preprocess import clip_to_tchw, image_to_chw
from validator_sim.profiles import get_profile
from validator_sim.robustness import augment_clip, augment_image

CLASSES = ("real", "synthetic", "semisynthetic")
runner = CliRunner()
TINY = ["--height", "32", "--width", "32", "--model-option", "channels=4,8", "--epochs", "1", "--batch-size", "8"]


@pytest.fixture(scope="module")
def large_images(tmp_path_factory):
    """Pictures above 512 px on both sides, so the chain's ×0.5 down/up runs too (it skips sides ≤ 512)."""
    root = tmp_path_factory.mktemp("large-images")
    rng = np.random.default_rng(5)
    for media_type in MEDIA_TYPES:
        folder = root / media_type / f"{media_type}-large"
        folder.mkdir(parents=True)
        for i in range(3):
            (folder / f"{i}.png").write_bytes(image_bytes(picture(rng, media_type, 530, 600)))
    return root


@pytest.fixture(scope="module")
def image_splits(tmp_path_factory):
    root = tmp_path_factory.mktemp("robust-image-data")
    return write_image_split(root / "train", per_class=10, seed=0), write_image_split(root / "val", per_class=4, seed=1)


@pytest.fixture(scope="module")
def video_split(tmp_path_factory):
    return write_video_split(tmp_path_factory.mktemp("robust-video-data") / "train", per_class=3, seed=0)


def payload_of(split, position: int):
    listing, index = split.origins[position]
    return next(payload for _key, payload in iter_payloads(listing, [index]))


def test_image_copies_are_the_evaluators_chain_on_the_decoded_picture_before_the_resize(large_images):
    profile = get_profile("current")
    split = load_split(large_images, "image", 48, 40, None, CLASSES, profile)
    copies = robustness_copies(split, 1.0, 0, "image", 48, 40, None, CLASSES, profile)
    assert len(copies) == len(split) == 9 and copies.labels.tolist() == split.labels.tolist()
    assert copies.dataset_names == split.dataset_names and copies.media_labels.tolist() == split.media_labels.tolist()
    for position in range(len(split)):
        decoded = decode_image(payload_of(split, position), profile.image_resave)
        expected = image_to_chw(augment_image(decoded), 48, 40, profile.resize)
        np.testing.assert_array_equal(copies.inputs[position].numpy(), expected)
        assert not np.array_equal(expected, split.inputs[position].numpy())  # the chain changed the pixels
    # The chain runs on the decoded picture, not on the detector's 48×40 crop: the order of the bench's pass.
    resized_first = image_to_chw(decode_image(payload_of(split, 0), profile.image_resave), 48, 40, profile.resize)
    chain_after_resize = augment_image(np.ascontiguousarray(resized_first.transpose(1, 2, 0))).transpose(2, 0, 1)
    assert not np.array_equal(copies.inputs[0].numpy(), chain_after_resize)


def test_video_copies_are_the_evaluators_h264_chain_on_the_decoded_frames(video_split):
    profile = get_profile("current")
    split = load_split(video_split, "video", 24, 24, 8, CLASSES, profile)
    copies = robustness_copies(split, 1.0, 0, "video", 24, 24, 8, CLASSES, profile)
    assert len(copies) == len(split) == 9 and copies.inputs.shape == (9, 8, 3, 24, 24)
    for position in range(len(split)):
        frames = decode_video(payload_of(split, position), 8, None, profile.fallback_fps, threads=1,
                              decoder=video_decoder(profile))
        expected = clip_to_tchw(augment_clip(frames), 8, 24, 24, profile.resize)
        np.testing.assert_array_equal(copies.inputs[position].numpy(), expected)
    assert not torch.equal(copies.inputs, split.inputs)


@pytest.mark.parametrize("fraction,per_dataset", [(0.25, 3), (0.5, 5), (0.7, 7), (1.0, 10)])
def test_the_count_is_round_p_n_per_dataset_and_the_seed_decides_which(image_splits, fraction, per_dataset):
    split = load_split(image_splits[0], "image", 32, 32, None, CLASSES)
    chosen = choose_robustness_copies(split, fraction, seed=3)
    assert sorted(listing.dataset.name for listing, _ in chosen) == sorted(set(split.dataset_names))
    assert all(len(indices) == per_dataset and indices == sorted(set(indices)) for _, indices in chosen)
    again = choose_robustness_copies(split, fraction, seed=3)
    assert [indices for _, indices in again] == [indices for _, indices in chosen]
    if per_dataset < 10:
        other = choose_robustness_copies(split, fraction, seed=4)
        assert [indices for _, indices in other] != [indices for _, indices in chosen]
    copies = robustness_copies(split, fraction, 3, "image", 32, 32, None, CLASSES)
    assert len(copies) == 3 * per_dataset
    assert copies.class_counts(CLASSES) == {name: per_dataset for name in CLASSES}


def test_the_same_seed_gives_the_same_copies_and_the_cache_gives_them_back_unchanged(image_splits):
    split = load_split(image_splits[0], "image", 32, 32, None, CLASSES)
    first = robustness_copies(split, 0.5, 7, "image", 32, 32, None, CLASSES)
    second = robustness_copies(split, 0.5, 7, "image", 32, 32, None, CLASSES)  # read from the pixel cache
    assert torch.equal(first.inputs, second.inputs) and first.origins == second.origins
    other = robustness_copies(split, 0.5, 8, "image", 32, 32, None, CLASSES)
    assert other.origins != first.origins


def test_p_zero_leaves_the_training_split_bit_identical(tmp_path, image_splits):
    train_dir, val_dir = image_splits
    split = load_split(train_dir, "image", 32, 32, None, CLASSES)
    none = robustness_copies(split, 0.0, 0, "image", 32, 32, None, CLASSES)
    assert len(none) == 0 and none.inputs.shape == (0, 3, 32, 32)
    joined = split + none
    assert torch.equal(joined.inputs, split.inputs) and torch.equal(joined.labels, split.labels)
    assert joined.dataset_names == split.dataset_names and joined.dropped == split.dropped
    # Every sample is still exactly what decoding and resizing its file gives, in listing order.
    profile = get_profile("current")
    files = [listing.dataset.path / listing.keys[i] for listing, i in split.origins]
    assert sorted(files) == sorted(train_dir.glob("*/*/*.png"))
    for position, path in enumerate(files):
        expected = image_to_chw(decode_image(path, profile.image_resave), 32, 32, profile.resize)
        np.testing.assert_array_equal(split.inputs[position].numpy(), expected)
    assert split.labels.tolist() == [CLASSES.index(path.parent.parent.name) for path in files]
    result = train_detector(TrainRequest(modality="image", data=train_dir, val=val_dir, epochs=1, batch_size=8, height=32,
                                         width=32, source_options={"channels": [4, 8]}, out=tmp_path / "off", show_progress=False))
    training = read_checkpoint(tmp_path / "off")["training"]
    assert training["robustness_augment"] == 0.0 and training["robustness_copies"] == 0
    assert training["train_samples"] == result.train_samples == len(split) and result.robustness_copies == 0


@pytest.mark.parametrize("value", ["1.5", "-0.1", "nan"])
def test_a_fraction_outside_zero_to_one_is_one_line_before_any_work(tmp_path, image_splits, value):
    train_dir, val_dir = image_splits
    out = tmp_path / "never"
    result = runner.invoke(app, ["train", "image", "--data", str(train_dir), "--val", str(val_dir), "--out", str(out),
                                 *TINY, "--robustness-augment", value])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "Traceback" not in result.output, result.output
    assert "--robustness-augment must be a fraction between 0 and 1" in lines[0] and not out.exists()
    with pytest.raises(UsageError, match="--robustness-augment"):
        train_from_bundle(BundleTrainRequest(modality="image", bundle=tmp_path, data=train_dir, val=val_dir,
                                             robustness_augment=float(value), out=tmp_path / "b"))


def test_kit_train_with_robustness_augment_records_it_in_the_checkpoint(tmp_path, image_splits):
    train_dir, val_dir = image_splits
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "image", "--data", str(train_dir), "--val", str(val_dir), "--out", str(out),
                                 *TINY, "--robustness-augment", "0.5"])
    assert result.exit_code == 0, result.output
    assert "decoded 30 train (+ 15 robustness copies)" in " ".join(result.output.split())
    training = read_checkpoint(out)["training"]
    assert training["robustness_augment"] == 0.5 and training["robustness_copies"] == 15
    assert training["train_samples"] == 30 and training["complete"] is True


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("existing", [False, True])
def test_ctrl_c_while_the_copies_are_computed_leaves_no_run_behind(tmp_path, image_splits, monkeypatch, existing):
    train_dir, val_dir = image_splits
    out = tmp_path / "run"
    request = TrainRequest(modality="image", data=train_dir, val=val_dir, epochs=1, batch_size=8, height=32, width=32,
                           source_options={"channels": [4, 8]}, out=out, show_progress=False, force=True,
                           robustness_augment=0.5, seed=11)
    if existing:
        train_detector(replace(request, robustness_augment=0.0))
    before = digest(out) if existing else None
    calls = []

    def interrupted_chain(rgb):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return augment_image(rgb)

    monkeypatch.setattr(data_module, "augment_image", interrupted_chain)
    monkeypatch.setenv("KIT_NO_CACHE", "1")  # every copy goes through the chain
    with pytest.raises(KeyboardInterrupt):
        train_detector(request)
    assert len(calls) < 15, "the samples not started yet were decoded anyway"
    if existing:
        assert digest(out) == before and read_checkpoint(out)["training"]["robustness_augment"] == 0.0
    else:
        assert not out.exists()


def test_the_demo_preset_key_becomes_the_flag(monkeypatch):
    monkeypatch.delitem(DEMO_PRESETS["image"], "robustness_augment", raising=False)
    assert "--robustness-augment" not in train_args("image", Path("d"), Path("runs/x"))
    monkeypatch.setitem(DEMO_PRESETS["image"], "robustness_augment", 0.25)
    args = train_args("image", Path("d"), Path("runs/x"))
    assert args[args.index("--robustness-augment") + 1] == "0.25"
    group = typer.main.get_command(app)
    with click.Context(group) as parent:
        context = group.commands["train"].make_context("train", args[1:], parent=parent)
    assert context.params["robustness_augment"] == 0.25


def test_from_bundle_trains_on_the_copies_too(tmp_path, image_splits):
    from tests.test_train_from_bundle import IMAGE_MODEL, write_bundle

    train_dir, val_dir = image_splits
    original = write_bundle(tmp_path / "theirs", "image", IMAGE_MODEL, "Classifier(2)", 32)
    result = runner.invoke(app, ["train", "image", "--from-bundle", str(original), "--data", str(train_dir), "--val", str(val_dir),
                                 "--mode", "probe", "--epochs", "1", "--no-calibrate", "--out", str(tmp_path / "new"),
                                 "--robustness-augment", "0.2"])
    assert result.exit_code == 0, result.output
    assert "decoded 30 train (+ 6 robustness copies)" in " ".join(result.output.split())


def test_copies_of_archived_samples_are_read_again_from_the_archive(tmp_path):
    import zipfile

    root = write_image_split(tmp_path / "train", per_class=4, seed=2)
    folder = root / "synthetic" / "synthetic-pics"
    with zipfile.ZipFile(tmp_path / "pics.zip", "w") as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, path.name)
            path.unlink()
    (tmp_path / "pics.zip").rename(folder / "pics.zip")
    profile = get_profile("current")
    split = load_split(root, "image", 32, 32, None, CLASSES, profile)
    copies = robustness_copies(split, 1.0, 0, "image", 32, 32, None, CLASSES, profile)
    zipped = [position for position, (listing, _i) in enumerate(copies.origins) if listing.dataset.source_format == "zip"]
    assert len(zipped) == 4
    with zipfile.ZipFile(folder / "pics.zip") as archive:
        for position in zipped:
            listing, index = copies.origins[position]
            decoded = decode_image(archive.read(listing.keys[index]), profile.image_resave)
            np.testing.assert_array_equal(copies.inputs[position].numpy(),
                                          image_to_chw(augment_image(decoded), 32, 32, profile.resize))
