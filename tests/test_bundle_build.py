"""`kit build` bundles: every source kind gives a model.py that stands alone and equals its ONNX twin.

Each bundle is loaded the way the evaluator loads it (validator_sim.bundle_runtime) in a
Python that has only torch, transformers, safetensors, numpy and pyyaml — no kit — and
compared with onnxruntime on the ONNX file built from the same detector.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import yaml
from typer.testing import CliRunner

from discriminator.build import BuildRequest, build_detector
from discriminator.bundle.analyzer import analyze_file
from discriminator.bundle.emit import BundleSourceError
from discriminator.errors import OutputExistsError, UsageError
from discriminator.export import parity_tolerance
from tests.kitless_python import can_import, minimal_python
from tests.test_build import FIXTURES, resnet_config, videomae_config
from validator_sim.bundle_runtime import BundleWorker, load_bundle, read_model_config, run_batch

SIZE = dict(height=32, width=32)


def _hf_folder(root: Path) -> Path:
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32, num_labels=3)
    ViTForImageClassification(config).save_pretrained(root / "vit-local")
    return root / "vit-local"


def _checkpoint(root: Path) -> Path:
    from discriminator.sources.checkpoint import write_checkpoint
    from onnx_examples.pytorch_models.networks import FrameCNNVideoDetector

    torch.manual_seed(3)
    module = FrameCNNVideoDetector(channels=(4, 8))
    write_checkpoint(root / "ckpt", module, source="example-video", modality="video",
                     source_options={"channels": [4, 8]}, spec_fields={**SIZE, "temperature": 0.7})
    return root / "ckpt"


#: name → (modality, model string maker, extra request fields)
SOURCES = {
    "example-image": ("image", lambda root: "example-image", {}),
    "example-video": ("video", lambda root: "example-video", {}),
    "hf-resnet50": ("image", lambda root: "hf-resnet50", {"source_options": {"config": resnet_config()}}),
    "hf-videomae": ("video", lambda root: "hf-videomae", {"source_options": {"config": videomae_config()}}),
    "py-file": ("video", lambda root: f"py:{FIXTURES}:tiny_clip", {}),
    "hf-dir": ("image", lambda root: f"hf:{_hf_folder(root)}", {}),
    "checkpoint": ("video", lambda root: str(_checkpoint(root)), {}),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    results = {}
    for name, (modality, model, extra) in SOURCES.items():
        results[name] = build_detector(BuildRequest(modality=modality, model=model(root), out_dir=root / name,
                                                    **SIZE, **extra))
    return results


@pytest.fixture(scope="module")
def kitless_python(tmp_path_factory):
    python = minimal_python(tmp_path_factory.mktemp("kitless"))
    assert can_import(python, "torch") and can_import(python, "transformers")
    assert not can_import(python, "discriminator") and not can_import(python, "onnxruntime")
    return python


def _onnx(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("name", list(SOURCES))
def test_bundle_runs_without_the_kit_and_equals_its_onnx_twin(built, kitless_python, name):
    result = built[name]
    assert sorted(p.name for p in result.bundle_dir.iterdir()) == ["model.py", "model.safetensors", "model_config.yaml"]
    assert analyze_file(result.bundle_dir / "model.py") == []
    spec = result.spec
    rng = np.random.default_rng(7)
    shapes = [(1, None), (2, None), (5, None)] if spec.modality == "image" else [(1, 16), (2, 16), (4, 16), (3, 7), (1, 33)]
    with BundleWorker(result.bundle_dir, spec.modality, python=str(kitless_python)) as worker:
        assert worker.info["config"]["num_classes"] == 3
        for batch, frames in shapes:
            x = rng.integers(0, 256, tuple(spec.input_shape(batch, frames)), dtype=np.uint8)
            got, want = worker.run(x), _onnx(result.onnx_path, x)
            assert got.shape == want.shape == (batch, spec.num_classes)
            assert np.abs(got - want).max() <= 2 * parity_tolerance([want]), (name, batch, frames)
    manifest = json.loads(result.manifest_path.read_text())
    assert set(manifest["artifacts"]) == {"onnx", "bundle"}
    assert manifest["artifacts"]["bundle"]["files"] == result.bundle_files
    assert manifest["artifacts"]["bundle"]["parity"]["max_logits_vs_onnx"] is not None


def test_model_config_holds_exactly_what_the_evaluator_reads(built):
    video, image = built["checkpoint"], built["example-image"]
    raw = yaml.safe_load((video.bundle_dir / "model_config.yaml").read_text())
    assert raw == {"dtype": "float32", "preprocessing": {"resize": [32, 32], "num_frames": 16},
                   "model": {"num_classes": 3, "weights_file": "model.safetensors"}}
    config = read_model_config(image.bundle_dir, "image")
    assert (config.height, config.width, config.num_frames, config.num_classes) == (32, 32, None, 3)
    # The checkpoint's calibrated temperature travels into model.py.
    assert "TEMPERATURE = 0.7" in (video.bundle_dir / "model.py").read_text()


def test_strict_weights_a_missing_key_is_an_error(built, tmp_path):
    from safetensors.torch import load_file, save_file

    bundle = built["example-image"].bundle_dir
    for name in ("model.py", "model_config.yaml"):
        (tmp_path / name).write_bytes((bundle / name).read_bytes())
    state = load_file(str(bundle / "model.safetensors"))
    state.pop(sorted(state)[0])
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(Exception, match="(?i)missing"):
        load_bundle(tmp_path, "image")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_bundles_run_and_report_their_drift(tmp_path, dtype):
    result = build_detector(BuildRequest(modality="video", model="example-video", out_dir=tmp_path, formats=("bundle",),
                                         dtype=dtype, **SIZE))
    assert result.onnx_path is None and not (tmp_path / "video_detector.onnx").exists()
    report = result.bundle_verify
    assert report.param_dtype == dtype and report.drift_limit is not None
    assert 0 < report.max_probs_vs_torch <= report.drift_limit
    loaded = load_bundle(result.bundle_dir, "video")
    assert str(next(loaded.module.parameters()).dtype) == f"torch.{dtype}"
    out = run_batch(loaded, np.zeros((4, 16, 3, 32, 32), np.uint8))
    assert out.dtype == np.float32 and out.shape == (4, 3) and np.isfinite(out).all()
    from safetensors import safe_open

    with safe_open(str(result.bundle_dir / "model.safetensors"), "pt") as handle:
        first = handle.get_tensor(next(iter(handle.keys())))
    assert str(first.dtype) == f"torch.{dtype}"


def test_py_source_that_imports_os_is_refused_with_its_line(tmp_path):
    source = tmp_path / "my_net.py"
    source.write_text("import torch\nfrom torch import nn\nimport os\n\n\ndef make():\n"
                      "    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 3))\n")
    with pytest.raises(BundleSourceError, match=r"my_net\.py:3"):
        build_detector(BuildRequest(modality="image", model=f"py:{source}:make", out_dir=tmp_path / "out", **SIZE))
    assert not (tmp_path / "out").exists(), "a refused build leaves nothing behind"


def test_py_source_with_a_sibling_import_is_refused(tmp_path):
    (tmp_path / "helpers.py").write_text("from torch import nn\n\n\ndef net():\n"
                                         "    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 3))\n")
    source = tmp_path / "my_net.py"
    source.write_text("import helpers\n\n\ndef make():\n    return helpers.net()\n")
    import importlib
    import sys

    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    try:
        with pytest.raises(BundleSourceError, match=r"my_net\.py:1"):
            build_detector(BuildRequest(modality="image", model=f"py:{source}:make", out_dir=tmp_path / "out", **SIZE))
        # --format onnx does not need model.py, so the same source still builds.
        onnx_only = build_detector(BuildRequest(modality="image", model=f"py:{source}:make", out_dir=tmp_path / "onnx",
                                                formats=("onnx",), **SIZE))
        assert onnx_only.bundle_dir is None and onnx_only.onnx_path.is_file()
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("helpers", None)


def test_forced_rebuild_removes_the_zip_of_the_build_it_replaces(tmp_path):
    first = build_detector(BuildRequest(modality="image", model="example-image", out_dir=tmp_path, **SIZE))
    stale_zip, stale_record = tmp_path / "image_detector.zip", tmp_path / "image_detector.zip.json"
    stale_zip.write_bytes(b"PK old")
    stale_record.write_text("{}")
    with pytest.raises(OutputExistsError):
        build_detector(BuildRequest(modality="image", model="example-image", out_dir=tmp_path, **SIZE))
    again = build_detector(BuildRequest(modality="image", model="example-image", out_dir=tmp_path, force=True,
                                        formats=("bundle",), source_options={"seed": 1}, **SIZE))
    assert not stale_zip.exists() and not stale_record.exists()
    assert not (tmp_path / "image_detector.onnx").exists(), "the old ONNX file is not this build's model"
    assert set(again.removed) >= {stale_zip, stale_record}
    assert again.bundle_files["model.safetensors"] != first.bundle_files["model.safetensors"]


def test_embeddings_have_no_bundle(tmp_path):
    with pytest.raises(UsageError, match="not a submission"):
        build_detector(BuildRequest(modality="image", model=f"hf:{_hf_folder(tmp_path)}", task="embeddings",
                                    formats=("bundle",), out_dir=tmp_path / "out", **SIZE))


def test_the_template_is_itself_a_working_bundle(tmp_path):
    """template.py is real code: with its stand-in backbone it loads and runs as any bundle does."""
    from safetensors.torch import save_model

    from discriminator.bundle import template

    (tmp_path / "model.py").write_text(Path(template.__file__).read_text())
    (tmp_path / "model_config.yaml").write_text("preprocessing:\n  resize: [16, 16]\nmodel:\n  num_classes: 3\n")
    save_model(template.SN34Detector(template.build_backbone()), str(tmp_path / "model.safetensors"))
    loaded = load_bundle(tmp_path, "image")
    out = run_batch(loaded, np.full((2, 3, 16, 16), 255, np.uint8))
    assert out.shape == (2, 3) and np.isfinite(out).all()
    assert analyze_file(Path(template.__file__)) == []


def test_cli_build_bundle_reports_both_artifacts(tmp_path):
    from discriminator.cli.app import app

    result = CliRunner().invoke(app, ["build", "image", "--out", str(tmp_path / "b"), "--height", "32", "--width", "32"])
    assert result.exit_code == 0, result.output
    assert "bundle" in result.output and "loaded as the evaluator does" in result.output
    assert "onnx" in result.output and "next: kit check" in result.output
    bad = CliRunner().invoke(app, ["build", "video", "--out", str(tmp_path / "c"), "--frame-rate", "-2"])
    assert bad.exit_code == 2 and "--frame-rate" in bad.output


@pytest.mark.parametrize("name", ["hf-dir", "py-file"])
def test_bundles_from_hf_folders_and_py_files_pass_kit_check(built, name):
    from discriminator.check.runner import run_check

    report = run_check(built[name].bundle_dir, format="bundle", threads=1, latency="off")
    failed = [r.id for r in report.results if r.status == "fail"]
    # The py: fixture is built without --weights, which the check rightly calls untrained; nothing else may fail.
    assert failed == ([] if built[name].head_trained else ["head-trained"]), report.to_dict()


@pytest.mark.parametrize("labels,refused", [
    ({0: "Fake", 1: "Real"}, "class 0 is 'Fake'"),
    ({0: "real", 1: "edited", 2: "synthetic"}, "class 1 is 'edited'"),
    ({0: "Real", 1: "Fake"}, None),
])
def test_a_trained_hf_head_is_refused_when_its_labels_are_not_in_the_networks_order(tmp_path, labels, refused):
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32, num_labels=len(labels), id2label=labels,
                       label2id={name: i for i, name in labels.items()})
    ViTForImageClassification(config).save_pretrained(tmp_path / "vit")
    request = BuildRequest(modality="image", model=f"hf:{tmp_path / 'vit'}", out_dir=tmp_path / "out",
                           formats=("onnx",), **SIZE)
    if refused:
        with pytest.raises(UsageError, match=refused):
            build_detector(request)
        assert not (tmp_path / "out").exists()
    else:
        result = build_detector(request)
        assert result.spec.class_names == ("real", "ai")
        assert any("labels kept in order: 0 Real, 1 Fake" in note for note in result.notes)


def test_a_copied_bundle_folder_knows_its_modality_from_model_py(built, tmp_path):
    import shutil

    from discriminator.check.runner import run_check

    shutil.copytree(built["example-image"].bundle_dir, tmp_path / "copied")
    report = run_check(tmp_path / "copied", threads=1, latency="off")
    assert report.modality == "image"
