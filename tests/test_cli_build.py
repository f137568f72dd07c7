"""The front door: `kit --help`, `kit models`, `kit build` driven as a user would, errors as one line."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from discriminator import __version__
from discriminator.cli.app import app

runner = CliRunner()


def invoke(*args: str, env: dict | None = None):
    return runner.invoke(app, list(args), env=env)


def test_help_lists_commands_and_examples():
    result = invoke("--help")
    assert result.exit_code == 0
    for word in ("build", "models", "Examples"):
        assert word in result.output


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and __version__ in result.output


def test_build_help_has_examples():
    result = invoke("build", "--help")
    assert result.exit_code == 0
    assert "kit build video --model hf-videomae" in result.output
    assert "--force" in result.output


def test_models_lists_registry_and_filters():
    result = invoke("models")
    assert result.exit_code == 0
    for name in ("example-image", "example-video", "hf-resnet50", "hf-videomae"):
        assert name in result.output
    only_video = invoke("models", "--modality", "video")
    assert "example-video" in only_video.output and "example-image" not in only_video.output
    wildcard = invoke("models", "hf-*")
    assert "hf-videomae" in wildcard.output and "example-video" not in wildcard.output


def test_build_writes_model_and_manifest(tmp_path):
    out = tmp_path / "ev"
    result = invoke("build", "video", "--height", "40", "--width", "40", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert (out / "video_detector.onnx").is_file() and (out / "manifest.json").is_file()
    assert "max |ONNX − PyTorch|" in result.output and "max |bundle − PyTorch|" in result.output
    assert "UNTRAINED HEAD" in result.output and (out / "bundle" / "model.py").is_file()
    again = invoke("build", "video", "--height", "40", "--width", "40", "--out", str(out))
    assert again.exit_code == 1 and "--force" in again.output


@pytest.mark.parametrize("args,needle,code", [
    (["build", "video", "--model", "exampel-video"], "did you mean 'example-video'", 2),
    (["build", "image", "--weights", "/no/such/w.safetensors", "--height", "32", "--width", "32"], "does not exist", 2),
    (["build", "video", "--model", "hf:/no/such/dir"], "not a folder", 2),
    (["build", "image", "--classes", "real"], "--classes needs 2 or 3", 2),
    (["build", "image", "--classes", "fake,real", "--height", "32", "--width", "32"], "class 0 must be 'real'", 2),
])
def test_user_errors_are_one_line_without_traceback(tmp_path, args, needle, code):
    result = invoke(*args, "--out", str(tmp_path / "o"))
    assert result.exit_code == code, result.output
    assert needle in result.output
    assert "Traceback" not in result.output
    assert result.output.count("error:") == 1


def test_offline_hub_id_says_how_to_use_a_local_folder(tmp_path):
    result = invoke("build", "video", "--model", "hf-videomae", "--out", str(tmp_path), env={"HF_HUB_OFFLINE": "1"})
    assert result.exit_code == 3
    assert "cannot reach the Hugging Face Hub" in result.output and "--model hf:DIR" in result.output


def test_unwritable_output_is_reported(tmp_path):
    # A folder under a regular file cannot be created, even by root (CI runs as root, so chmod proves nothing).
    blocker = tmp_path / "file"
    blocker.write_text("mine")
    result = invoke("build", "image", "--height", "32", "--width", "32", "--out", str(blocker / "sub"))
    assert result.exit_code == 2 and "cannot create" in result.output
    assert blocker.read_text() == "mine"


def test_output_path_that_is_a_file_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("mine")
    result = invoke("build", "image", "--out", str(blocker))
    assert result.exit_code == 2 and "is a file" in result.output
    assert blocker.read_text() == "mine"


def test_kit_debug_shows_the_traceback(tmp_path):
    result = invoke("build", "video", "--model", "nope", "--out", str(tmp_path), env={"KIT_DEBUG": "1"})
    assert result.exit_code != 0
    assert result.exception is not None and "unknown model" in str(result.exception)
