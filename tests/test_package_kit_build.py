"""Models made by `kit build` pass `kit check` and package cleanly (small H×W to stay fast)."""

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
    assert checked.exit_code == 0, checked.stdout
    results = {r["id"]: r for r in json.loads(checked.stdout)["results"]}
    assert not [r for r in results.values() if r["status"] == "fail"]
    assert results["spec-match"]["status"] == "pass"  # the kit's own spec agrees with its graph

    packaged = runner.invoke(app, ["package", str(build_dir), "--out", str(tmp_path / "out"), "--threads", "1"])
    assert packaged.exit_code == 0, packaged.stderr
    zip_path = tmp_path / "out" / f"{modality}_detector.zip"
    with zipfile.ZipFile(zip_path) as zf:
        assert zf.namelist() == [f"{modality}_detector.onnx"]
        assert zf.read(f"{modality}_detector.onnx") == (build_dir / f"{modality}_detector.onnx").read_bytes()
    rechecked = runner.invoke(app, ["check", str(zip_path), "--threads", "1"])
    assert rechecked.exit_code == 0
