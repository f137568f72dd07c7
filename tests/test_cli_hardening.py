"""A new miner's mistakes, driven through `kit build`: each ends in one line that says what to do, never a traceback.

The inputs are made here the way a miner makes them: weights saved from another
architecture, a factory that raises, a truncated `model.safetensors`, a ViT whose
config says 32×32, a text model saved with `save_pretrained`, a module in the
current folder.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from discriminator.cli.app import app
from discriminator.errors import UsageError
from discriminator.spec import MAX_SIDE, DetectorSpec

runner = CliRunner()
SMALL = ["--height", "32", "--width", "32"]


def invoke(*args: str):
    return runner.invoke(app, list(args))


def assert_one_line_error(result, code: int, *needles: str) -> str:
    """The command failed with `code`, printed exactly one `error:` line holding every needle, and no traceback."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def tiny_vit_config(**changes):
    from transformers import ViTConfig

    return ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, num_labels=3, **changes)


@pytest.fixture(scope="module")
def vit32(tmp_path_factory) -> Path:
    from transformers import ViTForImageClassification

    folder = tmp_path_factory.mktemp("hf") / "vit32"
    torch.manual_seed(0)
    ViTForImageClassification(tiny_vit_config()).save_pretrained(folder)
    return folder


def test_weights_of_another_architecture_name_the_layer_and_both_shapes(tmp_path):
    from onnx_examples.pytorch_models.networks import CNNImageDetector

    weights = tmp_path / "narrow.safetensors"
    save_file({k: v.contiguous() for k, v in CNNImageDetector((8, 16)).state_dict().items()}, str(weights))
    result = invoke("build", "image", "--weights", str(weights), *SMALL, "--out", str(tmp_path / "o"))
    line = assert_one_line_error(result, 2, "do not fit", "another shape")
    assert "[8, 6, 3, 3] in the file" in line and "[16, 6, 3, 3] in the model" in line  # the first conv, both ways
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("prefix", ["module.", "model.", "_orig_mod.module."])
def test_weights_saved_through_a_training_wrapper_load(tmp_path, prefix):
    from onnx_examples.pytorch_models.networks import CNNImageDetector

    from discriminator.sources.weights import load_weights_into

    torch.manual_seed(3)
    trained = CNNImageDetector((4, 8))
    checkpoint = tmp_path / "last.ckpt"  # Lightning-style: the state dict under "state_dict", every key prefixed
    torch.save({"state_dict": {prefix + k: v for k, v in trained.state_dict().items()}, "epoch": 3}, checkpoint)
    fresh = CNNImageDetector((4, 8))
    load_weights_into(fresh, checkpoint)
    for key, value in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value)


def test_weights_folder_is_named_as_a_folder(tmp_path):
    result = invoke("build", "image", "--weights", str(tmp_path), *SMALL, "--out", str(tmp_path / "o"))
    assert_one_line_error(result, 2, "is a folder, not a weights file")


def test_forward_that_raises_is_blamed_on_the_model_not_the_exporter(tmp_path):
    module = tmp_path / "broken_forward.py"
    module.write_text("import torch\n\nclass Net(torch.nn.Module):\n    input_kind = 'frames'\n\n"
                      "    def forward(self, x):\n        raise RuntimeError('forward is broken')\n\n"
                      "def make():\n    return Net()\n")
    result = invoke("build", "image", "--model", f"py:{module}:make", *SMALL, "--out", str(tmp_path / "o"))
    line = assert_one_line_error(result, 1, "fails in PyTorch", "forward is broken", "fix its forward")
    assert "--exporter" not in line


def test_factory_that_raises_is_one_line_naming_the_factory(tmp_path):
    module = tmp_path / "raiser.py"
    module.write_text("def make():\n    raise ValueError('the config file is missing')\n")
    result = invoke("build", "image", "--model", f"py:{module}:make", *SMALL, "--out", str(tmp_path / "o"))
    assert_one_line_error(result, 2, "make", "ValueError", "the config file is missing")


def test_corrupt_safetensors_in_a_hugging_face_folder_is_one_line(tmp_path, vit32):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(vit32, broken)
    (broken / "model.safetensors").write_bytes(struct.pack("<Q", 10 ** 12) + b"{}")  # header length far past the file
    result = invoke("build", "image", "--model", f"hf:{broken}", "--out", str(tmp_path / "o"))
    assert_one_line_error(result, 2, str(broken), "header too large")


@pytest.mark.parametrize("record", ["[1, 2]", '{"source": "example-image", "modality": "image", "spec": [224]}'])
def test_damaged_checkpoint_record_is_one_line(tmp_path, record):
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "checkpoint.json").write_text(record)
    result = invoke("build", "image", "--model", str(checkpoint), "--out", str(tmp_path / "o"))
    assert_one_line_error(result, 2, "checkpoint.json", "kit train")


@pytest.mark.parametrize("model,option,listed", [
    ("example-image", "colour=1", "channels, seed"),
    ("hf:{vit32}", "foo=1", "class_names, config, num_classes"),
    ("py:{fixtures}:tiny_clip", "modality=video", "input_kind, native_frames"),  # the kit sets modality itself
])
def test_option_a_source_does_not_take_is_one_line_listing_those_it_does(tmp_path, vit32, model, option, listed):
    fixtures = Path(__file__).parent / "fixtures" / "user_models.py"
    model = model.format(vit32=vit32, fixtures=fixtures)
    result = invoke("build", "image", "--model", model, "--model-option", option, *SMALL, "--out", str(tmp_path / "o"))
    assert_one_line_error(result, 2, f"takes no option '{option.split('=')[0]}'", listed)


@pytest.mark.parametrize("option", ["channels=abc", "channels=8,x", "seed=[1,2]"])
def test_bad_model_option_value_is_one_line(tmp_path, option):
    result = invoke("build", "image", "--model-option", option, *SMALL, "--out", str(tmp_path / "o"))
    assert_one_line_error(result, 2, "example-image", option.split("=")[0], "--model-option", "defaults are channels=")


def test_huge_size_is_refused_before_anything_is_allocated(tmp_path):
    result = invoke("build", "video", "--height", "100000", "--out", str(tmp_path / "o"))
    assert_one_line_error(result, 2, "height", str(MAX_SIDE))
    with pytest.raises(UsageError, match="width"):
        DetectorSpec(name="x", modality="image", width=MAX_SIDE + 1)
    assert DetectorSpec(name="x", modality="image", height=MAX_SIDE, width=MAX_SIDE).height == MAX_SIDE


def test_native_frames_zero_is_refused_not_replaced_by_the_backbones(tmp_path):
    result = invoke("build", "video", "--native-frames", "0", *SMALL, "--out", str(tmp_path / "o"))
    assert_one_line_error(result, 2, "native_frames")
    with pytest.raises(UsageError, match="native_frames"):
        DetectorSpec(name="x", modality="video", frames=16, native_frames=0, frame_mapping="all")


def test_hugging_face_size_defaults_to_the_config(tmp_path, vit32):
    from discriminator.spec import spec_from_manifest

    result = invoke("build", "image", "--model", f"hf:{vit32}", "--format", "onnx", "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    spec = spec_from_manifest(tmp_path / "o")
    assert (spec.height, spec.width) == (32, 32)


def test_preprocessor_crop_is_the_size_a_checkpoint_is_fed_before_its_config_image_size():
    from transformers import Dinov2Config

    from discriminator.sources.huggingface import native_size

    config = Dinov2Config(image_size=518)  # DINOv2 interpolates its position embeddings; its processor crops to 224
    assert native_size(config, {"size": {"shortest_edge": 256}, "crop_size": {"height": 224, "width": 224}}) == \
        ((224, 224), "preprocessor_config.json crop_size")
    assert native_size(config, {"size": {"shortest_edge": 256}}) == ((518, 518), "config.json image_size")
    assert native_size(object(), {}) == (None, "")


def test_size_the_model_cannot_take_points_at_height_width_not_the_exporter(tmp_path, vit32):
    result = invoke("build", "image", "--model", f"hf:{vit32}", "--height", "64", "--width", "64",
                    "--out", str(tmp_path / "o"))
    line = assert_one_line_error(result, 1, "--height/--width")
    assert "--exporter" not in line


def test_architecture_transformers_does_not_know_points_at_a_py_factory(tmp_path):
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "config.json").write_text('{"model_type": "my-own-net", "hidden_size": 4}')
    result = invoke("build", "image", "--model", f"hf:{tmp_path / 'own'}", "--out", str(tmp_path / "o"))
    assert_one_line_error(result, 2, "cannot build", "my-own-net", "py:<file.py>:<factory>")


def test_text_model_is_not_an_image_or_video_model(tmp_path):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16)).save_pretrained(tmp_path / "bert")
    result = invoke("build", "image", "--model", f"hf:{tmp_path / 'bert'}", *SMALL, "--out", str(tmp_path / "o"))
    line = assert_one_line_error(result, 2, "not an image or video model", "bert")
    assert "--exporter" not in line


def test_py_module_in_the_current_folder_is_found_and_the_path_is_restored(tmp_path, monkeypatch):
    from discriminator.sources.python import import_factory

    (tmp_path / "my_local_detector.py").write_text("def make():\n    return 'made'\n")
    monkeypatch.chdir(tmp_path)
    path_before = list(sys.path)
    try:
        assert import_factory("my_local_detector:make")() == "made"
    finally:
        sys.modules.pop("my_local_detector", None)
    assert sys.path == path_before


def test_py_file_imports_its_sibling_modules_and_the_path_is_restored(tmp_path, monkeypatch):
    from discriminator.sources.python import import_factory

    project = tmp_path / "project"
    project.mkdir()
    (project / "kit_test_sibling_layers.py").write_text("WIDTH = 7\n")
    (project / "detector.py").write_text("from kit_test_sibling_layers import WIDTH\n\ndef make():\n    return WIDTH\n")
    monkeypatch.chdir(tmp_path)  # the file is named by path from elsewhere, as in py:project/detector.py:make
    path_before = list(sys.path)
    try:
        assert import_factory("project/detector.py:make")() == 7
    finally:
        sys.modules.pop("kit_test_sibling_layers", None)
    assert sys.path == path_before


def test_onnxruntime_log_stays_out_and_the_message_is_whole(tmp_path, capfd):
    fixtures = Path(__file__).parent / "fixtures" / "user_models.py"
    result = invoke("build", "video", "--model", f"py:{fixtures}:frozen_frames", *SMALL, "--out", str(tmp_path / "o"))
    captured = capfd.readouterr()  # onnxruntime writes to file descriptor 2 itself, past sys.stderr
    assert "onnxruntime:" not in captured.err + captured.out and "\x1b[" not in captured.err
    # The message keeps its end (what shape was asked for), without the C++ source location before it.
    line = assert_one_line_error(result, 1, "onnxruntime fails at", "cannot be reshaped", "requested shape:{")
    assert "onnxruntime_src" not in line and "ReshapeHelper" not in line


def test_help_wraps_long_descriptions_instead_of_cutting_them():
    result = invoke("build", "--help")
    assert result.exit_code == 0
    assert "…" not in result.output
    assert "real,synthetic,semisynthetic" in result.output
    # Each example command stays on one line, so it can be copied.
    assert "  kit build video --model hf-videomae --name vmae\n" in result.output


def test_models_says_when_nothing_matches_and_refuses_an_unknown_modality():
    nothing = invoke("models", "zz-*")
    assert_one_line_error(nothing, 2, "no registered source matches 'zz-*'")
    assert invoke("models", "--modality", "audio").exit_code == 2


def test_models_never_splits_or_cuts_a_name_in_a_narrow_terminal():
    result = runner.invoke(app, ["models"], env={"COLUMNS": "50"})
    assert result.exit_code == 0 and "…" not in result.output
    for name in ("example-image", "example-video", "hf-resnet50", "hf-videomae"):
        assert f" {name} " in result.output


def test_every_command_reports_errors_through_kit_command():
    import typer

    def leaves(command, path=()):
        for name, sub in getattr(command, "commands", {}).items():
            yield from leaves(sub, (*path, name))
        if not getattr(command, "commands", None):
            yield " ".join(path), command.callback

    commands = list(leaves(typer.main.get_command(app)))
    assert len(commands) >= 8
    for name, callback in commands:
        chain = [callback]
        while hasattr(chain[-1], "__wrapped__"):
            chain.append(chain[-1].__wrapped__)
        assert any(getattr(f, "one_line_errors", False) for f in chain), f"kit {name} is not wrapped in @kit_command"


def test_an_error_raised_in_a_miners_own_code_names_the_file_and_line(tmp_path):
    from discriminator.cli.common import error_line

    user_file = tmp_path / "my_net.py"
    user_file.write_text("def forward():\n    raise IndexError('index 3 is out of bounds')\n")
    namespace: dict = {}
    exec(compile(user_file.read_text(), str(user_file), "exec"), namespace)
    with pytest.raises(IndexError) as caught:
        namespace["forward"]()
    message, code = error_line(caught.value)
    assert code == 1 and f"{user_file}:2" in message and "index 3 is out of bounds" in message
    assert "bug in kit" not in message
    # The same from a file inside the kit's own package is the kit's bug (this test's frame is cut off the traceback).
    import discriminator

    kit_file = Path(discriminator.__file__).parent / "not_a_real_module.py"
    exec(compile("def lookup():\n    return {}['missing']\n", str(kit_file), "exec"), namespace)
    try:
        namespace["lookup"]()
    except KeyError as exc:
        inside_the_kit = exc.with_traceback(exc.__traceback__.tb_next)
    assert "bug in kit" in error_line(inside_the_kit)[0]


@pytest.mark.parametrize("raised,code,needle", [
    (MemoryError(), 1, "out of memory"),
    (RuntimeError("a bug in the kit"), 1, "KIT_DEBUG=1"),
    (OSError(28, "No space left on device"), 2, "No space left on device"),
])
def test_every_exception_reaching_the_cli_is_one_line(raised, code, needle):
    import typer

    from discriminator.cli.common import kit_command

    probe = typer.Typer()

    @probe.command()
    @kit_command
    def fails() -> None:
        raise raised

    result = runner.invoke(probe, [])
    assert_one_line_error(result, code, needle)
