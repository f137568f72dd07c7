"""Bundles the kit did not write, judged as the network judges them (tests/foreign_bundles.py has the bundles).

Each style miners use elsewhere — a timm backbone with keyword-only options, a
torchvision video network with frame_rate and extra `model:` keys, a transformers model
from a config literal with `dtype` under `model:`, 1- and 2-logit heads, a load_model
that downloads, one too slow for the time limit — gets `kit check`'s verdict and exit
code under the evaluator's runtime, and the loadable ones are packaged.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from discriminator.cli.app import app
from tests.foreign_bundles import FOREIGN_BUNDLES, ForeignBundle, write_foreign_bundle

BY_NAME = {bundle.name: bundle for bundle in FOREIGN_BUNDLES}
#: A forward of the slow bundle takes ~10 s of arithmetic on one core: far past this limit on any CPU.
SLOW_LIMIT_S = "2"


def check(folder: Path, bundle: ForeignBundle, *extra: str) -> tuple[int, dict, dict]:
    args = ["check", str(folder), "--json", "--threads", "1", "--modality", bundle.modality, *extra]
    if bundle.name.startswith("too-slow"):
        args += ["--time-limit", SLOW_LIMIT_S]
    result = CliRunner().invoke(app, args)
    assert result.exit_code in (0, 1), result.output
    report = json.loads(result.stdout)
    return result.exit_code, {r["id"]: r for r in report["results"]}, report


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory, evaluator_runtime) -> dict[str, tuple[Path, int, dict, dict]]:
    root = tmp_path_factory.mktemp("foreign")
    results = {}
    for bundle in FOREIGN_BUNDLES:
        folder = write_foreign_bundle(bundle, root / bundle.name)
        results[bundle.name] = (folder, *check(folder, bundle))
    return results


@pytest.mark.parametrize("name", list(BY_NAME))
def test_kit_check_gives_each_foreign_bundle_the_networks_verdict(verdicts, name):
    bundle = BY_NAME[name]
    _, exit_code, rules, report = verdicts[name]
    assert exit_code == bundle.exit_code, {k: (r["status"], r["message"]) for k, r in rules.items() if r["status"] != "pass"}
    for rule_id, status in bundle.expect.items():
        assert rules[rule_id]["status"] == status, (rule_id, rules[rule_id]["message"])
    unexpected = {k: (r["status"], r["message"]) for k, r in rules.items()
                  if k not in bundle.expect and r["status"] in ("warn", "fail")}
    if bundle.exit_code == 0:
        assert unexpected == {}
        assert rules["runtime"]["status"] == "pass" and report["runtime"]["kind"] == "evaluator"


@pytest.mark.parametrize("name", [b.name for b in FOREIGN_BUNDLES if b.exit_code == 0])
def test_the_loadable_foreign_bundles_are_packaged(verdicts, tmp_path, name):
    folder, *_ = verdicts[name]
    result = CliRunner().invoke(app, ["package", str(folder), "--modality", BY_NAME[name].modality,
                                      "--out", str(tmp_path), "--threads", "1"])
    assert result.exit_code == 0, result.output
    zips = list(tmp_path.glob("*.zip"))
    assert len(zips) == 1
    with zipfile.ZipFile(zips[0]) as archive:
        assert sorted(archive.namelist()) == ["model.py", "model.safetensors", "model_config.yaml"]


def test_heads_narrower_than_three_classes_say_what_they_cost_in_both_rows(verdicts):
    _, _, rules, _ = verdicts["timm-image-2class-kwonly"]
    for rule_id in ("config-classes", "bundle-classes"):
        assert "semisynthetic sample can never be predicted right" in rules[rule_id]["message"]
        assert "entrance exam" in rules[rule_id]["message"]
    _, _, rules, _ = verdicts["transformers-resnet-1-logit"]
    assert "1 logit (read through a sigmoid" in rules["bundle-classes"]["message"]


def test_dtype_under_model_is_named_and_the_bundle_runs_in_float32(verdicts):
    _, _, rules, report = verdicts["transformers-videomae-config-literal-dtype-under-model"]
    assert "model.dtype: 'float16' is passed to load_model" in rules["config-keys"]["message"]
    assert "float32 parameters" in rules["bundle-loads"]["message"]


def test_a_load_model_that_downloads_is_named_by_line_and_its_load_says_the_evaluator_has_no_network(verdicts):
    _, _, rules, _ = verdicts["hub-downloader"]
    assert "model.py:11 from_pretrained('facebook/dinov2-small') downloads from the hub" in rules["network"]["message"]
    assert "the evaluator has none: ship the weights in the weights file" in rules["bundle-loads"]["message"]


def test_a_bundle_too_slow_for_the_limit_is_told_so_and_nothing_else_is_blamed(verdicts):
    _, _, rules, _ = verdicts["too-slow-for-the-time-limit"]
    message = rules["bundle-runs"]["message"]
    assert f"did not finish within {SLOW_LIMIT_S} s on this CPU" in message
    assert "--time-limit" in rules["bundle-runs"]["fix"] and rules["bundle-runs"]["figure"] == "timeout"
    for rule_id in ("bundle-batches", "finite", "responsive", "not-softmaxed"):
        assert rules[rule_id]["status"] == "skip", (rule_id, rules[rule_id]["message"])


def test_a_misspelt_key_gets_a_did_you_mean(tmp_path, evaluator_runtime):
    bundle = BY_NAME["timm-image-2class-kwonly"]
    config = {**bundle.config, "preprocessing": {"rezise": [64, 64]}, "dtyp": "float32"}
    folder = write_foreign_bundle(ForeignBundle(bundle.name, "image", config, bundle.model_py, bundle.build, 0, {}),
                                  tmp_path / "typo")
    _, rules, _ = check(folder, bundle)[0:3]
    message = rules["config-keys"]["message"]
    assert "preprocessing.rezise is not a key the evaluator reads (did you mean preprocessing.resize?)" in message
    assert "dtyp is not a key the evaluator reads (did you mean dtype?)" in message


def test_timm_and_torchvision_bundles_pass_under_the_kits_own_python_too_and_the_runtime_row_says_what_differs(
        tmp_path, without_evaluator_runtime):
    for name in ("timm-image-2class-kwonly", "torchvision-video-2class-frame-rate"):
        bundle = BY_NAME[name]
        folder = write_foreign_bundle(bundle, tmp_path / name)
        exit_code, rules, report = check(folder, bundle)
        assert exit_code == 0, {k: r["message"] for k, r in rules.items() if r["status"] == "fail"}
        assert rules["runtime"]["status"] == "warn" and "(evaluator 2.8.0)" in rules["runtime"]["message"]
        assert report["runtime"]["kind"] == "kit"


def test_a_misspelt_model_key_is_named_beside_the_default_it_causes(tmp_path, evaluator_runtime):
    bundle = BY_NAME["timm-image-2class-kwonly"]
    model = {k: v for k, v in bundle.config["model"].items() if k != "num_classes"}
    config = {**bundle.config, "model": {**model, "num_clases": 2}}
    folder = write_foreign_bundle(ForeignBundle(bundle.name, "image", config, bundle.model_py, bundle.build, 0, {}),
                                  tmp_path / "typo")
    _, rules, _ = check(folder, bundle)
    assert "model.num_clases is passed to load_model as a keyword; did you mean model.num_classes" in rules["config-keys"]["message"]
    assert "uses its default 2" in rules["config-classes"]["message"]


@pytest.mark.parametrize("kind", ["folder", "no-torch"])
def test_a_python_that_cannot_run_bundles_is_one_line_that_says_why(tmp_path, kind):
    import sys

    folder = write_foreign_bundle(BY_NAME["transformers-resnet-1-logit"], tmp_path / "bundle")
    if kind == "folder":
        python, expected = str(Path(sys.executable).parent.parent), "is a folder, not a Python interpreter"
    else:
        import venv

        venv.EnvBuilder(with_pip=False).create(tmp_path / "bare")
        python, expected = str(tmp_path / "bare" / "bin" / "python"), "has no torch, numpy, pyyaml"
    result = CliRunner().invoke(app, ["check", str(folder), "--modality", "image", "--python", python])
    assert result.exit_code == 2 and expected in result.output and "Traceback" not in result.output, result.output


def test_packaging_a_second_bundle_from_the_same_folder_names_the_first_instead_of_overwriting(tmp_path, evaluator_runtime):
    bundle = BY_NAME["transformers-resnet-1-logit"]
    first = write_foreign_bundle(bundle, tmp_path / "first")
    second = write_foreign_bundle(bundle, tmp_path / "second")
    assert CliRunner().invoke(app, ["package", str(first), "--modality", "image", "--threads", "1"]).exit_code == 0
    zip_bytes = (tmp_path / "image_bundle.zip").read_bytes()
    result = CliRunner().invoke(app, ["package", str(second), "--modality", "image", "--threads", "1"])
    assert result.exit_code == 1 and "was packaged from another model" in result.output and "--name second" in result.output
    assert (tmp_path / "image_bundle.zip").read_bytes() == zip_bytes


def test_bench_of_a_bundle_that_names_no_modality_says_which_one_the_datasets_chose(tmp_path, evaluator_runtime):
    import numpy as np

    from tests.sim_helpers import image_bytes, random_image

    folder = write_foreign_bundle(BY_NAME["transformers-resnet-1-logit"], tmp_path / "bundle")  # no modality: key
    rng = np.random.default_rng(1)
    for label in ("real", "synthetic"):
        dataset = tmp_path / "data" / label / f"{label}-set"
        dataset.mkdir(parents=True)
        for index in range(3):
            (dataset / f"{index}.png").write_bytes(image_bytes(random_image(rng, 40, 48)))
    out = tmp_path / "results"
    result = CliRunner().invoke(app, ["bench", str(folder), "--data", str(tmp_path / "data"), "--out", str(out),
                                      "--no-cache", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "benched as an image model because the datasets are image" in result.output
    # the same bundle on video clips: the run is unscorable, and the fix names the modality, not the samples
    from tests.sim_helpers import random_clip, write_video

    for label in ("real", "synthetic"):
        clips = tmp_path / "video" / label / f"{label}-clips"
        clips.mkdir(parents=True)
        write_video(clips / "0.mkv", random_clip(rng, 4, 32, 32))
    wrong = CliRunner().invoke(app, ["bench", str(folder), "--data", str(tmp_path / "video"), "--out",
                                     str(tmp_path / "wrong"), "--no-cache", "--threads", "1"])
    assert wrong.exit_code == 4 and "pass --modality image or --modality video" in wrong.output, wrong.output
