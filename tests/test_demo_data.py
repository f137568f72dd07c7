"""The demo data generator: deterministic, every format and edge case present, readable by the
simulator, and classes that differ in local structure but not in a global statistic."""

from __future__ import annotations

import io
from pathlib import Path

import av
import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from discriminator.cli.app import app
from discriminator.demo_data import DATASETS, content, generate_demo_data
from discriminator.demo_data.generate import MEDIA_TYPES, SPLITS, SampleJob, make_sample
from discriminator.errors import OutputExistsError, UsageError
from validator_sim.datasets import discover_datasets, iter_payloads, list_samples, load_datasets_yaml
from validator_sim.decode import decode_image, decode_video
from validator_sim.preprocess import resize_shortest_edge_center_crop


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("demo") / "data"
    return generate_demo_data(out, seed=0, size="tiny", modality="both", show_progress=False)


def media_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.suffix not in (".yaml", ".txt")}


def all_payloads(split_dir: Path):
    """(dataset, member name, bytes) for every sample the simulator lists from the split's datasets.yaml."""
    for dataset in load_datasets_yaml(split_dir / "datasets.yaml"):
        listing = list_samples(dataset)
        assert not listing.ignored, f"{dataset.name}: the simulator ignored {listing.ignored}"
        for key, payload in iter_payloads(listing, list(range(len(listing.keys)))):
            yield dataset, key, payload if isinstance(payload, bytes) else Path(payload).read_bytes()


def test_same_seed_gives_the_same_bytes_whatever_the_worker_count(tiny, tmp_path):
    again = generate_demo_data(tmp_path / "again", seed=0, size="tiny", modality="video", workers=2, show_progress=False)
    first = {k: v for k, v in media_files(tiny.out).items() if "-clips" in k}
    assert first and first == media_files(again.out)


def test_another_seed_gives_other_pixels():
    for dataset in (DATASETS[0], DATASETS[-1]):
        a = make_sample(SampleJob("tiny", 0, "train", dataset, 0))
        b = make_sample(SampleJob("tiny", 1, "train", dataset, 0))
        assert a[1] != b[1]


def test_layout_yaml_and_counts(tiny):
    for split in SPLITS:
        split_dir = tiny.out / split
        listed = load_datasets_yaml(split_dir / "datasets.yaml")
        discovered = discover_datasets(split_dir)
        assert sorted((d.name, d.modality, d.media_type, d.source_format) for d in listed) == \
               sorted((d.name, d.modality, d.media_type, d.source_format) for d in discovered)
        assert {d.name for d in listed} == {d.name for d in DATASETS}
        for media_type in MEDIA_TYPES:
            assert tiny.count(split, "image", media_type) == 16
            assert tiny.count(split, "video", media_type) == 10
    readme = (tiny.out / "README.txt").read_text()
    assert "train  image         16         16             16" in readme


def test_every_sample_decodes_through_the_simulator(tiny):
    for split in SPLITS:
        seen = 0
        for dataset, key, data in all_payloads(tiny.out / split):
            if dataset.modality == "image":
                assert decode_image(data).ndim == 3
            else:
                assert len(decode_video(data, 16)) >= 1
            seen += 1
        assert seen == tiny.count(split)


def test_every_format_and_edge_case_is_present(tiny):
    split_dir = tiny.out / "test"
    formats = {d.source_format for d in load_datasets_yaml(split_dir / "datasets.yaml")}
    assert formats == {"folder", "zip", "tar", "parquet"}
    assert list(split_dir.rglob("*.tar.gz")) and list(split_dir.rglob("*.tar"))
    parquet_cells = {type(pq.read_table(p).column("media")[0].as_py()).__name__ for p in split_dir.rglob("*.parquet")}
    assert parquet_cells == {"bytes", "dict", "str"}  # raw bytes, {"bytes": …} struct, base64 text

    image_kinds, image_sizes, video_kinds, frame_counts = set(), set(), set(), set()
    for dataset, key, data in all_payloads(split_dir):
        if dataset.modality == "image":
            with Image.open(io.BytesIO(data)) as picture:
                image_kinds.add((picture.format, picture.mode))
                image_sizes.add(picture.size)
        else:
            with av.open(io.BytesIO(data)) as container:
                stream = container.streams.video[0]
                video_kinds.add((Path(key).suffix, stream.codec_context.name))
                frame_counts.add(sum(1 for _ in container.decode(stream)))
    assert {"JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"} <= {fmt for fmt, _ in image_kinds}
    assert {"RGB", "L", "RGBA", "P"} <= {mode for _, mode in image_kinds}
    assert {(17, 23), (16, 16), (214, 107), (640, 360), (1000, 200)} <= image_sizes
    assert {(".mp4", "h264"), (".mkv", "h264"), (".mov", "h264"), (".avi", "mpeg4"), (".mkv", "mpeg4")} <= video_kinds
    assert {1, 5, 9, 40} <= frame_counts and min(frame_counts) < 16 < max(frame_counts)


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    ranks = np.argsort(np.argsort(scores, kind="stable"), kind="stable") + 1.0
    for value in np.unique(scores):  # average ranks over ties
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def local_high_frequency(frames: list[np.ndarray]) -> float:
    """75th percentile over 16×16 blocks of the fine-detail energy on the validator's 224 crop."""
    energies = []
    for frame in frames[:4]:
        grey = resize_shortest_edge_center_crop(frame, 224, 224).astype(np.float32).mean(axis=2)
        detail = grey - cv2.GaussianBlur(grey, (0, 0), 1.0)
        blocks = (detail ** 2).reshape(14, 16, 14, 16).mean(axis=(1, 3))
        energies.append(np.percentile(blocks, 75))
    return float(np.mean(energies))


@pytest.mark.parametrize("modality, per_class", [("image", 40), ("video", 20)])
def test_classes_differ_locally_not_globally(modality, per_class):
    rows = []
    for dataset in DATASETS:
        if dataset.modality != modality:
            continue
        siblings = [d for d in DATASETS if d.modality == modality and d.media_type == dataset.media_type]
        for index in range(siblings.index(dataset), per_class, len(siblings)):
            _, data = make_sample(SampleJob("small", 0, "test", dataset, index))
            frames = [decode_image(data)] if modality == "image" else decode_video(data, 16)
            rows.append((dataset.media_type != "real", len(data), float(np.mean(frames[0])), local_high_frequency(frames)))
    table = np.array(rows)
    is_ai = table[:, 0] == 1
    assert 0.3 <= auc(table[:, 1], is_ai) <= 0.7, "file size alone separates the classes"
    assert 0.3 <= auc(table[:, 2], is_ai) <= 0.7, "mean brightness alone separates the classes"
    assert auc(table[:, 3], is_ai) >= 0.9, "the generator trace does not survive to the validator's crop"


def test_refuses_to_overwrite_without_force(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(OutputExistsError):
        generate_demo_data(tmp_path, size="tiny", modality="image", show_progress=False)
    with pytest.raises(UsageError) as unknown:
        generate_demo_data(tmp_path / "x", modality="vide", show_progress=False)
    assert "did you mean 'video'" in unknown.value.one_line()
    assert not (tmp_path / "x").exists()


runner = CliRunner()


def test_cli_writes_reports_and_guards_existing_data(tmp_path):
    out = tmp_path / "demo"
    result = runner.invoke(app, ["data", "demo", "--out", str(out), "--size", "tiny", "--modality", "image", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "wrote 144 samples in 6 datasets" in result.output
    assert yaml.safe_load((out / "test" / "datasets.yaml").read_text())["datasets"][0]["name"] == "cam-photos"

    again = runner.invoke(app, ["data", "demo", "--out", str(out), "--size", "tiny", "--modality", "image"])
    assert again.exit_code == 1 and "already exists" in again.output and "--force" in again.output
    assert "Traceback" not in again.output

    stray = out / "notes.txt"
    stray.write_text("mine")
    forced = runner.invoke(app, ["data", "demo", "--out", str(out), "--size", "tiny", "--modality", "image", "--seed", "3", "--force"])
    assert forced.exit_code == 0, forced.output
    assert stray.read_text() == "mine"

    bad = runner.invoke(app, ["data", "demo", "--out", str(stray), "--size", "tiny"])
    assert bad.exit_code == 2 and "is a file" in bad.output
    assert runner.invoke(app, ["data", "demo", "--out", str(out), "--size", "huge"]).exit_code == 2


def test_ctrl_c_leaves_a_marked_partial_split_and_the_demo_does_not_reuse_it(tmp_path, monkeypatch):
    from discriminator.demo_data import generate
    from discriminator.demo_data.generate import INCOMPLETE_MARKER, is_complete

    written = []

    def interrupt_after_one(*args, **kwargs):
        if written:
            raise KeyboardInterrupt
        written.append(args)
        return real_write(*args, **kwargs)

    real_write = generate.write_dataset
    monkeypatch.setattr(generate, "write_dataset", interrupt_after_one)
    out = tmp_path / "partial"
    result = CliRunner().invoke(app, ["data", "demo", "--out", str(out), "--size", "tiny", "--modality", "image", "--workers", "1"])
    assert result.exit_code == 130 and "partial" in result.output and INCOMPLETE_MARKER in result.output, result.output
    assert (out / INCOMPLETE_MARKER).is_file() and not is_complete(out)
    monkeypatch.setattr(generate, "write_dataset", real_write)
    generate_demo_data(out, seed=0, size="tiny", modality="image", force=True, show_progress=False)
    assert is_complete(out) and not (out / INCOMPLETE_MARKER).exists()


@pytest.mark.parametrize("height, width", [(224, 448), (448, 224), (240, 426), (300, 300), (107, 214), (16, 16)])
def test_the_semisynthetic_patch_and_real_pixels_both_reach_the_validators_crop(height, width):
    """A patch that filled the centre crop would make a semisynthetic sample a synthetic one to any detector."""
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    rng = np.random.default_rng(7)
    for _ in range(200):
        mask = content.pasted_region(rng, height, width)[..., 0]
        crop = mask[top : top + side, left : left + side] > 0.5
        assert 0.15 <= crop.mean() <= 0.6, f"{crop.mean():.2f} of the {side}×{side} crop is generated"
        assert (mask > 0.5).sum() == crop.sum(), "the patch reaches outside the crop, where the validator never looks"
