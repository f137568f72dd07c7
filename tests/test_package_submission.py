"""`kit package`: refuses failing models, writes a deterministic one-member zip and its record."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import zipfile

import pytest
from onnx import TensorProto
from typer.testing import CliRunner

from discriminator.artifact import load_artifact
from discriminator.cli.app import app
from discriminator.errors import UsageError
from discriminator.package import package_submission, stale_packages, validate_hotkey
from tests.test_check_models import check_cli, flagged, image_spec, make_detector, save, video_spec, write_build_dir

#: Substrate's well-known development account "Alice" (SS58 prefix 42): a real, valid address.
ALICE = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"


def package_cli(*args: str):
    return CliRunner().invoke(app, ["package", *args, "--threads", "1"])


def test_same_model_twice_gives_byte_identical_zips_and_the_record_matches_sha256sum(tmp_path):
    model = save(make_detector(), tmp_path / "model.onnx")
    first = package_submission(model, out_dir=tmp_path / "one", threads=1)
    second = package_submission(model, out_dir=tmp_path / "two", threads=1)
    assert first.zip_path.read_bytes() == second.zip_path.read_bytes()
    assert first.sha256 == second.sha256 == hashlib.sha256(first.zip_path.read_bytes()).hexdigest()
    record = json.loads(first.record_path.read_text())
    assert record["zip_sha256"] == first.sha256
    assert record["zip_size"] == first.zip_path.stat().st_size
    if shutil.which("sha256sum"):
        out = subprocess.run(["sha256sum", str(first.zip_path)], capture_output=True, text=True, check=True).stdout
        assert out.split()[0] == record["zip_sha256"]


def test_zip_holds_exactly_the_checked_model_at_its_root_with_fixed_metadata(tmp_path):
    model = save(make_detector("video"), tmp_path / "clip_model.onnx")
    result = package_submission(model, out_dir=tmp_path / "out", threads=1)
    assert result.zip_path == tmp_path / "out" / "video_detector.zip"
    with zipfile.ZipFile(result.zip_path) as zf:
        infos = zf.infolist()
        assert [i.filename for i in infos] == ["video_detector.onnx"]
        assert infos[0].date_time == (1980, 1, 1, 0, 0, 0)
        assert infos[0].external_attr >> 16 == 0o100644
        assert zf.read(infos[0]) == model.read_bytes()
    # The kit's own defensive reader accepts it, and the record sits beside (not inside) the zip.
    assert load_artifact(result.zip_path).onnx_bytes == model.read_bytes()
    assert result.record_path == tmp_path / "out" / "video_detector.zip.json"
    record = json.loads(result.record_path.read_text())
    assert record["check"]["ok"] is True and record["check"]["container"] == "zip"  # the zip itself was checked
    assert record["format"] == "onnx"
    assert record["members"] == {"video_detector.onnx": {"sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
                                                         "size": model.stat().st_size}}
    assert record["push_command"] == f"gascli d push --video-model {result.zip_path}"


def test_failing_model_is_refused_and_nothing_is_written(tmp_path):
    model = save(make_detector(input_type=TensorProto.FLOAT), tmp_path / "model.onnx")
    result = package_cli(str(model), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert "refusing to package" in result.stderr and "input-dtype" in result.stderr
    assert "✗" in result.stdout  # the check table is shown, so the fix is on screen
    assert not (tmp_path / "out").exists()


def test_warnings_never_block(tmp_path):
    model = save(make_detector(extra_output=True), tmp_path / "model.onnx")
    result = package_cli(str(model), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "out" / "image_detector.zip").is_file()
    record = json.loads((tmp_path / "out" / "image_detector.zip.json").read_text())
    assert [r["id"] for r in record["check"]["results"] if r["status"] == "warn"] == ["single-io"]


def test_existing_zip_is_not_overwritten_without_force(tmp_path):
    model = save(make_detector(), tmp_path / "model.onnx")
    out = tmp_path / "out"
    assert package_cli(str(model), "--out", str(out)).exit_code == 0
    before = (out / "image_detector.zip").read_bytes()
    (out / "image_detector.zip").write_bytes(b"the miner's own file")
    refused = package_cli(str(model), "--out", str(out))
    assert refused.exit_code == 1
    assert "already exists" in refused.stderr and "--force" in refused.stderr
    assert (out / "image_detector.zip").read_bytes() == b"the miner's own file"
    forced = package_cli(str(model), "--out", str(out), "--force")
    assert forced.exit_code == 0
    assert (out / "image_detector.zip").read_bytes() == before


def test_cli_prints_sha256_commitment_and_push_command(tmp_path):
    model = save(make_detector(), tmp_path / "model.onnx")
    result = package_cli(str(model), "--out", str(tmp_path / "out"), "--hotkey", ALICE)
    assert result.exit_code == 0, result.stderr
    zip_path = tmp_path / "out" / "image_detector.zip"
    sha = hashlib.sha256(zip_path.read_bytes()).hexdigest()
    expected_commitment = hashlib.sha256(f"{sha}{ALICE}".encode()).hexdigest()[:16]
    assert sha in result.stdout
    assert expected_commitment in result.stdout
    assert f"gascli d push --image-model {zip_path}" in result.stdout
    record = json.loads((tmp_path / "out" / "image_detector.zip.json").read_text())
    assert record["commitment"] == expected_commitment and record["hotkey"] == ALICE


@pytest.mark.parametrize("hotkey, fragment", [
    ("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHp", "47 or 48"),
    ("0GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY", "base58"),
    ("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQZ", "checksum"),
])
def test_bad_hotkeys_are_refused_before_any_work(tmp_path, hotkey, fragment):
    with pytest.raises(UsageError, match=fragment):
        validate_hotkey(hotkey)
    model = save(make_detector(), tmp_path / "model.onnx")
    result = package_cli(str(model), "--out", str(tmp_path / "out"), "--hotkey", hotkey)
    assert result.exit_code == 2
    assert fragment in result.stderr
    assert not (tmp_path / "out").exists()


def test_default_location_is_the_build_folder_not_submissions_of_the_spec_name(tmp_path, monkeypatch):
    # Issue 11: `kit package out/we` wrote to submissions/<spec-name>/ instead of next to the model.
    build = write_build_dir(tmp_path / "builds" / "folder-name", video_spec(name="my-clip-detector"))
    monkeypatch.chdir(tmp_path)
    result = package_submission(build, threads=1)
    assert result.zip_path == build / "video_detector.zip"
    assert not (tmp_path / "submissions").exists()
    record = json.loads(result.record_path.read_text())
    assert record["spec"]["name"] == "my-clip-detector" and record["spec"]["frames"] == 16
    assert record["source"] == "."


def test_a_foreign_model_is_packaged_beside_its_file(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    model = save(make_detector(), tmp_path / "models" / "resnet_fake_finder.onnx")
    monkeypatch.chdir(tmp_path)
    result = package_submission(model, threads=1)
    assert result.zip_path == tmp_path / "models" / "image_detector.zip"
    assert result.report.spec is None
    assert json.loads(result.record_path.read_text())["source"] == "resnet_fake_finder.onnx"


@pytest.mark.parametrize("name", ["../../escape", "a/b", "..", ".hidden", "x\\y", ""])
def test_names_with_paths_are_refused_before_any_work(tmp_path, name):
    model = save(make_detector(), tmp_path / "model.onnx")
    result = package_cli(str(model), "--name", name)
    assert result.exit_code == 2
    assert "--name" in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.glob("*.zip")) == [] and not (tmp_path.parent / "escape.zip").exists()


def test_name_sets_the_zip_file_name(tmp_path):
    model = save(make_detector(), tmp_path / "model.onnx")
    result = package_cli(str(model), "--name", "v2", "--out", str(tmp_path / "dist"))
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "dist" / "v2.zip").is_file() and (tmp_path / "dist" / "v2.zip.json").is_file()


def test_out_pointing_at_a_file_is_one_line(tmp_path):
    model = save(make_detector(), tmp_path / "model.onnx")
    (tmp_path / "taken").write_text("a file")
    result = package_cli(str(model), "--out", str(tmp_path / "taken"))
    assert result.exit_code == 2
    assert "is a file, not a folder" in result.stderr and "Errno" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_spec_mismatch_blocks_packaging(tmp_path):
    wrong = image_spec(height=64, width=64)
    build = write_build_dir(tmp_path / "b", wrong, model=make_detector(spec=wrong))
    result = package_cli(str(build), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert "spec-match" in result.stderr


def test_a_zip_is_not_packaged_again(tmp_path):
    model = save(make_detector(), tmp_path / "model.onnx")
    first = package_submission(model, out_dir=tmp_path / "out", threads=1)
    result = package_cli(str(first.zip_path), "--out", str(tmp_path / "again"))
    assert result.exit_code == 2
    assert "already a zip" in result.stderr


def rebuilt(model):
    """The same detector with different bytes, as a rebuild gives."""
    model.producer_version = "rebuilt"
    return model


def test_a_rebuilt_model_makes_its_old_zip_stale_and_check_says_so(tmp_path):
    # Issue 11 item 3: after a forced rebuild the old zip and record stay beside the new model.
    build = write_build_dir(tmp_path / "b", image_spec())
    first = package_submission(build, threads=1)
    assert stale_packages(build) == []
    code, rules, _ = check_cli(build)
    assert rules["stale-package"]["status"] == "pass" and first.zip_path.name in rules["stale-package"]["message"]

    write_build_dir(build, image_spec(), model=rebuilt(make_detector(spec=image_spec())))
    assert stale_packages(build) == [first.zip_path, first.record_path]
    code, rules, _ = check_cli(build)
    assert code == 0 and flagged(rules) == {"stale-package": "warn"}
    assert "changed after it was packaged" in rules["stale-package"]["message"]
    assert "kit package --force" in rules["stale-package"]["fix"]
    refused = package_cli(str(build))
    assert refused.exit_code == 1 and "holds an older model" in refused.stderr and "--force" in refused.stderr
    package_submission(build, threads=1, force=True)
    assert stale_packages(build) == []


def test_a_zip_replaced_behind_its_record_is_stale(tmp_path):
    build = write_build_dir(tmp_path / "b", image_spec())
    first = package_submission(build, threads=1)
    other = save(rebuilt(make_detector()), tmp_path / "other.onnx")
    package_submission(other, out_dir=tmp_path / "elsewhere", threads=1)
    first.zip_path.write_bytes((tmp_path / "elsewhere" / "image_detector.zip").read_bytes())
    assert stale_packages(build) == [first.zip_path, first.record_path]


def test_an_untrained_head_fails_check_and_needs_an_explicit_override_to_package(tmp_path):
    # Issue 11 item 4: "UNTRAINED HEAD" builds were called ready to package.
    build = write_build_dir(tmp_path / "b", image_spec(), head_trained=False)
    code, rules, _ = check_cli(build)
    assert code == 1 and flagged(rules) == {"head-trained": "fail"}
    refused = package_cli(str(build))
    assert refused.exit_code == 1 and "head-trained" in refused.stderr and "--allow-untrained" in refused.stderr
    assert not (build / "image_detector.zip").exists()
    allowed = package_cli(str(build), "--allow-untrained")
    assert allowed.exit_code == 0, allowed.stderr
    assert json.loads((build / "image_detector.zip.json").read_text())["allowed_untrained"] is True


def test_a_model_that_says_nothing_of_its_modality_is_refused_by_its_rank(tmp_path):
    model = save(make_detector(dims=["batch", 3, 32]), tmp_path / "model.onnx")
    result = package_cli(str(model))
    assert result.exit_code == 1 and "input-rank" in result.stderr
    assert list(tmp_path.glob("*.zip")) == []


def test_a_zip_of_another_model_in_the_same_folder_is_not_called_this_models(tmp_path):
    first = save(make_detector(), tmp_path / "a.onnx")
    second = save(rebuilt(make_detector()), tmp_path / "b.onnx")
    package_submission(first, threads=1)
    _, rules, _ = check_cli(second)
    assert rules["stale-package"]["status"] == "pass"
    assert rules["stale-package"]["message"] == "no earlier submission zip beside the model"
    _, rules, _ = check_cli(first)
    assert rules["stale-package"]["message"] == "image_detector.zip holds this model"
