"""`kit check` on safetensors bundles: one deliberately broken bundle per rule, caught by exactly that rule.

The bundles are real (tests/bundle_helpers.py): YAML, a model.py with an nn.Module,
safetensors weights. Static mistakes never start the model; runtime ones are run in the
checker's worker process, which must survive a model.py that hangs, raises or prints
megabytes.
"""

from __future__ import annotations

import json
import re
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from discriminator.check import BUNDLE_RULES, run_check
from discriminator.cli.app import app
from discriminator.spec import DetectorSpec, write_manifest
from tests.bundle_helpers import FRAMES, HEAD, SIZE, bundle_config, make_bundle, model_source
from tests.test_check_models import flagged


def check_cli(path: Path, *args: str):
    """Run `kit check PATH --json`; return (exit code, {rule id: result}, stdout, stderr)."""
    result = CliRunner().invoke(app, ["check", str(path), "--json", "--threads", "1", *args])
    rules = {}
    if result.exit_code in (0, 1) and "results" in json.loads(result.stdout):
        rules = {r["id"]: r for r in json.loads(result.stdout)["results"]}
    return result.exit_code, rules, result.stdout, result.stderr


def rules_of(report) -> dict:
    return {r.id: r.to_dict() for r in report.results}


@pytest.fixture(scope="module")
def good_image(tmp_path_factory) -> tuple[Path, dict]:
    """A working image bundle and its check results, checked once in a fresh interpreter that must not import torch."""
    import subprocess

    folder = make_bundle(tmp_path_factory.mktemp("good") / "bundle")
    code = ("import json, sys; from discriminator.check import run_check; "
            f"report = run_check({str(folder)!r}, threads=1); "
            "assert 'torch' not in sys.modules, 'torch was imported into the caller'; "
            "print(json.dumps(report.to_dict()))")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    return folder, {r["id"]: r for r in json.loads(completed.stdout)["results"]}


def test_a_correct_bundle_passes_every_rule_without_torch_in_the_caller(good_image):
    _, rules = good_image
    assert flagged(rules) == {}
    assert list(rules) == [r.id for r in BUNDLE_RULES]
    assert "B ∈ {32, 1, 5}" in rules["bundle-batches"]["message"]
    assert "TinyDetector with float32 parameters on cpu" in rules["bundle-loads"]["message"]
    assert rules["bundle-classes"]["figure"] == 3
    assert rules["latency"]["figure"] > 0
    assert rules["head-trained"]["status"] == "skip" and rules["bundle-spec-match"]["status"] == "skip"


def _video_without_resize() -> dict:
    config = bundle_config("video")
    config["preprocessing"].pop("resize")
    return config


# (case, modality, make_bundle changes, {rule: status} expected, exit code). Each line breaks one thing.
STATIC = [
    ("no model.py", "image", dict(source=""), {"bundle-files": "fail"}, 1),
    ("weights corrupt", "image", dict(files={"model.safetensors": b"\x10\x00\x00\x00\x00\x00\x00\x00{not json"}),
     {"weights-file": "fail"}, 1),
    ("weights named but missing", "image", dict(config=bundle_config(model={"weights_file": "w.safetensors"}),
                                                weights_name="other.bin"), {"weights-file": "fail"}, 1),
    ("sharded weights", "image", dict(files={"model-00001-of-00002.safetensors": b"x",
                                             "model.safetensors.index.json": b"{}"}), {"sharded-weights": "fail"}, 1),
    ("YAML error", "image", dict(config="dtype: [float32\nmodel: {num_classes: 3}\n"), {"config-yaml": "fail"}, 1),
    ("YAML not a mapping", "image", dict(config="- dtype\n- model\n"), {"config-yaml": "fail"}, 1),
    ("dtype float64", "image", dict(config=bundle_config(dtype="float64")), {"config-dtype": "fail"}, 1),
    ("resize one int", "image", dict(config=bundle_config(preprocessing={"resize": [32]})), {"config-resize": "fail"}, 1),
    ("resize floats", "image", dict(config=bundle_config(preprocessing={"resize": [32.0, 32.0]})),
     {"config-resize": "fail"}, 1),
    ("65 frames", "video", dict(config=bundle_config("video", preprocessing={"num_frames": 65})),
     {"config-frames": "fail"}, 1),
    ("num_frames without resize", "video", dict(config=_video_without_resize()), {"config-frames": "fail"}, 1),
    ("frame_rate 0", "video", dict(config=bundle_config("video", preprocessing={"frame_rate": 0})),
     {"config-frame-rate": "fail"}, 1),
    ("frame_rate NaN", "video", dict(config=bundle_config("video", preprocessing={"frame_rate": float("nan")})),
     {"config-frame-rate": "fail"}, 1),
    ("imports os", "image", dict(source=model_source(imports="import os")), {"static-analysis": "fail"}, 1),
    ("sibling import", "image", dict(source=model_source(imports="import helpers"), files={"helpers.py": b"X = 1\n"}),
     {"static-analysis": "fail"}, 1),
    ("uses getattr", "image", dict(source=model_source(forward="        return getattr(self, 'head')(features)")),
     {"static-analysis": "fail"}, 1),
    ("torch.jit.trace", "image", dict(source=model_source(load="    torch.jit.trace")), {"static-analysis": "fail"}, 1),
    ("no num_classes", "image", dict(source=model_source(signature="weights_path")), {"load-model-signature": "fail"}, 1),
    ("model key dropped", "image", dict(config=bundle_config(model={"width": 8}),
                                        source=model_source(signature="weights_path, num_classes=3")),
     {"load-model-signature": "fail"}, 1),
]


@pytest.mark.parametrize("case, modality, changes, expected, exit_code", STATIC, ids=[c[0] for c in STATIC])
def test_each_static_mistake_is_flagged_by_exactly_its_rule_and_nothing_runs(tmp_path, case, modality, changes,
                                                                            expected, exit_code):
    folder = make_bundle(tmp_path / "bundle", modality, **changes)
    if changes.get("source") == "":
        (folder / "model.py").unlink()
    report = run_check(folder, modality=modality, threads=1)
    rules = rules_of(report)
    assert flagged(rules) == expected, {k: rules[k]["message"] for k in flagged(rules)}
    assert rules["bundle-loads"]["status"] == "skip"  # the model never ran
    assert (1 if report.failed else 0) == exit_code


def test_static_analysis_reports_each_line_and_fix(tmp_path):
    source = model_source(imports="import os\nimport json")
    folder = make_bundle(tmp_path / "bundle", source=source)
    message = rules_of(run_check(folder, threads=1))["static-analysis"]["message"]
    os_line = source.splitlines().index("import os") + 1
    assert f"model.py:{os_line} imports os" in message and f"model.py:{os_line + 1} imports json" in message
    assert "pathlib" in message and "model_config.yaml" in message  # each violation's own fix


# Runtime mistakes: the bundle loads (or tries to) in the worker. (case, changes, expected, a fragment of the message)
RUNTIME = [
    ("load_model raises", dict(source=model_source(load="    raise ValueError('no weights for you')")),
     {"bundle-loads": "fail"}, "no weights for you"),
    ("load_model returns a dict", dict(source=model_source(load="    return {'head': None}")), {"bundle-loads": "fail"},
     "not a torch.nn.Module"),
    ("forward raises", dict(source=model_source(forward="        raise RuntimeError('boom')")), {"bundle-runs": "fail"},
     "boom"),
    ("two-key dict output", dict(source=model_source(forward="        return {'a': features, 'b': features}")),
     {"output-format": "fail"}, "'logits' or 'output'"),
    ("batch frozen at 1", dict(source=model_source(forward="        return self.head(features).reshape(1, -1)")),
     {"bundle-batches": "fail"}, "B=32"),
    ("softmax output", dict(source=model_source(forward="        return self.head(features).softmax(dim=-1)")),
     {"not-softmaxed": "fail"}, "double softmax"),
    ("NaN on a flat frame", dict(source=model_source(
        forward="        return self.head(features / x.std(dim=(1, 2, 3)).unsqueeze(1))")), {"finite": "fail"}, "all-0"),
    ("constant model", dict(head=torch.zeros(3, 3)), {"responsive": "warn"}, "constant model"),
    ("2-logit head", dict(head=HEAD[:2].clone()), {"bundle-classes": "warn"},
     "semisynthetic sample can never be predicted right"),
    ("num_classes 2 in the config", dict(config=bundle_config(model={"num_classes": 2})), {"config-classes": "warn"},
     "model.num_classes is 2, so load_model is given num_classes=2"),
    ("an unread weights file beside", dict(files={"old.safetensors": b"old"}), {"extra-files": "warn"},
     "old.safetensors"),
]


@pytest.fixture(scope="module")
def runtime_results(tmp_path_factory) -> dict[str, dict]:
    """Every RUNTIME bundle checked once, two at a time (each check waits on its own worker process)."""
    from concurrent.futures import ThreadPoolExecutor

    root = tmp_path_factory.mktemp("runtime")
    folders = {case: make_bundle(root / f"case{i}", **changes) for i, (case, changes, _, _) in enumerate(RUNTIME)}
    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = dict(zip(folders, pool.map(lambda folder: run_check(folder, threads=1), folders.values())))
    return {case: rules_of(report) for case, report in reports.items()}


@pytest.mark.parametrize("case, changes, expected, fragment", RUNTIME, ids=[c[0] for c in RUNTIME])
def test_each_runtime_mistake_is_flagged_by_exactly_its_rule(runtime_results, case, changes, expected, fragment):
    rules = runtime_results[case]
    assert flagged(rules) == expected, {k: rules[k]["message"] for k in flagged(rules)}
    assert fragment in rules[next(iter(expected))]["message"]


#: The rules that need a first batch to have run: skipped, not failed, when it never finishes.
AFTER_FIRST_RUN = ("output-format", "bundle-batches", "bundle-classes", "finite", "not-softmaxed", "responsive",
                   "bundle-spec-match", "latency")


def test_a_hanging_model_py_is_said_as_a_time_out_and_what_needs_its_run_is_skipped(tmp_path):
    source = model_source(forward="        while True:\n            features = features + 1")
    folder = make_bundle(tmp_path / "bundle", source=source)
    code, rules, _, stderr = check_cli(folder, "--time-limit", "6")
    assert code == 1 and flagged(rules) == {"bundle-runs": "fail"}
    assert rules["bundle-runs"]["message"] == f"a batch [1,3,{SIZE},{SIZE}] did not finish within 6 s on this CPU"
    assert "--time-limit" in rules["bundle-runs"]["fix"] and "--device cuda" in rules["bundle-runs"]["fix"]
    assert rules["bundle-runs"]["figure"] == "timeout"
    assert {rule: rules[rule]["status"] for rule in AFTER_FIRST_RUN} == dict.fromkeys(AFTER_FIRST_RUN, "skip")
    assert "Traceback" not in stderr
    assert re.search(r"bundle-runs +\d+\.\d s", stderr)  # progress: the slow rule and its time, beside --json


def test_a_model_too_slow_for_the_batch_of_32_times_out_there_and_every_other_proof_still_runs(tmp_path):
    # B = 1 answers at once; any larger batch never finishes (slow on this CPU, not a frozen batch size).
    forward = ("        if x.shape[0] > 1:\n            while True:\n                features = features + 1\n"
               "        return self.head(features)")
    folder = make_bundle(tmp_path / "bundle", source=model_source(forward=forward))
    code, rules, _, _ = check_cli(folder, "--time-limit", "4")
    assert code == 1 and flagged(rules) == {"bundle-batches": "fail"}
    message, fix = rules["bundle-batches"]["message"], rules["bundle-batches"]["fix"]
    assert message.startswith(f"a batch [32,3,{SIZE},{SIZE}] did not finish within 4 s on this CPU")
    assert "hard-code" not in fix and "--time-limit" in fix
    # The worker killed by the time limit is started again: the content proofs at B = 1 still run and pass.
    assert all(rules[rule]["status"] == "pass" for rule in ("bundle-classes", "finite", "not-softmaxed", "responsive"))
    assert "at batch 1" in rules["latency"]["message"]


def test_the_latency_figure_reuses_the_batch_proof_unless_asked_for_in_full(good_image):
    folder, rules = good_image
    assert "at batch 32" in rules["latency"]["message"] and "the batch proof's" in rules["latency"]["message"]
    code, full, _, _ = check_cli(folder, "--latency")
    assert code == 0 and "median of 3" in full["latency"]["message"] and full["latency"]["figure"] > 0


def test_a_model_py_printing_megabytes_neither_floods_nor_breaks_the_check(tmp_path):
    source = model_source(imports="print('x' * 5_000_000)", forward="        print('y' * 100_000)\n        return self.head(features)")
    code, rules, stdout, _ = check_cli(make_bundle(tmp_path / "bundle", source=source))
    assert code == 0 and flagged(rules) == {}
    assert len(stdout) < 200_000  # the JSON report only; model.py's prints stay in the worker's log


@pytest.mark.parametrize("dtype", ["float16", "bf16"])
def test_half_precision_bundles_load_and_run_in_their_dtype(tmp_path, dtype):
    folder = make_bundle(tmp_path / "bundle", "video", config=bundle_config("video", dtype=dtype))
    rules = rules_of(run_check(folder, threads=1))
    assert flagged(rules) == {}
    canonical = {"float16": "float16", "bf16": "bfloat16"}[dtype]
    assert f"{canonical} parameters" in rules["bundle-loads"]["message"]
    assert f"in {canonical}" in rules["bundle-runs"]["message"]
    assert f"[1,{FRAMES},3,{SIZE},{SIZE}]" in rules["bundle-runs"]["message"]
    assert "B ∈ {4, 1, 3}" in rules["bundle-batches"]["message"]


def test_an_unknown_device_is_one_line_and_exit_2(good_image):
    folder, _ = good_image
    code, _, _, stderr = check_cli(folder, "--device", "gpu")
    assert code == 2 and "--device 'gpu'" in stderr and len(stderr.strip().splitlines()) == 1


def test_modality_comes_from_the_yaml_and_is_asked_for_when_absent(tmp_path):
    folder = make_bundle(tmp_path / "bundle", config=bundle_config(modality=None))
    code, _, _, stderr = check_cli(folder)
    assert code == 2 and "--modality" in stderr and len(stderr.strip().splitlines()) == 1


def test_a_build_folder_is_checked_in_both_formats_and_an_untrained_head_fails_each(tmp_path):
    from tests.test_check_models import image_spec, write_build_dir

    build = write_build_dir(tmp_path / "build", image_spec(), head_trained=False)
    make_bundle(build / "bundle")
    code, _, stdout, _ = check_cli(build)
    payload = json.loads(stdout)
    assert code == 1 and payload["ok"] is False
    assert [r["format"] for r in payload["reports"]] == ["onnx", "bundle"]
    for report in payload["reports"]:
        rules = {r["id"]: r for r in report["results"]}
        assert rules["head-trained"]["status"] == "fail"
    bundle_rules = {r["id"]: r for r in payload["reports"][1]["results"]}
    assert bundle_rules["bundle-spec-match"]["status"] == "pass"
    code, rules, _, _ = check_cli(build, "--format", "onnx")
    assert code == 1 and "latency" in rules and "bundle-loads" not in rules


# ------------------------------------------------------------------ zips holding bundles


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def bundle_members(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


ZIP_REFUSALS = [
    ("in a folder", lambda m: {f"bundle/{k}": v for k, v in m.items()}, "zip root"),
    ("missing model.py", lambda m: {k: v for k, v in m.items() if k != "model.py"}, "no model.py"),
    ("missing config", lambda m: {k: v for k, v in m.items() if k != "model_config.yaml"}, "no model_config.yaml"),
    ("mixed with ONNX", lambda m: {**m, "image_detector.onnx": b"onnx"}, "mixes an ONNX model"),
    ("only weights", lambda m: {"model.safetensors": m["model.safetensors"]}, "neither one .onnx file nor a bundle"),
]


@pytest.mark.parametrize("case, change, fragment", ZIP_REFUSALS, ids=[c[0] for c in ZIP_REFUSALS])
def test_bundle_zips_that_are_not_one_bundle_at_the_root_are_refused_in_one_line(good_image, tmp_path, case, change,
                                                                                fragment):
    folder, _ = good_image
    path = write_zip(tmp_path / "submission.zip", change(bundle_members(folder)))
    code, _, _, stderr = check_cli(path)
    assert code == 2
    assert fragment in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_a_bundle_zip_with_an_extra_member_warns(good_image, tmp_path):
    folder, _ = good_image
    path = write_zip(tmp_path / "submission.zip", {**bundle_members(folder), "README.md": b"hello"})
    code, rules, _, _ = check_cli(path)
    assert code == 0 and flagged(rules) == {"extra-files": "warn"}
    assert "README.md" in rules["extra-files"]["message"]


def test_a_kit_spec_that_disagrees_with_model_config_is_named(tmp_path):
    build = tmp_path / "build"
    make_bundle(build / "bundle")
    spec = DetectorSpec(name="tiny", modality="image", height=64, width=64)
    write_manifest(build, {"spec": spec.to_dict(), "artifacts": {"bundle": {"dir": "bundle"}}, "head_trained": True})
    code, rules, _, _ = check_cli(build)
    assert code == 1 and flagged(rules) == {"bundle-spec-match": "fail"}
    assert "size: spec says 64×64, the evaluator sends 32×32" in rules["bundle-spec-match"]["message"]
