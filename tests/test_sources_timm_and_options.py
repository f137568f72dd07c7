"""`timm:<architecture>` sources, `py:` factories with --model-option, and --classes on a registered example.

timm's own tiny test architectures stand in for real backbones; every build is verified
(the bundle loaded in the evaluator's runtime against the kit's PyTorch) and checked.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from discriminator.cli.app import app
from discriminator.sources.checkpoint import read_checkpoint
from tests.train_helpers import write_image_split

runner = CliRunner()
FACTORY = Path(__file__).parent / "fixtures" / "optioned_factory.py"


def one_line_error(result) -> str:
    """The error line (after the build's step lines): exit 2, no traceback."""
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


def test_a_timm_architecture_builds_a_bundle_whose_model_py_calls_timm(tmp_path, evaluator_runtime):
    out = tmp_path / "timm"
    result = runner.invoke(app, ["build", "image", "--model", "timm:test_convnext", "--format", "bundle",
                                 "--height", "64", "--width", "64", "--out", str(out), "--threads", "1"])
    assert result.exit_code == 0, result.output
    model_py = (out / "bundle" / "model.py").read_text()
    assert "import timm" in model_py
    assert "timm.create_model(TIMM_ARCHITECTURE, pretrained=False, num_classes=3)" in model_py
    assert "TIMM_ARCHITECTURE = 'test_convnext'" in model_py
    assert "runtime torch 2.8.0" in result.output  # verified under the evaluator's versions
    checked = runner.invoke(app, ["check", str(out / "bundle"), "--json", "--threads", "1"])
    rules = {r["id"]: r["status"] for r in json.loads(checked.stdout)["results"]}
    assert rules["network"] == "pass" and rules["static-analysis"] == "pass" and rules["bundle-loads"] == "pass"


def test_an_unknown_timm_architecture_is_one_line_with_a_suggestion(tmp_path):
    line = one_line_error(runner.invoke(app, ["build", "image", "--model", "timm:test_vitt", "--out", str(tmp_path / "x")]))
    assert "timm has no architecture 'test_vitt'" in line and "did you mean" in line and "test_vit" in line
    assert not (tmp_path / "x").exists()


def test_kit_train_takes_a_timm_architecture_and_its_checkpoint_builds(tmp_path, evaluator_runtime):
    train_dir = write_image_split(tmp_path / "train", per_class=6, seed=0)
    val_dir = write_image_split(tmp_path / "val", per_class=4, seed=1)
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "image", "--data", str(train_dir), "--val", str(val_dir), "--model",
                                 "timm:test_resnet", "--epochs", "1", "--height", "32", "--width", "32",
                                 "--batch-size", "8", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert read_checkpoint(out)["source"] == "timm:test_resnet"
    built = runner.invoke(app, ["build", "image", "--model", str(out), "--format", "bundle", "--out",
                                str(tmp_path / "build"), "--threads", "1"])
    assert built.exit_code == 0, built.output


def test_py_factory_options_reach_the_factory_and_model_py_makes_the_same_call(tmp_path, evaluator_runtime):
    out = tmp_path / "py"
    result = runner.invoke(app, ["build", "image", "--model", f"py:{FACTORY}:make_model", "--model-option", "width=8",
                                 "--format", "bundle", "--height", "32", "--width", "32", "--out", str(out),
                                 "--threads", "1"])
    assert result.exit_code == 0, result.output
    model_py = (out / "bundle" / "model.py").read_text()
    assert "return make_model(width=8)" in model_py
    from safetensors import safe_open

    with safe_open(str(out / "bundle" / "model.safetensors"), "pt") as weights:
        assert weights.get_slice("backbone.conv.weight").get_shape()[0] == 8
    line = one_line_error(runner.invoke(app, ["build", "image", "--model", f"py:{FACTORY}:make_model",
                                              "--model-option", "depth=3", "--out", str(tmp_path / "bad")]))
    assert "takes no option 'depth'" in line and "width" in line


def test_classes_real_ai_on_a_registered_example_writes_a_two_logit_bundle_that_packages(tmp_path, evaluator_runtime):
    out = tmp_path / "two"
    result = runner.invoke(app, ["build", "image", "--model", "example-image", "--classes", "real,ai",
                                 "--format", "bundle", "--height", "32", "--width", "32", "--out", str(out),
                                 "--threads", "1", "--model-option", "channels=4,8"])
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((out / "bundle" / "model_config.yaml").read_text())
    assert config["model"]["num_classes"] == 2
    assert "CLASS_NAMES = ('real', 'ai')" in (out / "bundle" / "model.py").read_text()
    checked = runner.invoke(app, ["check", str(out), "--format", "bundle", "--json", "--threads", "1"])
    rules = {r["id"]: r["status"] for r in json.loads(checked.stdout)["results"]}
    assert rules["config-classes"] == rules["bundle-classes"] == "warn" and rules["bundle-spec-match"] == "pass"
    packaged = runner.invoke(app, ["package", str(out), "--allow-untrained"])
    assert packaged.exit_code == 0, packaged.output
    zips = list(out.glob("*.zip"))
    assert len(zips) == 1 and "model.py" in zipfile.ZipFile(zips[0]).namelist()
