"""Defensive reading of submission zips: every malformed archive is refused with exit 2 and one line.

The archives are real zips written here with `zipfile` (and a hand-flipped header
bit or truncated file where zipfile will not write the malformed thing itself).
"""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from discriminator.artifact import formats_in, load_artifact
from discriminator.cli.app import app
from discriminator.errors import InputError, UsageError
from tests.test_check_models import make_detector

MODEL_BYTES = make_detector().SerializeToString()


def write_zip(path: Path, members: list[tuple[str, bytes]], mode: int | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.external_attr = mode << 16
            zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return path


def check_exit(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["check", str(path), "--threads", "1"])
    return result.exit_code, result.stderr


def test_a_well_formed_zip_is_read_and_checked(tmp_path):
    path = write_zip(tmp_path / "ok.zip", [("image_detector.onnx", MODEL_BYTES)])
    artifact = load_artifact(path)
    assert (artifact.container, artifact.format) == ("zip", "onnx") and artifact.onnx_bytes == MODEL_BYTES
    code, _ = check_exit(path)
    assert code == 0


CASES = [
    ("two members", [("image_detector.onnx", MODEL_BYTES), ("README.txt", b"hi")], None, "exactly one .onnx"),
    ("two models", [("a.onnx", MODEL_BYTES), ("b.onnx", MODEL_BYTES)], None, "exactly one .onnx"),
    ("no model", [("notes.txt", b"hi")], None, "neither one .onnx file nor a bundle"),
    ("traversal", [("../image_detector.onnx", MODEL_BYTES)], None, "'..'"),
    ("absolute", [("/etc/image_detector.onnx", MODEL_BYTES)], None, "absolute path"),
    ("symlink", [("image_detector.onnx", b"/etc/passwd")], stat.S_IFLNK | 0o777, "symbolic link"),
    ("in a folder", [("model/image_detector.onnx", MODEL_BYTES)], None, "zip root"),
    ("bomb-like ratio", [("image_detector.onnx", bytes(20 * 1024**2))], None, "zip bomb"),
]


@pytest.mark.parametrize("case, members, mode, fragment", CASES, ids=[c[0] for c in CASES])
def test_unsafe_or_wrong_archives_are_refused_with_exit_2(tmp_path, case, members, mode, fragment):
    path = write_zip(tmp_path / "submission.zip", members, mode)
    with pytest.raises(InputError) as caught:
        load_artifact(path)
    assert fragment in caught.value.message
    code, stderr = check_exit(path)
    assert code == 2
    assert fragment in stderr
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_encrypted_member_is_refused(tmp_path):
    path = write_zip(tmp_path / "enc.zip", [("image_detector.onnx", MODEL_BYTES)])
    data = bytearray(path.read_bytes())
    # Set bit 0 (encrypted) of the general-purpose flags in the local and central headers.
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(signature)
        data[at + flag_offset] |= 0x01
    path.write_bytes(bytes(data))
    code, stderr = check_exit(path)
    assert code == 2
    assert "encrypted" in stderr


@pytest.mark.parametrize("damage", ["truncated", "garbage", "corrupt stream"])
def test_corrupt_archives_give_one_line_and_exit_2(tmp_path, damage):
    path = write_zip(tmp_path / "bad.zip", [("image_detector.onnx", MODEL_BYTES)])
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = bytearray(b"PK\x03\x04" + b"\x00" * 64)
    else:  # flip bytes inside the deflate stream, keeping the directory intact
        start = 30 + len("image_detector.onnx")
        for i in range(start + 5, start + 40):
            data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    code, stderr = check_exit(path)
    assert code == 2, stderr
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_zip_holding_a_non_onnx_file_named_onnx_is_unreadable(tmp_path):
    path = write_zip(tmp_path / "s.zip", [("image_detector.onnx", b"definitely not protobuf \xff\xfe")])
    code, stderr = check_exit(path)
    assert code == 2
    assert "image_detector.onnx" in stderr and "not a readable ONNX model" in stderr


@pytest.mark.parametrize("kind", ["empty", "truncated", "not onnx", "folder without a model", "missing"])
def test_unreadable_inputs_give_one_line_and_exit_2(tmp_path, kind):
    path = tmp_path / "model.onnx"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(MODEL_BYTES[: len(MODEL_BYTES) // 2])
    elif kind == "not onnx":
        path.write_text("name,label\ncat.jpg,real\n")
    elif kind == "folder without a model":
        path = tmp_path / "build"
        path.mkdir()
        (path / "notes.txt").write_text("no model here")
    code, stderr = check_exit(path)
    assert code == 2
    assert str(path.name) in stderr
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------ the words of each refusal, pinned
# Format sniffing is driven by the rows of discriminator/formats.py; these fix what it says, word for word.

HINT = "package the model with `kit package`"
SNIFF_REFUSALS = [
    ("mixed", [("image_detector.onnx", MODEL_BYTES), ("model.py", b"x"), ("model_config.yaml", b"x")],
     "{p} mixes an ONNX model (image_detector.onnx) and a bundle (model_config.yaml); a submission is one or the other",
     "package each with `kit package --format onnx|bundle`"),
    ("half a bundle", [("model.py", b"x"), ("model.safetensors", b"x")],
     "{p} holds model.py but no model_config.yaml: a bundle needs model_config.yaml, model.py and the weights file "
     "at the zip root", HINT),
    ("onnx and a readme", [("image_detector.onnx", MODEL_BYTES), ("README.txt", b"hi")],
     "{p}: a submission zip must hold exactly one .onnx file, found 2 file(s): image_detector.onnx, README.txt", HINT),
    ("six other files", [(f"{c}.txt", b"hi") for c in "abcdef"],
     "{p} holds neither one .onnx file nor a bundle (model_config.yaml, model.py, model.safetensors); "
     "found 6 file(s): a.txt, b.txt, c.txt, d.txt, e.txt …", HINT),
    ("empty", [],
     "{p} holds neither one .onnx file nor a bundle (model_config.yaml, model.py, model.safetensors); "
     "found 0 file(s): nothing", HINT),
]


@pytest.mark.parametrize("case, members, message, hint", SNIFF_REFUSALS, ids=[c[0] for c in SNIFF_REFUSALS])
def test_a_zip_of_no_one_format_is_refused_in_these_words(tmp_path, case, members, message, hint):
    path = write_zip(tmp_path / "submission.zip", members)
    for read in (load_artifact, formats_in):  # formats_in reads the names only; the words are the same
        with pytest.raises(InputError) as caught:
            read(path)
        assert (caught.value.message, caught.value.hint) == (message.format(p=path), hint)


def test_a_folder_without_a_model_and_a_lone_bundle_file_are_refused_in_these_words(tmp_path):
    with pytest.raises(InputError) as caught:
        load_artifact(tmp_path)
    assert caught.value.message == f"{tmp_path} holds no .onnx model and no bundle (model_config.yaml + model.py)"
    config = tmp_path / "model_config.yaml"
    config.write_text("name: x\n")
    with pytest.raises(UsageError) as refused:
        load_artifact(config)
    assert (refused.value.message, refused.value.hint) == (f"{config} is one file of a bundle",
                                                          f"point at the folder that holds it: {tmp_path}")
    model = tmp_path / "m.onnx"
    model.write_bytes(MODEL_BYTES)
    with pytest.raises(UsageError) as wrong:
        load_artifact(model, "bundle")
    assert (wrong.value.message, wrong.value.hint) == (f"{model} holds a onnx model, not bundle",
                                                      "drop --format, or pass --format onnx")
