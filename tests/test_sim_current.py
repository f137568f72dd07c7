"""`kit bench --profile current` end to end on a hand-made bundle and its ONNX twin, re-derived independently.

The bundle's `model.py` and the ONNX graph both compute logit k = (sum of channel k) · scale − 4
(exact in float32), so the test recomputes every probability from the pixels it generated,
and every score from current-contract §5 written out again here — both scorings, with and
without provenance shares, with the robustness pass — and checks the verdicts the evaluator
gives: any inference failure voids the run; a different sample set cannot be compared.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import av
import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from typer.testing import CliRunner

from discriminator.cli.app import app
from tests.sim_helpers import OFFSET, SPREAD, image_bytes, image_model, random_image
from validator_sim.datasets import discover_datasets, list_samples
from validator_sim.robustness import choose_robustness_samples
from validator_sim.run import run_bench

runner = CliRunner()
H, W = 40, 48

MODEL_PY = '''
import torch
from torch import nn
from safetensors.torch import load_file


class ChannelSum(nn.Module):
    def __init__(self, scale, offset, num_classes):
        super().__init__()
        self.register_buffer("scale", scale)
        self.register_buffer("offset", offset)
        self.num_classes = num_classes

    def forward(self, pixels):
        x = pixels.to(self.scale.dtype)
        sums = x.sum(dim=(2, 3)) if x.dim() == 4 else x.sum(dim=(1, 3, 4))
        return (sums * self.scale - self.offset)[:, : self.num_classes]


def load_model(weights_path, num_classes=2):
    weights = load_file(weights_path)
    return ChannelSum(weights["scale"], weights["offset"], num_classes)
'''


def make_bundle(folder: Path, num_classes: int = 3, height: int = H, width: int = W, frames: int | None = None,
                frame_rate: float | None = None) -> Path:
    """A bundle whose logit k is (sum of channel k) · scale − 4; `frames` makes it a video bundle."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.py").write_text(MODEL_PY)
    video = "" if frames is None else f"  num_frames: {frames}\n" + (f"  frame_rate: {frame_rate}\n" if frame_rate else "")
    (folder / "model_config.yaml").write_text(
        f"name: tiny\nmodality: {'image' if frames is None else 'video'}\npreprocessing:\n  resize: [{height}, {width}]\n"
        f"{video}model:\n  num_classes: {num_classes}\n")
    scale = SPREAD / np.float32((frames or 1) * height * width * 255)
    save_file({"scale": torch.tensor(float(scale), dtype=torch.float32), "offset": torch.tensor(float(OFFSET))},
              str(folder / "model.safetensors"))
    return folder


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[tuple[str, str], np.ndarray]]:
    """Three media types (one dataset a holdout), PNG so the cache's re-save keeps the pixels; 22 images."""
    root = tmp_path_factory.mktemp("current")
    rng = np.random.default_rng(21)
    pixels: dict[tuple[str, str], np.ndarray] = {}
    for media_type, name, count in (("real", "photos", 8), ("synthetic", "gen-holdout-a", 6),
                                    ("semisynthetic", "inpaint", 5), ("rendered", "cgi", 3)):
        folder = root / media_type / name
        folder.mkdir(parents=True)
        for i in range(count):
            image = random_image(rng, int(rng.integers(30, 80)), int(rng.integers(30, 80)))
            image[..., {"real": 0, "synthetic": 1, "semisynthetic": 2, "rendered": 0}[media_type]] //= 3
            (folder / f"{i}.png").write_bytes(image_bytes(image))
            pixels[(name, f"{i}.png")] = image
    return root, pixels


def crop_then_resize(img: np.ndarray) -> np.ndarray:
    """current-contract §4 written out again."""
    h, w = img.shape[:2]
    scale = min(h / H, w / W)
    ch, cw = min(int(round(scale * H)), h), min(int(round(scale * W)), w)
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = np.ascontiguousarray(img[top:top + ch, left:left + cw])
    out = crop if (ch, cw) == (H, W) else cv2.resize(crop, (W, H), interpolation=cv2.INTER_LINEAR)
    return out.transpose(2, 0, 1)


def expected_probs(chw: np.ndarray, k: int = 3) -> np.ndarray:
    sums = chw.astype(np.int64).sum(axis=(1, 2)).astype(np.float32)
    logits = sums * (SPREAD / np.float32(H * W * 255)) - OFFSET
    e = np.exp(logits[:k] - logits[:k].max())
    return e / e.sum(dtype=np.float32)


CLASS = {"photos": 0, "gen-holdout-a": 1, "inpaint": 2, "cgi": 0}


def reference_scores(rows: list[tuple[str, np.ndarray]], shares: dict[str, float] | None = None) -> dict[str, float]:
    """current-contract §5 from the text: (dataset, projected probs) per sample → both sn34 readings."""
    names = [d for d, _ in rows]
    y = np.array([CLASS[d] for d in names])
    probs = np.array([p for _, p in rows], dtype=np.float64)
    prov = ["holdout" if "-holdout-" in d else "public" for d in names]
    if shares and any(shares.values()):
        w = np.array([shares.get(p, 0.0) * len(prov) / prov.count(p) for p in prov])
    else:
        w = np.ones(len(rows))
    pred = probs.argmax(1)
    c = np.zeros((3, 3))
    np.add.at(c, (y, pred), w)
    n, t, p = c.sum(), c.sum(1), c.sum(0)
    rk = (n * np.trace(c) - t @ p) / math.sqrt((n * n - p @ p) * (n * n - t @ t))
    mbrier = float(np.sum(w * ((probs - np.eye(3)[y]) ** 2).sum(1)) / w.sum())
    yb = (y > 0).astype(int)
    p_ai = 1.0 - probs[:, 0]  # in float64, as gasbench forms it from the float32 probabilities
    pb = (p_ai > 0.5).astype(int)
    cb = np.zeros((2, 2))
    np.add.at(cb, (yb, pb), w)
    tn, fp, fn, tp = cb.ravel()
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    bbrier = float(np.sum(w * (np.clip(p_ai, 1e-7, 1 - 1e-7) - yb) ** 2) / w.sum())

    def sn34(m: float, b: float, b0: float) -> float:
        return min(1.0, math.sqrt(max(1e-12, min(1.0, max(0.0, (m + 1) / 2)) ** 1.2 * max(0.0, (b0 - b) / b0) ** 1.8)))

    return {"gorodkin_mcc": rk, "multiclass_brier": mbrier, "multiclass_sn34_score": sn34(rk, mbrier, 2 / 3),
            "binary_mcc": mcc, "binary_brier": bbrier, "binary_sn34_score": sn34(mcc, bbrier, 0.25),
            "accuracy": float(np.sum(w * (pred == y)) / w.sum())}


def test_bundle_and_its_onnx_twin_give_the_same_probabilities(tmp_path: Path, tree) -> None:
    root, _ = tree
    datasets = discover_datasets(root)
    bundle = run_bench(make_bundle(tmp_path / "bundle"), datasets, "current", mode="full", write=False, threads=1)
    onnx = run_bench(image_model(tmp_path / "twin.onnx", H, W, num_logits=3), datasets, "current", mode="full",
                     write=False, threads=1)
    by_key = {(r["dataset"], r["sample"]): r for r in onnx.records}
    assert len(bundle.records) == len(onnx.records) == 22
    for record in bundle.records:
        np.testing.assert_allclose(record["probs"], by_key[(record["dataset"], record["sample"])]["probs"], atol=1e-5)
    assert bundle.results["kit"]["session"]["runtime"].startswith("torch")
    assert bundle.results["kit"]["target"] == {"height": H, "width": W, "frames": None}


@pytest.mark.parametrize("shares", [None, {"holdout": 0.6, "public": 0.4}])
def test_current_bench_on_a_bundle_equals_the_re_derived_evaluator(tmp_path: Path, tree, shares) -> None:
    root, pixels = tree
    result = run_bench(make_bundle(tmp_path / "bundle"), discover_datasets(root), "current", mode="full", write=False,
                       threads=1, shares=shares)
    rows = []
    for record in result.records:
        assert record["status"] == "ok"
        want = expected_probs(crop_then_resize(pixels[(record["dataset"], record["sample"])]))
        np.testing.assert_allclose(record["probs"], want, atol=1e-6)
        assert record["class_label"] == CLASS[record["dataset"]]
        rows.append((record["dataset"], np.array(record["class_probs"])))
    want = reference_scores(rows, shares)
    got = result.results["results"]
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    assert got["sn34_score"] == got["multiclass_sn34_score"] and got["scoring"] == "multiclass"
    assert result.results["kit"]["per_dataset"]["cgi"]["media_type"] == "rendered"
    low, high = result.results["kit"]["intervals_95"]["sn34_score"]
    assert low <= got["sn34_score"] <= high


def _aug_chain(rgb: np.ndarray) -> np.ndarray:
    """current-contract §6's image chain again (these images are small, so no halving)."""
    for fmt, params in (("JPEG", {"quality": 55, "subsampling": 2}), ("WEBP", {"quality": 75, "method": 4}),
                        ("JPEG", {"quality": 80})):
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, format=fmt, **params)
        rgb = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return rgb


def test_robustness_pass_blends_base_and_aug(tmp_path: Path, tree) -> None:
    root, pixels = tree
    result = run_bench(make_bundle(tmp_path / "bundle"), discover_datasets(root), "current", mode="full", write=False,
                       threads=1, robustness=2, aug_weight=0.25)
    rob = result.results["kit"]["robustness"]
    assert rob["samples"] == 8 and rob["per_dataset"] == {"cgi": 2, "gen-holdout-a": 2, "inpaint": 2, "photos": 2}
    base = reference_scores([(r["dataset"], np.array(r["class_probs"])) for r in result.records])
    assert rob["base_sn34_score"] == pytest.approx(base["multiclass_sn34_score"], abs=1e-9)
    rows = []  # the augmented samples' probabilities and score, re-derived
    for dataset in discover_datasets(root):
        listing = list_samples(dataset)
        for index in choose_robustness_samples(listing, 2):
            chw = crop_then_resize(_aug_chain(pixels[(dataset.name, listing.keys[index])]))
            rows.append((dataset.name, expected_probs(chw).astype(np.float64)))
    aug = reference_scores(rows)
    assert rob["aug_sn34_score"] == pytest.approx(aug["multiclass_sn34_score"], abs=1e-6)
    assert rob["blended_sn34_score"] == pytest.approx(0.75 * rob["base_sn34_score"] + 0.25 * rob["aug_sn34_score"])
    assert result.results["results"]["sn34_score"] == pytest.approx(rob["blended_sn34_score"])


def test_an_inference_failure_voids_a_current_run_and_names_the_sample(tmp_path: Path, tree) -> None:
    root, _ = tree
    bundle = make_bundle(tmp_path / "bundle")
    source = (bundle / "model.py").read_text()
    (bundle / "model.py").write_text(source.replace(
        "        x = pixels.to(self.scale.dtype)",
        "        if pixels.shape[0] < 8:\n            raise RuntimeError('odd batch')\n        x = pixels.to(self.scale.dtype)"))
    out = tmp_path / "out"
    cli = runner.invoke(app, ["bench", str(bundle), "--data", str(root), "--profile", "current", "--mode", "full",
                              "--out", str(out), "--threads", "1"])
    assert cli.exit_code == 4, cli.output
    assert "UNSCORABLE" in cli.output and "cgi/0.png" in cli.output and "odd batch" in cli.output
    document = json.loads((out / "results.json").read_text())
    assert document["scorable"] is False and document["results"]["sn34_score"] == 0.0


def test_compare_gives_paired_delta_and_refuses_different_samples(tmp_path: Path, tree) -> None:
    root, _ = tree
    king = tmp_path / "king"
    first = runner.invoke(app, ["bench", str(image_model(tmp_path / "two.onnx", H, W, num_logits=2)), "--data", str(root),
                                "--profile", "current", "--mode", "full", "--out", str(king), "--threads", "1"])
    assert first.exit_code == 0, first.output
    assert "never names class 2" in first.output
    challenger = tmp_path / "challenger"
    second = runner.invoke(app, ["bench", str(make_bundle(tmp_path / "b")), "--data", str(root), "--profile", "current",
                                 "--mode", "full", "--out", str(challenger), "--threads", "1",
                                 "--compare", str(king / "results.json")])
    assert second.exit_code == 0, second.output
    comparison = json.loads((challenger / "results.json").read_text())["kit"]["compare"]
    ours = json.loads((challenger / "results.json").read_text())["results"]["sn34_score"]
    theirs = json.loads((king / "results.json").read_text())["results"]["sn34_score"]
    assert comparison["delta_sn34"] == pytest.approx(ours - theirs) and comparison["samples"] == 22
    assert "Δsn34" in second.output and "margin" in comparison["verdict"]
    fewer = runner.invoke(app, ["bench", str(make_bundle(tmp_path / "c")), "--data", str(root), "--profile", "current",
                                "--max-per-dataset", "2", "--out", str(tmp_path / "few"), "--threads", "1",
                                "--compare", str(king / "results.json")])
    assert fewer.exit_code == 2 and "scored different samples" in fewer.output and "Traceback" not in fewer.output


def test_rendered_as_a_fourth_class_and_binary_scoring(tmp_path: Path, tree) -> None:
    root, _ = tree
    result = run_bench(make_bundle(tmp_path / "bundle", num_classes=4), discover_datasets(root), "current",
                       mode="full", write=False, threads=1, rendered="fourth-class", scoring="binary")
    res = result.results["results"]
    assert result.results["kit"]["num_classes"] == 4 and set(res["per_class_recall"]) == {
        "real", "synthetic", "semisynthetic", "rendered"}
    assert res["sn34_score"] == res["binary_sn34_score"]
    assert {r["class_label"] for r in result.records if r["dataset"] == "cgi"} == {3}
    assert {r["label"] for r in result.records if r["dataset"] == "cgi"} == {1}


@pytest.mark.parametrize(("args", "needle"), [
    (["--frame-rate", "-2"], "--frame-rate must be a positive number"),
    (["--frame-rate", "0"], "--frame-rate must be a positive number"),
    (["--seed", "-5"], "--seed must be 0 or more"),
    (["--scoring", "ternary"], "is not binary or multiclass"),
    (["--holdout-share", "1.5"], "between 0 and 1"),
    (["--rendered", "cgi"], "--rendered 'cgi'"),
])
def test_bad_options_are_one_line_and_leave_no_folder(tmp_path: Path, tree, args: list[str], needle: str) -> None:
    root, _ = tree
    out = tmp_path / "never"
    cli = runner.invoke(app, ["bench", str(image_model(tmp_path / "m.onnx", H, W)), "--data", str(root),
                              "--profile", "current", "--out", str(out), *args])
    assert cli.exit_code == 2, cli.output
    assert needle in cli.output and "Traceback" not in cli.output
    assert not out.exists()


def test_records_carry_class_probabilities_and_weights(tmp_path: Path, tree) -> None:
    root, _ = tree
    out = tmp_path / "o"
    cli = runner.invoke(app, ["bench", str(make_bundle(tmp_path / "b")), "--data", str(root), "--profile", "current",
                              "--mode", "full", "--out", str(out), "--threads", "1", "--holdout-share", "0.5"])
    assert cli.exit_code == 0, cli.output
    rows = pq.read_table(out / "records.parquet").to_pylist()
    weights = {r["dataset"]: r["weight"] for r in rows}
    assert weights["gen-holdout-a"] == pytest.approx(0.5 * 22 / 6) and weights["photos"] == pytest.approx(0.5 * 22 / 16)
    assert all(len(r["class_probs"]) == 3 for r in rows)
    document = json.loads((out / "results.json").read_text())
    assert document["kit"]["provenance_shares"] == {"holdout": 0.5, "public": 0.5}
    assert document["kit"]["decoders"]["av"] == "16.0.1"


def test_accuracy_plot_labels_zero_bars_marks_unscored_and_flags_partial_runs() -> None:
    from validator_sim.plots import _pyplot, _save, accuracy_figure

    plt = _pyplot()
    results = {
        "per_dataset": {"photos": {"accuracy": 0.0, "total": 5}, "gen": {"accuracy": 0.8, "total": 5},
                        "broken": {"accuracy": 0.0, "total": 0}},
        "dataset_media_types": {"photos": "real", "gen": "synthetic", "broken": "synthetic"},
        "kit": {"accuracy_against": "multiclass"}, "metadata": {"completed": False},
    }
    fig = accuracy_figure(results, plt)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.texts]
    assert labels == ["0%", "80%", "not scored"]
    widths = [bar.get_width() for bar in ax.patches if bar.get_height() > 0]
    assert widths[0] > 0 and widths[2] == 0  # a 0 % bar is visible; an unscored one is not drawn as 0 %
    colours = {tuple(bar.get_facecolor()) for bar in ax.patches[:2]}
    assert len(colours) == 2 and (1.0, 0.0, 0.0, 1.0) not in colours
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        _save(fig, Path(folder) / "a.png", plt, results)
    assert "PARTIAL RUN" in fig._suptitle.get_text()


def _square_crop_resize(frame: np.ndarray, side: int) -> np.ndarray:
    """current-contract §4 for a square target: the centred largest square, then INTER_LINEAR."""
    h, w = frame.shape[:2]
    edge = min(h, w)
    top, left = (h - edge) // 2, (w - edge) // 2
    crop = np.ascontiguousarray(frame[top:top + edge, left:left + edge])
    return cv2.resize(crop, (side, side), interpolation=cv2.INTER_LINEAR)


def test_a_video_bundle_takes_t_and_frame_rate_from_its_yaml_and_applies_rotation(tmp_path: Path) -> None:
    from tests.sim_helpers import random_clip, set_display_matrix, write_video

    rng = np.random.default_rng(30)
    data = tmp_path / "data" / "real" / "phones"
    data.mkdir(parents=True)
    clips = {}
    for i in range(3):
        frames = random_clip(rng, 12, 64, 96)
        path = write_video(data / f"p{i}.mp4", frames, codec="libx264", fps=30)
        if i == 1:
            set_display_matrix(path, 0, 1, -1, 0)  # a portrait phone clip: rotation −90
        clips[f"p{i}.mp4"] = path
    bundle = make_bundle(tmp_path / "vb", height=32, width=32, frames=3, frame_rate=10)
    result = run_bench(bundle, discover_datasets(tmp_path / "data"), "current", mode="full", write=False, threads=1,
                       robustness=2)
    assert result.results["kit"]["target"] == {"height": 32, "width": 32, "frames": 3}
    rob = result.results["kit"]["robustness"]
    assert rob["samples"] == 2 and rob["skipped"] == {} and 0.0 <= rob["aug_sn34_score"] <= 1.0
    assert result.results["kit"]["frame_rate"] == 10
    for record in result.records:
        with av.open(str(clips[record["sample"]])) as container:
            decoded = [f for f in container.decode(video=0)]
            rotation = decoded[0].rotation
            frames = [np.rot90(f.to_ndarray(format="rgb24"), k=rotation // 90) for f in decoded]
        chosen = [frames[i] for i in (0, 3, 6)]  # stride round(30 / 10) = 3 from frame 0
        tchw = np.stack([_square_crop_resize(f, 32).transpose(2, 0, 1) for f in chosen])
        sums = tchw.astype(np.int64).sum(axis=(0, 2, 3)).astype(np.float32)
        logits = sums * (SPREAD / np.float32(3 * 32 * 32 * 255)) - OFFSET
        e = np.exp(logits - logits.max())
        np.testing.assert_allclose(record["probs"], e / e.sum(dtype=np.float32), atol=1e-6)


def test_a_frames_dataset_takes_the_first_t_files_in_name_order_and_pads(tmp_path: Path) -> None:
    from validator_sim.datasets import load_datasets_yaml

    rng = np.random.default_rng(31)
    clips = {"a": 6, "b": 2}
    expected = {}
    for clip, count in clips.items():
        folder = tmp_path / "frames" / clip
        folder.mkdir(parents=True)
        frames = [random_image(rng, 32, 32) for _ in range(count)]
        for i, frame in enumerate(frames):
            (folder / f"f{i:03d}.png").write_bytes(image_bytes(frame))
        (folder / "notes.txt").write_text("not a frame")
        expected[clip] = (frames + [frames[-1]] * 4)[:4]
    (tmp_path / "frames" / "stray.txt").write_text("x")
    (tmp_path / "sets.yaml").write_text("- {name: cams, modality: video, media_type: real, path: frames, "
                                        "source_format: frames}\n")
    result = run_bench(make_bundle(tmp_path / "vb", height=32, width=32, frames=4), load_datasets_yaml(tmp_path / "sets.yaml"),
                       "current", mode="full", write=False, threads=1)
    assert sorted(r["sample"] for r in result.records) == ["a", "b"]
    assert result.results["kit"]["ignored_files"] == {"cams": {"not a folder of frames": 1}}
    for record in result.records:
        tchw = np.stack([f.transpose(2, 0, 1) for f in expected[record["sample"]]])
        sums = tchw.astype(np.int64).sum(axis=(0, 2, 3)).astype(np.float32)
        logits = sums * (SPREAD / np.float32(4 * 32 * 32 * 255)) - OFFSET
        e = np.exp(logits - logits.max())
        np.testing.assert_allclose(record["probs"], e / e.sum(dtype=np.float32), atol=1e-6)


def test_a_folder_with_both_formats_benches_what_each_era_ran(tmp_path: Path, tree) -> None:
    root, _ = tree
    both = tmp_path / "build"
    make_bundle(both / "bundle")
    image_model(both / "image_detector.onnx", H, W, num_logits=3)
    datasets = discover_datasets(root)
    today = run_bench(both, datasets, "current", max_per_dataset=2, write=False, threads=1)
    then = run_bench(both, datasets, "onnx-2026-02", max_per_dataset=2, write=False, threads=1)
    chosen = run_bench(both, datasets, "current", max_per_dataset=2, write=False, threads=1, model_format="onnx")
    assert today.results["kit"]["model_format"] == "bundle" and today.results["kit"]["session"]["runtime"].startswith("torch")
    assert then.results["kit"]["model_format"] == "onnx" and chosen.results["kit"]["model_format"] == "onnx"
