"""`kit bench` end to end: real ONNX models, real files in several formats, every probability checked bit for bit.

The models' logits are a closed-form function of the pixels (see `sim_helpers`), so
the expected probabilities are recomputed here from the generated pixels with numpy
and OpenCV, independently of the simulator's code; the metrics are recomputed from
the contract's formulas.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import signal
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import onnx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from onnx import TensorProto, helper
from PIL import Image
from typer.testing import CliRunner

from discriminator.cli.app import app
from discriminator.errors import InputError
from discriminator.spec import DetectorSpec, write_manifest
from tests.sim_helpers import (
    channel_sum_model,
    expected_logits,
    image_bytes,
    image_model,
    random_clip,
    random_image,
    video_model,
    write_video,
)
from validator_sim.datasets import discover_datasets, load_datasets_yaml
from validator_sim.run import run_bench

runner = CliRunner()
IMAGE_H, IMAGE_W = 40, 48
VIDEO_T, VIDEO_HW = 16, 32


def _resize_crop(img: np.ndarray, th: int, tw: int) -> np.ndarray:
    """Contract §2 written out again for the test."""
    h, w = img.shape[:2]
    if h < w:
        new_h, new_w = th, math.floor(float(w) * (float(th) / float(h)))
    else:
        new_h, new_w = math.floor(float(h) * (float(tw) / float(w))), tw
    new_h, new_w = max(new_h, th), max(new_w, tw)
    resized = img if (new_h, new_w) == (h, w) else cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, left = (new_h - th) // 2, (new_w - tw) // 2
    return resized[top:top + th, left:left + tw]


def _softmax32(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float32)
    e = np.exp(x - x.max())
    return e / e.sum(dtype=np.float32)


def _jpeg_as_validator_sees_it(data: bytes) -> np.ndarray:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(buffer, format="JPEG", quality=75)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def _contract_metrics(labels: list[int], preds: list[int], p_ai: list[float]) -> dict[str, float]:
    y, p, q = np.array(labels), np.array(preds), np.clip(np.array(p_ai, dtype=np.float64), 1e-7, 1 - 1e-7)
    tp, tn = int(((p == 1) & (y == 1)).sum()), int(((p == 0) & (y == 0)).sum())
    fp, fn = int(((p == 1) & (y == 0)).sum()), int(((p == 0) & (y == 1)).sum())
    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    mcc = (tp * tn - fp * fn) / denominator if denominator else 0.0
    brier = float(np.mean((q - y) ** 2))
    ce = float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))
    m = min(1.0, max(0.0, (mcc + 1) / 2)) ** 1.2
    b = max(0.0, (0.25 - brier) / 0.25) ** 1.8
    return {"binary_mcc": mcc, "binary_brier": brier, "binary_cross_entropy": ce,
            "sn34_score": min(1.0, math.sqrt(max(1e-12, m * b))), "accuracy": float(np.mean(p == y))}


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[tuple[str, str], np.ndarray]]:
    """Image datasets in four formats, and the decoded pixels the validator would see for each sample."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(11)
    expected: dict[tuple[str, str], np.ndarray] = {}

    def sized() -> np.ndarray:
        return random_image(rng, int(rng.integers(20, 90)), int(rng.integers(20, 90)))

    photos = root / "real" / "photos"
    (photos / "day2").mkdir(parents=True)
    for i in range(37):
        pixels = sized()
        name = f"day2/p{i:02d}.png" if i % 3 else f"p{i:02d}.png"
        (photos / name).write_bytes(image_bytes(pixels))
        expected[("photos", name)] = pixels
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (photos / "empty.jpg").write_bytes(b"")

    (root / "synthetic").mkdir()
    with zipfile.ZipFile(root / "synthetic" / "gen.zip", "w") as zf:
        for i in range(20):
            pixels = sized()
            zf.writestr(f"g{i:02d}.png", image_bytes(pixels))
            expected[("gen", f"g{i:02d}.png")] = pixels

    jpegs = root / "synthetic" / "jpegs"
    jpegs.mkdir()
    with tarfile.open(jpegs / "all.tar.gz", "w:gz") as tf:
        for i in range(9):
            data = image_bytes(sized(), "JPEG")
            info = tarfile.TarInfo(f"j{i}.jpg")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
            expected[("jpegs", f"j{i}.jpg")] = _jpeg_as_validator_sees_it(data)

    (root / "semisynthetic").mkdir()
    cells = []
    for i in range(11):
        pixels = sized()
        cells.append({"bytes": image_bytes(pixels), "path": f"s{i}.png"})
        expected[("inpaint", f"row{i:08d}")] = pixels
    pq.write_table(pa.table({"image": pa.array(cells)}), root / "semisynthetic" / "inpaint.parquet", row_group_size=4)
    return root, expected


@pytest.fixture(scope="module")
def video_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[tuple[str, str], list[np.ndarray]]]:
    """Lossless clips (some shorter than T) in three containers and a tar, plus their frames."""
    root = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(12)
    expected: dict[tuple[str, str], list[np.ndarray]] = {}
    real = root / "real" / "cams"
    real.mkdir(parents=True)
    for i, suffix in enumerate([".mov", ".avi", ".mkv", ".mov", ".avi", ".mkv"]):
        frames = random_clip(rng, int(rng.integers(3, 20)), int(rng.integers(24, 60)), int(rng.integers(24, 60)))
        write_video(real / f"c{i}{suffix}", frames)
        expected[("cams", f"c{i}{suffix}")] = frames
    (real / "zero.mp4").write_bytes(b"")
    (real / "junk.mkv").write_bytes(b"\x1a\x45\xdf\xa3" + b"\x00" * 300)
    gen = root / "synthetic" / "sora"
    gen.mkdir(parents=True)
    clip_dir = tmp_path_factory.mktemp("staging")
    with tarfile.open(gen / "clips.tar", "w") as tf:
        for i in range(5):
            frames = random_clip(rng, int(rng.integers(10, 22)), 40, 30)
            path = write_video(clip_dir / f"s{i}.mov", frames)
            tf.add(path, arcname=f"s{i}.mov")
            expected[("sora", f"s{i}.mov")] = frames
    return root, expected


def _check_bit_exact(records: list[dict], expected_pixels: dict, make_sample, profile: str = "onnx-2026-02") -> None:
    assert {(r["dataset"], r["sample"]) for r in records} == set(expected_pixels)
    for record in records:
        assert record["status"] == "ok", record
        sample = make_sample(expected_pixels[(record["dataset"], record["sample"])])
        logits = expected_logits(sample, len(record["probs"]))
        probs = _softmax32(logits)
        assert np.array_equal(np.array(record["probs"], dtype=np.float32), probs), record["sample"]
        k = len(probs)
        if profile == "current":  # current-contract §5: p_ai = 1 − p[0], AI when above one half
            p_ai = np.float32(1) - probs[0]
            pred = int(p_ai > 0.5)
        else:
            p_ai = probs[1] if k == 2 else np.float32(1) - probs[0]
            pred = int(np.argmax(probs) == 1) if k == 2 else int(np.argmax(probs) != 0)
        assert np.float32(record["p_ai"]) == p_ai and record["predicted"] == pred


def _check_metrics(results: dict, records: list[dict]) -> None:
    want = _contract_metrics([r["label"] for r in records], [r["predicted"] for r in records], [r["p_ai"] for r in records])
    for key, value in want.items():
        assert results["results"][key] == pytest.approx(value, rel=1e-12, abs=1e-15), key
    assert results["overall_score"] == results["results"]["accuracy"]


def test_image_bench_is_bit_exact_over_four_formats(tmp_path: Path, image_tree) -> None:
    root, expected = image_tree
    model = image_model(tmp_path / "image.onnx", IMAGE_H, IMAGE_W, num_logits=2)
    result = run_bench(model, discover_datasets(root), mode="full", out_dir=tmp_path / "out", threads=1)

    def to_chw(pixels: np.ndarray) -> np.ndarray:
        return _resize_crop(pixels, IMAGE_H, IMAGE_W).transpose(2, 0, 1)

    _check_bit_exact(result.records, expected, to_chw)
    _check_metrics(result.results, result.records)
    kit = result.results["kit"]
    assert kit["skipped"]["photos"]["count"] == 2
    assert kit["skipped"]["photos"]["reasons"] == {"not a decodable image": 1, "empty file": 1}
    assert result.results["per_dataset"]["photos"]["total"] == 37
    assert result.results["dataset_media_types"]["inpaint"] == "semisynthetic"
    assert result.results["accuracy_by_media_type"]["semisynthetic"]["samples"] == 11
    assert kit["threads"] == 1 and kit["profile"] == "onnx-2026-02" and kit["batch_size"] == 32
    assert result.completed


def test_video_bench_pads_short_clips_and_is_bit_exact(tmp_path: Path, video_tree) -> None:
    root, expected = video_tree
    model = video_model(tmp_path / "video.onnx", "frames", VIDEO_HW, VIDEO_HW, num_logits=3, sent_frames=VIDEO_T)
    result = run_bench(model, discover_datasets(root), mode="full", out_dir=tmp_path / "out", decode_workers=2)

    def to_tchw(frames: list[np.ndarray]) -> np.ndarray:
        chosen = (frames + [frames[-1]] * VIDEO_T)[:VIDEO_T]
        return np.stack([_resize_crop(f, VIDEO_HW, VIDEO_HW).transpose(2, 0, 1) for f in chosen])

    _check_bit_exact(result.records, expected, to_tchw)
    _check_metrics(result.results, result.records)
    assert result.results["kit"]["target"] == {"height": VIDEO_HW, "width": VIDEO_HW, "frames": VIDEO_T}
    assert result.results["kit"]["skipped"]["cams"]["count"] == 2
    assert result.results["kit"]["batch_size"] == 4
    assert result.results["metadata"]["modality"] == "video"


def test_cli_writes_reports_and_refuses_to_overwrite(tmp_path: Path, image_tree) -> None:
    root, _ = image_tree
    model = image_model(tmp_path / "image.onnx", IMAGE_H, IMAGE_W)
    out = tmp_path / "report"
    result = runner.invoke(app, ["bench", str(model), "--data", str(root), "--out", str(out), "--max-per-dataset", "5",
                                 "--seed", "3", "--threads", "1", "--plots"])
    assert result.exit_code == 0, result.output
    assert "photos" in result.output and "sn34" in result.output
    document = json.loads((out / "results.json").read_text())
    assert document["metadata"]["completed"] is True and document["metadata"]["mode"] == "small"
    assert document["results"]["total_samples"] == 20  # 4 datasets × 5
    assert set(document["per_dataset"]) == {"photos", "gen", "jpegs", "inpaint"}
    rows = pq.read_table(out / "records.parquet").to_pylist()
    assert len(rows) == 20 and {r["status"] for r in rows} == {"ok"}
    for name in ("reliability.png", "confusion.png", "accuracy_per_dataset.png", "latency.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "profile onnx-2026-02" in (out / "summary.txt").read_text()

    again = runner.invoke(app, ["bench", str(model), "--data", str(root), "--out", str(out)])
    assert again.exit_code != 0 and "already exists" in again.output and "Traceback" not in again.output
    forced = runner.invoke(app, ["bench", str(model), "--data", str(root), "--out", str(out), "--force",
                                 "--max-per-dataset", "5", "--seed", "3", "--threads", "1"])
    assert forced.exit_code == 0
    same = json.loads((out / "results.json").read_text())
    assert same["results"]["sn34_score"] == document["results"]["sn34_score"]  # same seed, same samples, same score


@pytest.mark.parametrize(("args", "needle"), [
    ([], "exactly one of --data"),
    (["--profile", "onnx-2026"], "did you mean 'onnx-2026-02'"),
    (["--mode", "huge"], "unknown mode"),
    (["--frame-rate", "8"], "always takes consecutive frames"),
])
def test_cli_usage_errors_are_one_line(tmp_path: Path, image_tree, args: list[str], needle: str) -> None:
    root, _ = image_tree
    model = image_model(tmp_path / "image.onnx")
    data = [] if not args else ["--data", str(root)]
    result = runner.invoke(app, ["bench", str(model), *data, *args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert needle in result.output and "Traceback" not in result.output


def test_missing_model_is_a_clear_error(tmp_path: Path, image_tree) -> None:
    result = runner.invoke(app, ["bench", str(tmp_path / "nope.onnx"), "--data", str(image_tree[0])])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_failing_session_gives_error_rows_and_says_what_the_validator_did(tmp_path: Path, image_tree) -> None:
    root, _ = image_tree
    model = tmp_path / "float_input.onnx"
    channel_sum_model(model, ["batch", 3, IMAGE_H, IMAGE_W], input_type=TensorProto.FLOAT)
    result = runner.invoke(app, ["bench", str(model), "--data", str(root), "--max-per-dataset", "4",
                                 "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "no sample could be scored" in result.output
    document = json.loads((tmp_path / "o" / "results.json").read_text())
    assert document["results"]["total_samples"] == 0 and document["results"]["sn34_score"] == 0.0
    assert document["kit"]["error_samples"] == 16
    assert any("aborted the whole image dataset" in note for note in document["kit"]["validator_treatment"])
    assert any("always feeds uint8" in w for w in document["kit"]["warnings"])
    rows = pq.read_table(tmp_path / "o" / "records.parquet").to_pylist()
    assert {r["status"] for r in rows} == {"error"} and all(r["error"] for r in rows)


def _nan_model(path: Path) -> Path:
    """[B,3,H,W] uint8 → [B,2] logits that are 0/0 = NaN."""
    nodes = [
        helper.make_node("Cast", ["x"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["f", "axes"], ["m"], keepdims=0),
        helper.make_node("Sub", ["m", "m"], ["zero"]),
        helper.make_node("Div", ["zero", "zero"], ["nan"]),
        helper.make_node("Slice", ["nan", "starts", "ends", "slice_axes"], ["logits"]),
    ]
    inits = [helper.make_tensor("axes", TensorProto.INT64, [2], [2, 3]),
             helper.make_tensor("starts", TensorProto.INT64, [1], [0]),
             helper.make_tensor("ends", TensorProto.INT64, [1], [2]),
             helper.make_tensor("slice_axes", TensorProto.INT64, [1], [1])]
    graph = helper.make_graph(nodes, "nan", [helper.make_tensor_value_info("x", TensorProto.UINT8, ["b", 3, 16, 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", 2])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_nan_outputs_are_scored_as_the_validator_does_and_written_as_null(tmp_path: Path, image_tree) -> None:
    result = run_bench(_nan_model(tmp_path / "nan.onnx"), discover_datasets(image_tree[0]), max_per_dataset=3,
                       out_dir=tmp_path / "o")
    def reject_bare_constant(token: str) -> None:
        raise AssertionError(f"results.json holds a bare {token}")

    document = json.loads((tmp_path / "o" / "results.json").read_text(), parse_constant=reject_bare_constant)
    assert document["results"]["binary_brier"] is None and document["results"]["binary_cross_entropy"] is None
    assert document["results"]["sn34_score"] == pytest.approx(1e-6)
    assert document["kit"]["nan_samples"] == 12
    assert all(r["predicted"] == 0 for r in result.records)
    assert any("NaN" in e for e in document["errors"])


def test_ctrl_c_writes_partial_reports_marked_incomplete(tmp_path: Path, image_tree) -> None:
    # A shell starts background jobs with SIGINT ignored, and Python then keeps it ignored: put Ctrl-C's
    # usual handler in place so the simulated press arrives however the suite was started.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _press_ctrl_c_during_a_bench(tmp_path, image_tree)
    finally:
        signal.signal(signal.SIGINT, previous)


def _press_ctrl_c_during_a_bench(tmp_path: Path, image_tree) -> None:
    model = image_model(tmp_path / "image.onnx", IMAGE_H, IMAGE_W)
    seen: list[int] = []

    def press_ctrl_c(done: int, total: int) -> None:
        seen.append(done)
        if len(seen) == 1:
            signal.raise_signal(signal.SIGINT)

    result = run_bench(model, discover_datasets(image_tree[0]), mode="full", batch_size=8, out_dir=tmp_path / "o",
                       on_progress=press_ctrl_c)
    document = json.loads((tmp_path / "o" / "results.json").read_text())
    assert document["metadata"]["completed"] is False and not result.completed
    assert 0 < document["results"]["total_samples"] < 77
    assert any("interrupted" in e for e in document["errors"])

    from discriminator.cli.bench import _print_summary
    from discriminator.cli.common import console

    with console.capture() as captured:
        _print_summary(result.results, None)
    text = captured.get()
    assert "INTERRUPTED: partial" in text
    assert f"only the {document['results']['total_samples']} sample(s)" in text
    # However well the samples it reached did, an interrupted run gives no exam verdict.
    assert document["kit"]["exam"]["verdict"] == "incomplete"
    assert "entrance exam: INCOMPLETE" in text and "PASS" not in text and "bench again to the end" in text
    assert "model load wait" not in text  # onnxruntime loads before the run: no wait to report


def test_manifest_disagreement_is_warned(tmp_path: Path, image_tree) -> None:
    build = tmp_path / "build"
    build.mkdir()
    image_model(build / "image_detector.onnx", IMAGE_H, IMAGE_W)
    spec = DetectorSpec(name="mine", modality="image", height=224, width=224)
    write_manifest(build, {"spec": spec.to_dict(), "onnx_file": "image_detector.onnx"})
    result = run_bench(build, discover_datasets(image_tree[0]), max_per_dataset=2, write=False)
    assert any("manifest says 224×224" in w and "40×48" in w for w in result.results["kit"]["warnings"])
    assert result.results["kit"]["model_name"] == "mine" and result.out_dir is None


def test_bench_path_never_imports_torch(tmp_path: Path, image_tree) -> None:
    model = image_model(tmp_path / "image.onnx", IMAGE_H, IMAGE_W)
    code = (
        "import sys\n"
        "from discriminator.cli import bench\n"
        "from validator_sim.datasets import discover_datasets\n"
        "from validator_sim.run import run_bench\n"
        f"run_bench({str(model)!r}, discover_datasets({str(image_tree[0])!r}), max_per_dataset=2, out_dir={str(tmp_path / 'o')!r})\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr


def test_current_profile_crops_then_resizes_and_is_bit_exact(tmp_path: Path, image_tree) -> None:
    root, expected = image_tree
    (tmp_path / "sets.yaml").write_text(
        f"- {{name: photos, modality: image, media_type: real, path: {root / 'real' / 'photos'}}}\n"
        f"- {{name: gen, media_type: synthetic, path: {root / 'synthetic' / 'gen.zip'}, source_format: zip}}\n"
    )
    model = image_model(tmp_path / "image.onnx", IMAGE_H, IMAGE_W, num_logits=2)
    out = tmp_path / "o"
    cli = runner.invoke(app, ["bench", str(model), "--datasets", str(tmp_path / "sets.yaml"), "--profile", "current",
                              "--mode", "full", "--out", str(out)])
    assert cli.exit_code == 0, cli.output
    rows = pq.read_table(out / "records.parquet").to_pylist()
    assert json.loads((out / "results.json").read_text())["kit"]["profile"] == "current"

    def crop_then_resize(pixels: np.ndarray) -> np.ndarray:
        h, w = pixels.shape[:2]
        scale = min(h / IMAGE_H, w / IMAGE_W)
        ch, cw = min(int(round(scale * IMAGE_H)), h), min(int(round(scale * IMAGE_W)), w)
        top, left = (h - ch) // 2, (w - cw) // 2
        crop = np.ascontiguousarray(pixels[top:top + ch, left:left + cw])
        return cv2.resize(crop, (IMAGE_W, IMAGE_H), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)

    _check_bit_exact(rows, {k: v for k, v in expected.items() if k[0] in ("photos", "gen")}, crop_then_resize, "current")


def test_target_size_and_frames_are_read_as_the_validator_reads_them(tmp_path: Path, image_tree) -> None:
    from validator_sim.profiles import get_profile
    from validator_sim.session import create_session, read_model_io

    profile = get_profile("onnx-2026-02")

    def io_of(shape: list, num_axes: tuple[int, ...]) -> object:
        path = channel_sum_model(tmp_path / "m.onnx", shape, reduce_axes=num_axes, pixels_per_channel=1)
        session, settings = create_session(path.read_bytes(), threads=1)
        assert settings["intra_op_num_threads"] == 1
        return read_model_io(session, profile)

    symbolic = io_of(["b", 3, "h", 64], (2, 3))
    assert (symbolic.modality, symbolic.height, symbolic.width) == ("image", 224, 224)
    video = io_of(["b", "t", 3, 40, 48], (1, 3, 4))
    assert (video.modality, video.frames, video.height, video.width) == ("video", 16, 40, 48)
    fixed = io_of(["b", 8, 3, 40, 48], (1, 3, 4))
    assert fixed.frames == 8 and not fixed.warnings
    too_many = io_of(["b", 80, 3, 16, 16], (1, 3, 4))
    assert too_many.frames == 64 and any("clamps T to 64" in w for w in too_many.warnings)


def test_an_unreadable_dataset_is_reported_and_the_others_still_scored(tmp_path: Path, image_tree) -> None:
    root = tmp_path / "data"
    shutil.copytree(image_tree[0], root)
    (root / "synthetic" / "gen.zip").write_bytes(b"PK\x03\x04 damaged")
    with pytest.raises(InputError, match="gen.zip as a zip"):  # discovery cannot even tell its modality
        discover_datasets(root)
    (tmp_path / "sets.yaml").write_text(
        f"image_datasets:\n"
        f"  - {{name: gen, media_type: synthetic, path: {root / 'synthetic' / 'gen.zip'}}}\n"
        f"  - {{name: photos, media_type: real, path: {root / 'real' / 'photos'}}}\n"
    )
    result = run_bench(image_model(tmp_path / "image.onnx", IMAGE_H, IMAGE_W), load_datasets_yaml(tmp_path / "sets.yaml"),
                       max_per_dataset=3, write=False)
    assert any(e.startswith("gen: cannot read") for e in result.results["errors"])
    assert result.results["kit"]["per_dataset"]["gen"]["unreadable"]
    assert result.results["results"]["total_samples"] == 3  # photos still scored


def test_a_dataset_with_nothing_scorable_is_called_out_not_shown_as_a_score(tmp_path: Path, image_tree) -> None:
    root = tmp_path / "data"
    shutil.copytree(image_tree[0] / "real" / "photos", root / "real" / "photos")
    broken = root / "synthetic" / "all-broken"
    broken.mkdir(parents=True)
    for i in range(3):
        (broken / f"b{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    model = image_model(tmp_path / "image.onnx", IMAGE_H, IMAGE_W)
    result = runner.invoke(app, ["bench", str(model), "--data", str(root), "--out", str(tmp_path / "o"),
                                 "--max-per-dataset", "4", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "skipped in all-broken: 3 " in result.output
    assert "no sample of this dataset was scored" in result.output
    document = json.loads((tmp_path / "o" / "results.json").read_text())
    assert document["per_dataset"]["all-broken"]["total"] == 0 and document["kit"]["skipped"]["all-broken"]["count"] == 3
