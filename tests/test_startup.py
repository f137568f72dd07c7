"""`kit` starts without the heavy libraries: they load inside the command that uses them.

Each case runs `kit` in a fresh interpreter and reads `sys.modules` at exit, so an
import added at the top of any CLI module shows up here. Timings are in
benchmarks/startup.py and docs/performance.md, not asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "onnxruntime", "onnx", "matplotlib", "pyarrow", "cv2", "av")

#: Runs the CLI as the console script does, then prints (as its last line) which heavy modules were imported.
PROBE = """
import json, sys
from discriminator.cli.app import app
try:
    app(args=sys.argv[1:], prog_name="kit")
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def imported_heavy_modules(*args: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], capture_output=True, text=True,
                          timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [("--version",), ("--help",), ("models",), ("build", "--help"), ("bench", "--help"),
                                  ("train", "--help"), ("check", "--help"), ("data", "demo", "--help")])
def test_cli_starts_without_heavy_libraries(args):
    assert imported_heavy_modules(*args) == []


def test_every_declared_factory_resolves_to_a_function_of_its_module():
    from discriminator.registry import list_sources

    for entry in list_sources():
        module_name = entry.factory_ref.partition(":")[0]
        assert callable(entry.factory) and entry.factory.__module__ == module_name


def test_declared_metadata_matches_the_example_modules():
    from discriminator.registry import get_source
    from onnx_examples.huggingface_models import image_model as hf_image, video_model as hf_video
    from onnx_examples.pytorch_models import video_model

    assert get_source("example-video").defaults["native_frames"] == video_model.NATIVE_FRAMES
    assert get_source("hf-resnet50").weights == f"hub: {hf_image.HUB_ID}"
    assert get_source("hf-videomae").weights == f"hub: {hf_video.HUB_ID}"
