"""`kit check` against one deliberately broken ONNX model per rule, built here with onnx.helper.

Each model is a tiny real detector (uint8 pixels → channel means → linear head) with
exactly one contract mistake; the check must fail (or warn on) that rule and no
other, with the documented exit code. `make_detector` is reused by the package tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import set_external_data
from typer.testing import CliRunner

from discriminator.check import RULES, run_check
from discriminator.cli.app import app
from discriminator.spec import SPEC_METADATA_KEY, DetectorSpec, write_manifest

SIZE = 32
#: A head that maps very different channel means to clearly different logits.
HEAD = np.array([[3.0, -2.0, 1.0, 0.5, -1.0], [-1.0, 2.0, -3.0, 1.5, 0.5], [2.0, 1.0, -2.0, -0.5, 1.0]], np.float32)


def make_detector(
    modality: str = "image",
    *,
    dims: list | None = None,
    input_type: int = TensorProto.UINT8,
    classes: int = 3,
    softmax: bool = False,
    nan_on_flat: bool = False,
    freeze_batch: bool = False,
    freeze_frames: int | None = None,
    custom_op: bool = False,
    extra_output: bool = False,
    extra_input: bool = False,
    lookup_table_bytes: int = 0,
    opset: int = 18,
    ir_version: int = 10,
    spec: DetectorSpec | None = None,
) -> onnx.ModelProto:
    """A small working detector, optionally broken in one named way."""
    video = modality == "video"
    if dims is None:
        dims = ["batch", "frames", 3, SIZE, SIZE] if video else ["batch", 3, SIZE, SIZE]
    channels_last = dims[-1] == 3 and not video
    spatial_axes = [1, 2] if channels_last else ([1, 3, 4] if video else [2, 3])
    every_axis = list(range(1, len(dims)))
    initializers = [
        numpy_helper.from_array(HEAD[:, :classes].copy(), "head"),
        numpy_helper.from_array(np.array(spatial_axes, np.int64), "spatial_axes"),
        numpy_helper.from_array(np.array(every_axis, np.int64), "every_axis"),
        numpy_helper.from_array(np.array(255.0, np.float32), "scale"),
        numpy_helper.from_array(np.array(0.5, np.float32), "centre"),
    ]
    nodes = [helper.make_node("Cast", ["pixels"], ["x"], to=TensorProto.FLOAT)]
    if freeze_frames:
        initializers.append(numpy_helper.from_array(np.array([-1, freeze_frames, 3, SIZE, SIZE], np.int64), "frozen_t"))
        nodes.append(helper.make_node("Reshape", ["x", "frozen_t"], ["x_t"]))
        source = "x_t"
    else:
        source = "x"
    if nan_on_flat:  # per-sample standardisation without an epsilon: 0/0 on a flat image
        nodes += [
            helper.make_node("ReduceMean", [source, "every_axis"], ["mean"], keepdims=1),
            helper.make_node("Sub", [source, "mean"], ["centred"]),
            helper.make_node("Mul", ["centred", "centred"], ["squared"]),
            helper.make_node("ReduceMean", ["squared", "every_axis"], ["variance"], keepdims=1),
            helper.make_node("Sqrt", ["variance"], ["std"]),
            helper.make_node("Div", ["centred", "std"], ["z"]),
            helper.make_node("ReduceMean", ["z", "spatial_axes"], ["features"], keepdims=0),
        ]
    else:
        nodes += [
            helper.make_node("ReduceMean", [source, "spatial_axes"], ["means"], keepdims=0),
            helper.make_node("Div", ["means", "scale"], ["unit"]),
            helper.make_node("Sub", ["unit", "centre"], ["features"]),
        ]
    features = "features"
    if freeze_batch:  # a traced batch of 1 baked into a Reshape
        initializers.append(numpy_helper.from_array(np.array([1, -1], np.int64), "frozen_batch"))
        nodes.append(helper.make_node("Reshape", [features, "frozen_batch"], ["features_b1"]))
        features = "features_b1"
    if custom_op:
        nodes.append(helper.make_node("Boost", [features], ["boosted"], domain="example.custom"))
        features = "boosted"
    head_out = "raw_logits" if (softmax or lookup_table_bytes) else "logits"
    nodes.append(helper.make_node("MatMul", [features, "head"], [head_out]))
    if lookup_table_bytes:  # an int64 table read through Gather, contributing zero to the logits
        initializers += [
            numpy_helper.from_array(np.arange(lookup_table_bytes // 8, dtype=np.int64), "table"),
            numpy_helper.from_array(np.array(0, np.int64), "table_index"),
            numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        ]
        nodes += [
            helper.make_node("Gather", ["table", "table_index"], ["entry"]),
            helper.make_node("Cast", ["entry"], ["entry_f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["entry_f", "zero"], ["nothing"]),
            helper.make_node("Add", ["raw_logits", "nothing"], ["with_table" if softmax else "logits"]),
        ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["raw_logits"], ["logits"], axis=-1))
    inputs = [helper.make_tensor_value_info("pixels", input_type, dims)]
    if extra_input:
        inputs.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", 1]))
        nodes.append(helper.make_node("Identity", ["mask"], ["mask_out"]))
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])]
    if extra_output:
        outputs.append(helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 3]))
    graph = helper.make_graph(nodes, "detector", inputs, outputs, initializers)
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("example.custom", 1)] if custom_op else [])
    model = helper.make_model(graph, opset_imports=opsets, ir_version=ir_version, producer_name="kit-tests")
    if spec is not None:
        helper.set_model_props(model, {SPEC_METADATA_KEY: spec.to_json()})
    return model


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def write_build_dir(directory: Path, spec: DetectorSpec, model: onnx.ModelProto | None = None,
                    manifest_spec: DetectorSpec | None = None, head_trained: bool | None = None) -> Path:
    """A `kit build`-style folder: the model with its spec in metadata, and manifest.json beside it."""
    directory.mkdir(parents=True, exist_ok=True)
    model = model if model is not None else make_detector(spec.modality, spec=spec)
    save(model, directory / f"{spec.artifact_stem}.onnx")
    manifest = {"spec": (manifest_spec or spec).to_dict(), "onnx_file": f"{spec.artifact_stem}.onnx", "opset": 18}
    if head_trained is not None:
        manifest["head_trained"] = head_trained
    write_manifest(directory, manifest)
    return directory


def image_spec(**changes) -> DetectorSpec:
    values = dict(name="tiny-image", modality="image", height=SIZE, width=SIZE)
    values.update(changes)
    return DetectorSpec(**values)


def video_spec(**changes) -> DetectorSpec:
    values = dict(name="tiny-video", modality="video", height=SIZE, width=SIZE, frames=16, frame_mapping="all",
                  temporal_aggregation="mean_logits")
    values.update(changes)
    return DetectorSpec(**values)


def check_cli(path: Path, *args: str):
    """Run `kit check PATH --json`; return (exit code, {rule id: result}, stderr)."""
    result = CliRunner().invoke(app, ["check", str(path), "--json", "--threads", "1", *args])
    rules = {}
    if result.exit_code in (0, 1):
        rules = {r["id"]: r for r in json.loads(result.stdout)["results"]}
    return result.exit_code, rules, result.stderr


def flagged(rules: dict) -> dict[str, str]:
    return {rule_id: r["status"] for rule_id, r in rules.items() if r["status"] in ("fail", "warn")}


# (case, modality, make_detector changes, {rule: status} expected, exit code)
BROKEN = [
    ("float input", "image", dict(input_type=TensorProto.FLOAT), {"input-dtype": "fail"}, 1),
    ("dynamic H/W", "image", dict(dims=["batch", 3, "height", "width"]), {"input-size": "fail"}, 1),
    ("NHWC", "image", dict(dims=["batch", SIZE, SIZE, 3]), {"channels": "fail"}, 1),
    ("batch fixed to 1", "image", dict(dims=[1, 3, SIZE, SIZE]), {"batch-axis": "fail"}, 1),
    ("batch frozen in graph", "image", dict(freeze_batch=True), {"batch-runs": "fail"}, 1),
    ("frames frozen in graph", "video", dict(freeze_frames=16), {"frames-runs": "fail"}, 1),
    ("T fixed at 100", "video", dict(dims=["batch", 100, 3, SIZE, SIZE]), {"frames-axis": "fail"}, 1),
    ("1 logit", "image", dict(classes=1), {"class-count": "fail"}, 1),
    ("5 logits", "image", dict(classes=5), {"class-count": "fail"}, 1),
    ("softmax output", "image", dict(softmax=True), {"not-softmaxed": "fail"}, 1),
    ("NaN on zero input", "image", dict(nan_on_flat=True), {"finite": "fail"}, 1),
    ("custom-domain op", "image", dict(custom_op=True), {"default-domain": "fail"}, 1),
    ("opset 23", "image", dict(opset=23), {"opset": "fail"}, 1),
    ("IR version 11", "image", dict(ir_version=11), {"ir-version": "fail"}, 1),
    ("two inputs", "image", dict(extra_input=True), {"single-io": "fail"}, 1),
    # The validator ignores extra outputs: a warning, not a failure (the first output is the logits).
    ("two outputs", "image", dict(extra_output=True), {"single-io": "warn"}, 0),
    ("lookup table", "image", dict(lookup_table_bytes=2 * 1024**2), {"large-constants": "warn"}, 0),
]


@pytest.mark.parametrize("case, modality, changes, expected, exit_code", BROKEN, ids=[b[0] for b in BROKEN])
def test_each_broken_model_is_flagged_by_exactly_its_rule(tmp_path, case, modality, changes, expected, exit_code):
    path = save(make_detector(modality, **changes), tmp_path / "model.onnx")
    code, rules, _ = check_cli(path, "--modality", modality)
    assert flagged(rules) == expected, {k: rules[k]["message"] for k in flagged(rules)}
    assert code == exit_code


def test_external_data_is_flagged_and_only_that(tmp_path):
    # The weights (not the small shape constants) go to a file beside the model, as exporters do for large
    # models; onnxruntime loads it from disk here, but the one-file zip would lose it.
    model = make_detector()
    head = next(t for t in model.graph.initializer if t.name == "head")
    raw = numpy_helper.to_array(head).tobytes()
    (tmp_path / "model.onnx.data").write_bytes(raw)
    set_external_data(head, "model.onnx.data", offset=0, length=len(raw))
    head.ClearField("raw_data")
    head.data_location = TensorProto.EXTERNAL
    path = save(model, tmp_path / "model.onnx")
    code, rules, _ = check_cli(path)
    assert flagged(rules) == {"external-data": "fail"}
    assert "model.onnx.data" in rules["external-data"]["message"]
    assert code == 1


@pytest.mark.parametrize("modality", ["image", "video"])
def test_a_correct_foreign_model_passes_every_rule(tmp_path, modality):
    path = save(make_detector(modality), tmp_path / "model.onnx")
    code, rules, _ = check_cli(path)  # modality inferred from the input rank
    assert code == 0
    assert flagged(rules) == {}
    assert rules["spec-match"]["status"] == "skip"  # no kit spec in a foreign model
    assert [r.id for r in RULES] == list(rules)
    runs_expected = {"image": "B ∈ {1, 2, 4, 32}", "video": "B ∈ {1, 4}"}[modality]
    assert runs_expected in rules["batch-runs"]["message"]
    assert rules["latency"]["figure"] > 0
    assert "1 intra-op thread(s)" in rules["latency"]["message"]  # the thread count is stated


def test_frame_spread_is_proven_for_video(tmp_path):
    path = save(make_detector("video", freeze_frames=8), tmp_path / "model.onnx")
    code, rules, _ = check_cli(path)
    assert code == 1
    # Frozen at 8: a 16-frame clip becomes two 8-frame samples, so even the validator's T=16 batches are wrong.
    assert flagged(rules) == {"frames-runs": "fail", "batch-runs": "fail"}
    assert "T=16: output [2,3] does not follow the batch" in rules["frames-runs"]["message"]


def test_wrong_modality_is_a_rank_failure(tmp_path):
    path = save(make_detector("image"), tmp_path / "model.onnx")
    code, rules, _ = check_cli(path, "--modality", "video")
    assert code == 1
    assert rules["input-rank"]["status"] == "fail"
    assert "rank 4" in rules["input-rank"]["message"]


def test_constant_model_warns(tmp_path):
    model = make_detector()
    for tensor in model.graph.initializer:
        if tensor.name == "head":
            tensor.CopyFrom(numpy_helper.from_array(np.zeros((3, 3), np.float32), "head"))
    code, rules, _ = check_cli(save(model, tmp_path / "model.onnx"))
    assert flagged(rules) == {"responsive": "warn"}
    assert code == 0


def test_older_ort_min_lowers_the_opset_limit(tmp_path):
    path = save(make_detector(opset=21, ir_version=10), tmp_path / "model.onnx")
    assert flagged(check_cli(path)[1]) == {}
    code, rules, _ = check_cli(path, "--ort-min", "1.17")
    assert code == 1
    assert flagged(rules) == {"opset": "fail", "ir-version": "fail"}
    assert "≤ 20" in rules["opset"]["message"]


def test_kit_spec_is_compared_with_the_graph(tmp_path):
    good = write_build_dir(tmp_path / "good", image_spec())
    code, rules, _ = check_cli(good)
    assert code == 0
    assert rules["spec-match"]["status"] == "pass"

    # The spec claims 64×64 and 2 classes; the graph declares 32×32 and emits 3 logits.
    wrong = image_spec(height=64, width=64, class_names=("real", "ai"))
    bad = write_build_dir(tmp_path / "bad", wrong, model=make_detector("image", spec=wrong))
    code, rules, _ = check_cli(bad)
    assert code == 1
    assert flagged(rules) == {"spec-match": "fail"}
    assert "size: spec says 64×64" in rules["spec-match"]["message"]
    assert "classes: spec lists 2" in rules["spec-match"]["message"]


def test_class_order_disagreement_between_manifest_and_model_is_named(tmp_path):
    spec = image_spec()
    other_order = image_spec(class_names=("real", "semisynthetic", "synthetic"))
    build = write_build_dir(tmp_path / "b", spec, manifest_spec=other_order)
    code, rules, _ = check_cli(build)
    assert code == 1
    assert "class order" in rules["spec-match"]["message"]


def test_symbolic_frames_with_a_spec_other_than_16_is_a_spec_mismatch(tmp_path):
    spec = video_spec(frames=8)
    code, rules, _ = check_cli(write_build_dir(tmp_path / "v", spec))
    assert code == 1
    assert "the validator will send 16" in rules["spec-match"]["message"]


def test_table_output_shows_marks_fix_and_summary(tmp_path):
    path = save(make_detector(input_type=TensorProto.FLOAT), tmp_path / "model.onnx")
    result = CliRunner().invoke(app, ["check", str(path), "--threads", "1"], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "✗" in result.stdout and "input-dtype" in result.stdout
    assert "fix:" in result.stdout and "cast inside the graph" in result.stdout
    assert "1 failed" in result.stdout


def test_check_library_call_does_not_import_torch(tmp_path):
    import subprocess
    import sys

    path = save(make_detector(), tmp_path / "model.onnx")
    code = ("import sys; from discriminator.check import run_check; "
            f"r = run_check({str(path)!r}, threads=1); assert not r.failed; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr


def test_report_to_dict_is_strict_json(tmp_path):
    path = save(make_detector(nan_on_flat=True), tmp_path / "model.onnx")
    report = run_check(path, threads=1)
    text = json.dumps(report.to_dict(), allow_nan=False)
    assert json.loads(text)["ok"] is False
    assert report.result("finite").status == "fail"
    assert "all-0" in report.result("finite").message



@pytest.mark.parametrize("command", ["check", "package"])
def test_help_shows_examples(command):
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.stdout and f"kit {command} submissions/example-video/" in result.stdout


def test_ort_min_above_the_table_uses_its_newest_row_and_garbage_is_refused(tmp_path):
    path = save(make_detector(opset=23, ir_version=11), tmp_path / "model.onnx")
    assert flagged(check_cli(path)[1]) == {"opset": "fail", "ir-version": "fail"}  # default 1.22
    code, rules, _ = check_cli(path, "--ort-min", "1.24.2")
    assert code == 0 and flagged(rules) == {}
    code, _, stderr = check_cli(path, "--ort-min", "latest")
    assert code == 2 and "--ort-min" in stderr
