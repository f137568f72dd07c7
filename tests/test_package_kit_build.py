"""Models made by `kit build` pass `kit check` in both formats and package cleanly (small H×W to stay fast)."""

from __future__ import annotations

import json
import zipfile

import pytest
from typer.testing import CliRunner

from discriminator.cli.app import app


@pytest.mark.parametrize("modality", ["image", "video"])
def test_kit_build_output_passes_check_and_packages(tmp_path, modality):
    runner = CliRunner()
    build_dir = tmp_path / "build"
    built = runner.invoke(app, ["build", modality, "--height", "64", "--width", "64", "--out", str(build_dir)])
    assert built.exit_code == 0, built.output

    checked = runner.invoke(app, ["check", str(build_dir), "--json", "--threads", "1"])
    reports = {r["format"]: {x["id"]: x for x in r["results"]} for r in json.loads(checked.stdout)["reports"]}
    assert set(reports) == {"onnx", "bundle"}
    for results in reports.values():
        # The example's head has random weights: the only failure is the one that says so.
        assert [r["id"] for r in results.values() if r["status"] == "fail"] == ["head-trained"]
    assert reports["onnx"]["spec-match"]["status"] == "pass"  # the kit's own spec agrees with its graph
    assert reports["bundle"]["bundle-spec-match"]["status"] == "pass"  # … and with its model_config.yaml
    assert checked.exit_code == 1

    out = tmp_path / "out"
    packaged = runner.invoke(app, ["package", str(build_dir), "--out", str(out), "--allow-untrained", "--threads", "1"])
    assert packaged.exit_code == 0, packaged.stderr
    with zipfile.ZipFile(out / f"{modality}_bundle.zip") as zf:
        assert zf.namelist() == ["model.py", "model.safetensors", "model_config.yaml"]
        for name in zf.namelist():
            assert zf.read(name) == (build_dir / "bundle" / name).read_bytes()
    packaged = runner.invoke(app, ["package", str(build_dir), "--format", "onnx", "--out", str(out),
                                   "--allow-untrained", "--threads", "1"])
    assert packaged.exit_code == 0, packaged.stderr
    with zipfile.ZipFile(out / f"{modality}_detector.zip") as zf:
        assert zf.namelist() == [f"{modality}_detector.onnx"]
        assert zf.read(f"{modality}_detector.onnx") == (build_dir / f"{modality}_detector.onnx").read_bytes()
    for zip_name in (f"{modality}_bundle.zip", f"{modality}_detector.zip"):
        assert runner.invoke(app, ["check", str(out / zip_name), "--threads", "1"]).exit_code == 0
