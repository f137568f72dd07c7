"""The static analyzer catches every documented blocked import, call and submodule with its line, and passes the allowlist."""

from __future__ import annotations

import pytest

from discriminator.bundle.analyzer import (
    BLOCKED_ATTRIBUTES,
    BLOCKED_BUILTINS,
    BLOCKED_MODULES,
    analyze_file,
    analyze_source,
)

#: Line 1 and 2 are harmless, so a hit on line 3 proves the line number is the offending one.
PREAMBLE = "import torch\nfrom torch import nn\n"

#: The documented names (validator-contract §7), written out so the data tables cannot drift from the contract unseen.
DOCUMENTED_BLOCKED = (
    "os sys subprocess shutil socket requests urllib http asyncio aiohttp httpx ftplib smtplib telnetlib pickle "
    "marshal shelve dill cloudpickle joblib importlib builtins code runpy numba cython ctypes cffi mmap signal "
    "multiprocessing concurrent threading apex deepspeed tensorboard wandb mlflow boto3 google.cloud azure sqlite3 "
    "psycopg2 pymongo redis tempfile glob h5py pty tty termios"
).split()
DOCUMENTED_CALLS = ("eval", "exec", "compile", "__import__", "getattr", "setattr", "globals", "locals")
DOCUMENTED_SUBMODULES = ("torch.utils.cpp_extension", "torch.jit.script", "torch.jit.trace", "numpy.ctypeslib")


def codes(source: str) -> list[tuple[int, str, str]]:
    return [(v.line, v.code, v.name) for v in analyze_source(source)]


def test_the_tables_hold_every_documented_name():
    assert set(DOCUMENTED_BLOCKED) <= BLOCKED_MODULES
    assert set(DOCUMENTED_CALLS) <= BLOCKED_BUILTINS
    assert {"torch.jit", "torch.compile", "torch.utils.cpp_extension", "numpy.ctypeslib"} <= BLOCKED_ATTRIBUTES


@pytest.mark.parametrize("module", DOCUMENTED_BLOCKED)
def test_every_blocked_module_is_caught_as_import_and_from_import(module):
    assert codes(PREAMBLE + f"import {module}\n") == [(3, "blocked-import", module)]
    assert codes(PREAMBLE + f"import {module}.inner as alias\n") == [(3, "blocked-import", f"{module}.inner")]
    assert codes(PREAMBLE + f"from {module} import thing\n") == [(3, "blocked-import", module)]


@pytest.mark.parametrize("name", DOCUMENTED_CALLS)
def test_every_blocked_call_is_caught_called_or_merely_referenced(name):
    assert codes(PREAMBLE + f"value = {name}('x')\n") == [(3, "blocked-builtin", name)]
    assert codes(PREAMBLE + f"def f():\n    handle = {name}\n    return handle\n") == [(4, "blocked-builtin", name)]


@pytest.mark.parametrize("dotted", DOCUMENTED_SUBMODULES + ("torch.compile", "torch.jit.freeze"))
def test_every_blocked_submodule_is_caught_as_import_and_as_attribute_use(dotted):
    module, _, attribute = dotted.rpartition(".")
    root = dotted.split(".")[0]
    uses = [
        f"import {root}\nresult = {dotted}(model)\n",
        f"import {root} as alias\nresult = alias.{dotted.split('.', 1)[1]}(model)\n",
        f"import {root}\nbound = {root}\nresult = bound.{dotted.split('.', 1)[1]}(model)\n",
        f"from {module} import {attribute}\n",
    ]
    for source in uses:
        found = [v for v in analyze_source(source) if v.code in ("blocked-attribute", "blocked-import")]
        assert found, source
        assert found[0].name.startswith(dotted) or dotted.startswith(found[0].name), (source, found)
        expected_line = source.count("\n")
        assert found[0].line == expected_line, source


def test_imports_off_the_allowlist_are_violations_read_conservatively():
    source = PREAMBLE + "from __future__ import annotations\nimport json\nimport re\nimport copy\nfrom torch.utils import data\nfrom PIL import ImageOps\n"
    assert codes(source) == [(3, "not-allowlisted", "__future__"), (4, "not-allowlisted", "json"),
                             (5, "not-allowlisted", "re"), (6, "not-allowlisted", "copy"),
                             (7, "not-allowlisted", "torch.utils"), (8, "not-allowlisted", "PIL.ImageOps")]
    fixes = {v.name: v.fix for v in analyze_source(source)}
    assert "model_config.yaml" in fixes["json"]


def test_allowed_imports_pass():
    source = """
import math
import functools
from typing import Any
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum
from abc import ABC
from pathlib import Path
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor, nn as tnn
from torch.cuda import amp
import torchvision
from torchvision import models, transforms
from torchvision.models import resnet18
import torchaudio
import transformers
from transformers import ViTConfig, ViTForImageClassification
import timm
from einops import rearrange
from safetensors.torch import load_file
from PIL import Image
import cv2
import scipy.ndimage
from scipy import signal
import skimage

class Head(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x.float()).mean(dim=(2, 3))

def load_model(weights_path, num_classes=3, **kwargs):
    model = Head()
    model.load_state_dict(load_file(weights_path), strict=True)
    return model
"""
    assert analyze_source(source) == []


def test_relative_and_sibling_imports_are_refused(tmp_path):
    (tmp_path / "helpers.py").write_text("X = 1\n")
    (tmp_path / "layers").mkdir()
    (tmp_path / "layers" / "__init__.py").write_text("")
    model = tmp_path / "model.py"
    model.write_text("import torch\nfrom . import utils\nfrom .blocks import Block\nimport helpers\nfrom layers import Conv\nimport unknown_lib\n")
    found = [(v.where, v.code, v.name) for v in analyze_file(model)]
    assert found == [("model.py:2", "relative-import", "."), ("model.py:3", "relative-import", ".blocks"),
                     ("model.py:4", "sibling-import", "helpers"), ("model.py:5", "sibling-import", "layers"),
                     ("model.py:6", "not-allowlisted", "unknown_lib")]


@pytest.mark.parametrize("source", ["def load_model(:\n    pass\n", "x = 'unterminated\n", "\tif True:\n  pass\n"])
def test_a_syntax_error_is_a_violation_not_a_crash(source):
    (violation,) = analyze_source(source)
    assert violation.code == "syntax-error" and violation.line >= 1 and violation.where.startswith("model.py:")


def test_imports_inside_functions_are_found_too():
    found = codes("import torch\n\ndef load_model(weights_path, num_classes=3):\n    import os\n    return os\n")
    assert found == [(4, "blocked-import", "os")]


def test_a_star_import_is_reported_because_it_hides_blocked_names():
    assert codes("from torch import *\nmodel = compile\n") == [(1, "star-import", "torch.*"), (2, "blocked-builtin", "compile")]
    assert codes("from os import *\n") == [(1, "blocked-import", "os")]
