"""The evaluator's runtime: gasbench 0.11.1's pins as data, the kit's own pins, and bundles proven under them.

The runtime itself is made by `make test` (`kit runtime install`) before pytest starts and
is real: torch 2.8.0, transformers 5.2.0, timm 1.0.25 … in their own virtualenv, without
the kit. Every bundle here is built by the kit (in its own Python, with its own torch)
and loaded strictly there, as the evaluator loads it, its outputs compared with the
kit's PyTorch outputs.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from discriminator.build import BuildRequest, build_detector
from discriminator.cli.app import app
from tests.test_build import resnet_config, videomae_config
from validator_sim.bundle_runtime import NO_NETWORK_MARKER, RECORDED_LIBRARIES
from validator_sim.runtime import (EVALUATOR_PINS, KIT_TORCH_PIN, base_version, probe_python, requirement_lines,
                                   version_drift)

ROOT = Path(__file__).resolve().parent.parent
#: The pure-Python model libraries (and numpy) the kit's own venv pins to the evaluator's versions.
KIT_PINNED_LIKE_THE_EVALUATOR = ("transformers", "timm", "safetensors", "einops", "open-clip-torch", "numpy")


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s#]+)\s*(#.*)?", line)
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def test_the_kits_constraints_pin_the_model_libraries_to_the_evaluators_versions_and_the_venv_holds_them():
    constraints = _constraints()
    for name in KIT_PINNED_LIKE_THE_EVALUATOR:
        assert constraints.get(name) == EVALUATOR_PINS[name], f"constraints.txt pins {name} {constraints.get(name)}"
        assert base_version(metadata.version(name)) == EVALUATOR_PINS[name], f"the kit's venv holds another {name}"
    assert constraints["torch"] == KIT_TORCH_PIN  # the CPU wheel; the evaluator's 2.8.0 lives in the runtime only


def test_the_worker_records_exactly_the_pinned_libraries_and_drift_names_each_difference():
    assert RECORDED_LIBRARIES == tuple(EVALUATOR_PINS)
    exact = {name: version for name, version in EVALUATOR_PINS.items()}
    assert version_drift(exact) == []
    assert version_drift({**exact, "torch": "2.8.0+cu128"}) == []  # a local build label is the same release
    drift = version_drift({**exact, "transformers": "5.25.0", "timm": None})
    assert drift == ["transformers 5.25.0 (evaluator 5.2.0)", "timm missing (evaluator 1.0.25)"]
    assert all(f"{name}=={version}" in requirement_lines() for name, version in EVALUATOR_PINS.items())


def test_the_runtime_holds_exactly_the_pins_and_nothing_of_the_kit(evaluator_runtime):
    probed = probe_python(evaluator_runtime.python)
    assert version_drift(probed["versions"]) == []
    imports = subprocess.run([evaluator_runtime.python, "-I", "-c", "import discriminator"], capture_output=True, text=True)
    assert imports.returncode != 0 and "No module named 'discriminator'" in imports.stderr
    manifest = json.loads((evaluator_runtime.home / "runtime.json").read_text())
    assert manifest["pins"] == EVALUATOR_PINS and manifest["bytes"] > 0


def test_runtime_install_is_idempotent_and_info_reports_it(evaluator_runtime):
    first = CliRunner().invoke(app, ["runtime", "install"])
    assert first.exit_code == 0, first.output
    assert "already there and matches the pins" in first.output
    info = CliRunner().invoke(app, ["runtime", "info", "--json"])
    facts = json.loads(info.stdout)
    assert facts["runtime"]["usable"] and facts["bundles_run_under"] == "evaluator"
    assert facts["kit_environment"]["versions"]["torch"].startswith(KIT_TORCH_PIN)
    assert any("torch" in d and "evaluator 2.8.0" in d for d in facts["kit_environment"]["drift"])


def test_a_folder_without_a_manifest_is_not_a_runtime_and_info_says_how_to_make_one(tmp_path, monkeypatch):
    monkeypatch.setenv("KIT_RUNTIME_DIR", str(tmp_path))
    from validator_sim.runtime import current_runtime, runtime_home

    runtime_home().mkdir(parents=True)  # an interrupted install: a venv folder, no runtime.json
    assert current_runtime().kind == "kit"
    result = CliRunner().invoke(app, ["runtime", "info"])
    assert result.exit_code == 0 and "no readable runtime.json" in result.output and "kit runtime install" in result.output


def test_the_worker_refuses_internet_sockets_whatever_library_opens_them():
    code = ("import socket, sys; sys.path.insert(0, 'validator_sim'); import bundle_runtime as b; b.refuse_network()\n"
            "try:\n    socket.create_connection(('example.org', 80), timeout=5)\nexcept OSError as exc:\n    print(exc)")
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert NO_NETWORK_MARKER in done.stdout, done.stdout + done.stderr


def _save_pretrained(root: Path, name: str, model) -> str:
    model.save_pretrained(root / name)
    return f"hf:{root / name}"


def _vit(root: Path, head: bool) -> str:
    from transformers import ViTConfig, ViTForImageClassification, ViTModel

    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=32, num_labels=3)
    return _save_pretrained(root, f"vit-{head}", (ViTForImageClassification if head else ViTModel)(config))


def _videomae_base(root: Path) -> str:
    from transformers import VideoMAEModel

    return _save_pretrained(root, "videomae-base", VideoMAEModel(videomae_config()))


def _resnet_base(root: Path) -> str:
    from transformers import ResNetModel

    return _save_pretrained(root, "resnet-base", ResNetModel(resnet_config()))


#: name → (modality, model string maker, extra BuildRequest fields). HF classifiers with 3-class heads, HF base
#: models the kit puts its head on (--task classify), and timm's own test architectures.
SOURCES = {
    "hf-vit-classifier": ("image", lambda root: _vit(root, head=True), {}),
    "hf-vit-base+kit-head": ("image", lambda root: _vit(root, head=False), {"task": "classify"}),
    "hf-videomae-classifier": ("video", lambda root: "hf-videomae", {"source_options": {"config": videomae_config()}}),
    "hf-videomae-base+kit-head": ("video", _videomae_base, {"task": "classify"}),
    "hf-resnet-classifier": ("image", lambda root: "hf-resnet50", {"source_options": {"config": resnet_config()}}),
    "hf-resnet-base+kit-head": ("image", _resnet_base, {"task": "classify"}),
    "timm-test-vit": ("image", lambda root: "timm:test_vit", {"height": 160, "width": 160}),
    "timm-test-resnet-video": ("video", lambda root: "timm:test_resnet", {"height": 64, "width": 64}),
}


@pytest.mark.parametrize("name", list(SOURCES))
def test_each_kit_bundle_loads_strictly_in_the_evaluator_runtime_and_equals_the_kits_pytorch(
        evaluator_runtime, tmp_path, name):
    modality, model, extra = SOURCES[name]
    fields = {"height": 32, "width": 32, **extra}
    result = build_detector(BuildRequest(modality=modality, model=model(tmp_path), out_dir=tmp_path / "out",
                                         formats=("bundle",), threads=1, **fields))
    report = result.bundle_verify
    # build verification loaded model.py as custom_model in the runtime (load_model loads strictly) and compared
    # every run with the kit's PyTorch detector under the same tolerance as the ONNX twin
    assert report.runtime["kind"] == "evaluator" and report.runtime["drift"] == []
    assert report.runtime["versions"]["torch"].startswith("2.8.0")
    assert report.runtime["versions"]["transformers"] == "5.2.0"
    assert report.rows and all(row.logits_vs_torch <= row.tolerance for row in report.rows)
    assert "strict=True" in (result.bundle_dir / "model.py").read_text()


def test_kit_check_without_the_runtime_says_what_differs_and_the_one_command(tmp_path, without_evaluator_runtime):
    from tests.bundle_helpers import make_bundle

    folder = make_bundle(tmp_path / "bundle")
    result = CliRunner().invoke(app, ["check", str(folder), "--json", "--threads", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    row = {r["id"]: r for r in report["results"]}["runtime"]
    assert row["status"] == "warn"
    assert f"torch {metadata.version('torch')} (evaluator 2.8.0)" in row["message"]
    assert "`kit runtime install`" in row["message"]
    assert report["runtime"]["kind"] == "kit" and report["runtime"]["versions"]["torch"] == metadata.version("torch")


def test_kit_check_with_the_runtime_records_its_versions(evaluator_runtime, tmp_path):
    from tests.bundle_helpers import make_bundle

    folder = make_bundle(tmp_path / "bundle")
    result = CliRunner().invoke(app, ["check", str(folder), "--json", "--threads", "1"])
    report = json.loads(result.stdout)
    assert result.exit_code == 0
    assert {r["id"]: r for r in report["results"]}["runtime"]["status"] == "pass"
    assert report["runtime"]["kind"] == "evaluator" and report["runtime"]["drift"] == []


def test_python_option_runs_the_bundle_under_that_interpreter(tmp_path, without_evaluator_runtime, evaluator_runtime):
    from tests.bundle_helpers import make_bundle

    folder = make_bundle(tmp_path / "bundle")
    result = CliRunner().invoke(app, ["check", str(folder), "--json", "--threads", "1", "--python",
                                      evaluator_runtime.python])
    report = json.loads(result.stdout)
    assert report["runtime"]["kind"] == "python" and report["runtime"]["versions"]["torch"].startswith("2.8.0")
    missing = CliRunner().invoke(app, ["check", str(folder), "--python", str(tmp_path / "nope" / "python")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_kit_bench_runs_a_bundle_in_the_evaluator_runtime_and_results_json_carries_its_versions(
        evaluator_runtime, tmp_path):
    import numpy as np

    from tests.bundle_helpers import make_bundle
    from tests.sim_helpers import image_bytes, random_image

    folder = make_bundle(tmp_path / "bundle")
    rng = np.random.default_rng(0)
    for label in ("real", "synthetic", "semisynthetic"):
        dataset = tmp_path / "data" / label / f"{label}-set"
        dataset.mkdir(parents=True)
        for index in range(4):
            (dataset / f"{index}.png").write_bytes(image_bytes(random_image(rng, 40, 48)))
    out = tmp_path / "results"
    result = CliRunner().invoke(app, ["bench", str(folder), "--data", str(tmp_path / "data"), "--modality", "image",
                                      "--out", str(out), "--no-cache", "--threads", "1"])
    assert result.exit_code == 0, result.output
    session = json.loads((out / "results.json").read_text())["kit"]["session"]
    assert session["bundle_runtime"]["kind"] == "evaluator" and session["bundle_runtime"]["drift_from_evaluator"] == []
    assert session["bundle_runtime"]["library_versions"]["transformers"] == "5.2.0"
    assert session["runtime"].startswith("torch 2.8.0")
    # kit package reads this run's entrance-exam verdict from the results.json bench wrote
    from discriminator.package import last_bench_exam

    exam = last_bench_exam([folder], "bundle", root=tmp_path)
    assert exam is not None and exam.verdict in ("pass", "at risk", "fail")
    assert exam.accuracy is not None and exam.interval is not None and exam.interval[0] <= exam.accuracy <= exam.interval[1]
