"""`kit package` on bundles: refuses failing bundles, writes a byte-identical zip of exactly the bundle's files."""

from __future__ import annotations

import hashlib
import json
import zipfile

import torch
from typer.testing import CliRunner

from discriminator.artifact import load_artifact
from discriminator.cli.app import app
from discriminator.package import package_submission, stale_packages
from tests.bundle_helpers import HEAD, make_bundle, model_source
from tests.test_check_models import image_spec, write_build_dir
from tests.test_package_submission import ALICE

BUNDLE_FILES = ["model.py", "model.safetensors", "model_config.yaml"]


def package_cli(*args: str):
    return CliRunner().invoke(app, ["package", *args, "--threads", "1"])


def test_a_bundle_packages_byte_identically_with_exactly_its_files_at_the_root(tmp_path):
    folder = make_bundle(tmp_path / "my_bundle", files={"notes.txt": b"my notes"})
    result = package_cli(str(folder), "--out", str(tmp_path / "one"), "--hotkey", ALICE)
    assert result.exit_code == 0, result.stderr
    again = package_submission(folder, out_dir=tmp_path / "two", threads=1)
    first = tmp_path / "one" / "image_bundle.zip"
    assert first.read_bytes() == again.zip_path.read_bytes()

    with zipfile.ZipFile(first) as zf:
        infos = zf.infolist()
        assert [i.filename for i in infos] == BUNDLE_FILES  # sorted; notes.txt left out
        assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
        assert {i.external_attr >> 16 for i in infos} == {0o100644}
        for info in infos:
            assert zf.read(info) == (folder / info.filename).read_bytes()

    sha = hashlib.sha256(first.read_bytes()).hexdigest()
    record = json.loads((tmp_path / "one" / "image_bundle.zip.json").read_text())
    assert record["format"] == "bundle" and record["zip_sha256"] == sha
    assert record["members"] == {name: {"sha256": hashlib.sha256((folder / name).read_bytes()).hexdigest(),
                                        "size": (folder / name).stat().st_size} for name in BUNDLE_FILES}
    assert record["commitment"] == hashlib.sha256(f"{sha}{ALICE}".encode()).hexdigest()[:16]
    assert record["check"]["ok"] and record["check"]["container"] == "zip"  # the zip itself was checked
    assert sha in result.stdout and f"gascli d push --image-model {first}" in result.stdout
    assert "model.py, model.safetensors, model_config.yaml" in result.stdout
    assert load_artifact(first).members == {name: (folder / name).read_bytes() for name in BUNDLE_FILES}


def test_a_failing_bundle_is_refused_and_nothing_is_written(tmp_path):
    folder = make_bundle(tmp_path / "b", source=model_source(imports="import os"))
    result = package_cli(str(folder), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert "refusing to package" in result.stderr and "static-analysis" in result.stderr
    assert "model.py:" in result.stdout  # the check table shows the line to fix
    assert not (tmp_path / "out").exists()


def test_a_build_folder_packages_its_bundle_beside_it_by_default_and_onnx_on_request(tmp_path):
    build = write_build_dir(tmp_path / "build", image_spec(), head_trained=True)
    make_bundle(build / "bundle")
    bundle = package_submission(build, threads=1)
    assert bundle.zip_path == build / "image_bundle.zip" and bundle.format == "bundle"
    onnx = package_submission(build, threads=1, format="onnx")
    assert onnx.zip_path == build / "image_detector.zip" and onnx.members == ["image_detector.onnx"]
    assert json.loads(bundle.record_path.read_text())["source"] == "."
    assert stale_packages(build) == []

    # A rebuild replaces the weights: the bundle zip (not the ONNX one) now holds an older model.
    make_bundle(build / "bundle", head=HEAD * 2)
    assert stale_packages(build) == [bundle.zip_path, bundle.record_path]
    result = CliRunner().invoke(app, ["check", str(build), "--format", "bundle", "--json", "--threads", "1"])
    rules = {r["id"]: r for r in json.loads(result.stdout)["results"]}
    assert result.exit_code == 0 and rules["stale-package"]["status"] == "warn"
    assert "image_bundle.zip" in rules["stale-package"]["message"]


def test_an_untrained_bundle_needs_the_override(tmp_path):
    build = write_build_dir(tmp_path / "build", image_spec(), head_trained=False)
    make_bundle(build / "bundle", head=torch.eye(3))
    refused = package_cli(str(build))
    assert refused.exit_code == 1 and "head-trained" in refused.stderr and "--allow-untrained" in refused.stderr
    assert not (build / "image_bundle.zip").exists()


def test_the_zip_is_never_written_into_the_bundle_it_packages(tmp_path):
    folder = make_bundle(tmp_path / "b")
    result = package_cli(str(folder), "--out", str(folder))
    assert result.exit_code == 2 and "bundle folder itself" in result.stderr
    assert sorted(p.name for p in folder.iterdir()) == BUNDLE_FILES


def write_bench(root, run: str, model_path, finished_at: str, exam=None, fmt: str = "bundle", raw: str | None = None):
    """A results.json as `kit bench` writes it (the parts `kit package` reads), with or without an exam verdict."""
    folder = root / "results" / run
    folder.mkdir(parents=True)
    document = {"metadata": {"model_path": str(model_path), "finished_at": finished_at}, "kit": {"model_format": fmt},
                "results": {"accuracy": 0.5}}
    if exam is not None:
        document["exam"] = exam
    (folder / "results.json").write_text(raw if raw is not None else json.dumps(document))


def test_package_prints_one_push_line_the_cost_and_the_last_bench_exam_of_this_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = make_bundle(tmp_path / "my_bundle")
    first = package_cli(str(folder), "--out", str(tmp_path / "zips"))
    assert first.exit_code == 0, first.output
    text = " ".join(first.output.split())
    assert text.count("gascli d push") == 1 and "--video-model" not in text and "--image-model" in text
    assert "first counted submission is free" in text and "0.5 TAO" in text
    assert "no `kit bench` of this model with an exam verdict" in text

    write_bench(tmp_path, "old", folder, "2026-12-01T10:00:00", {"verdict": "fail", "accuracy": 0.61, "interval": [0.5, 0.7]})
    write_bench(tmp_path, "new", folder, "2026-12-02T10:00:00", {"verdict": "at risk", "accuracy": 0.81, "interval": [0.74, 0.88]})
    write_bench(tmp_path, "other-model", tmp_path / "someone_else", "2026-12-03T10:00:00", {"verdict": "pass", "accuracy": 0.99})
    write_bench(tmp_path, "onnx-twin", folder, "2026-12-04T10:00:00", {"verdict": "pass", "accuracy": 0.95}, fmt="onnx")
    write_bench(tmp_path, "broken", folder, "", raw="{not json")
    write_bench(tmp_path, "odd-exam", folder, "2026-12-05T10:00:00", {"verdict": 3, "interval": "wide"})
    again = package_cli(str(folder), "--out", str(tmp_path / "zips"), "--force")
    assert again.exit_code == 0, again.output
    text = " ".join(again.output.split())
    assert "at risk, 3-class accuracy 0.810 [0.740, 0.880]" in text and "results/new/results.json" in text

