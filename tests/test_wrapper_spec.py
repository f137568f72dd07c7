"""The wrapper's contract (uint8 in, normalise inside, frame mapping, aggregation) and the spec's round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from discriminator.errors import UsageError
from discriminator.spec import DetectorSpec, read_manifest, spec_from_onnx, spec_from_onnx_metadata, write_manifest
from discriminator.wrapper import Backbone, Detector, uniform_frame_indices, unwrap_output


class Recorder(nn.Module):
    """Returns its input's per-frame channel means as 'logits' and remembers what it saw."""

    def forward(self, x):
        self.seen = x
        return x.mean(dim=(-1, -2))  # frames: [N,3]; clip: [B,T,3]


def video_spec(**kw):
    base = dict(name="t", modality="video", height=8, width=8, frames=16, native_frames=4,
                frame_mapping="uniform", temporal_aggregation="backbone")
    return DetectorSpec(**{**base, **kw})


@pytest.mark.parametrize("frames,native,expected", [
    (16, 16, list(range(16))),
    (16, 8, [1, 3, 5, 7, 9, 11, 13, 15]),
    (1, 4, [0, 0, 0, 0]),
    (7, 4, [0, 2, 4, 6]),
    (64, 16, [2 + 4 * i for i in range(16)]),
])
def test_uniform_frame_indices_follow_the_documented_rule(frames, native, expected):
    got = uniform_frame_indices(frames, native).tolist()
    assert got == expected
    assert got == [((2 * i + 1) * frames) // (2 * native) for i in range(native)]


def test_duplicating_every_frame_selects_the_same_frames():
    for native in (4, 8, 16):
        for frames in (native, 3, 10):
            original = uniform_frame_indices(frames, native).tolist()
            doubled = uniform_frame_indices(2 * frames, native).tolist()
            assert [d // 2 for d in doubled] == original


def test_normalisation_happens_inside_on_uint8_input():
    spec = DetectorSpec(name="t", modality="image", height=8, width=8, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
    recorder = Recorder()
    detector = Detector(Backbone(recorder, "frames"), spec)
    x = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    out = detector(x)
    expected = (x.float() / 255 - torch.tensor(spec.mean).view(1, 3, 1, 1)) / torch.tensor(spec.std).view(1, 3, 1, 1)
    assert torch.allclose(recorder.seen, expected, atol=1e-6)
    assert out.dtype == torch.float32 and out.shape == (2, 3)


def test_frames_backbone_averages_per_frame_logits():
    spec = video_spec(native_frames=None, frame_mapping="all", temporal_aggregation="mean_logits",
                      mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    detector = Detector(Backbone(Recorder(), "frames"), spec)
    x = torch.randint(0, 256, (2, 5, 3, 8, 8), dtype=torch.uint8)
    expected = (x.float() / 255).mean(dim=(-1, -2)).mean(dim=1)
    assert torch.allclose(detector(x), expected, atol=1e-6)


def test_clip_backbone_receives_native_frame_count_for_any_t():
    recorder = Recorder()
    detector = Detector(Backbone(recorder, "clip", native_frames=4), video_spec())
    for t in (1, 3, 16, 64):
        detector(torch.zeros(1, t, 3, 8, 8, dtype=torch.uint8))
        assert recorder.seen.shape[1] == 4


def test_temperature_divides_logits():
    spec = DetectorSpec(name="t", modality="image", height=8, width=8, temperature=2.0, mean=(0, 0, 0), std=(1, 1, 1))
    plain = Detector(Backbone(Recorder(), "frames"), spec.replace(temperature=1.0))
    hot = Detector(Backbone(Recorder(), "frames"), spec)
    x = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    assert torch.allclose(hot(x) * 2.0, plain(x))


def test_unwrap_output_accepts_hf_objects_dicts_and_tuples():
    logits = torch.randn(2, 3)

    class WithLogits:
        def __init__(self):
            self.logits = logits

    for wrapped in (logits, WithLogits(), {"logits": logits}, {"output": logits}, (logits,)):
        assert unwrap_output(wrapped, "classify") is logits


def test_image_detector_rejects_clip_backbone():
    spec = DetectorSpec(name="t", modality="image", height=8, width=8)
    with pytest.raises(ValueError):
        Detector(Backbone(Recorder(), "clip", native_frames=4), spec)


@pytest.mark.parametrize("bad", [
    dict(class_names=("fake", "real")),
    dict(class_names=("real",)),
    dict(std=(0.2, 0.0, 0.2)),
    dict(height=0),
    dict(modality="audio"),
])
def test_spec_rejects_contract_breaking_values(bad):
    with pytest.raises(UsageError):
        DetectorSpec(**{"name": "t", "modality": "image", **bad})


def test_video_spec_needs_frames_and_mapping():
    with pytest.raises(UsageError):
        DetectorSpec(name="t", modality="video", frames=100, frame_mapping="all")
    with pytest.raises(UsageError):
        DetectorSpec(name="t", modality="video", frames=16, frame_mapping="uniform", native_frames=None)


def test_spec_round_trips_through_manifest_and_metadata(tmp_path):
    spec = video_spec(class_names=("real", "semisynthetic", "synthetic"), temperature=1.7)
    write_manifest(tmp_path, {"spec": spec.to_dict()})
    assert DetectorSpec.from_dict(read_manifest(tmp_path)["spec"]) == spec
    assert spec_from_onnx_metadata({"sn34_kit.spec": spec.to_json()}) == spec
    assert spec_from_onnx_metadata({}) is None
    assert json.loads(spec.to_json())["class_names"] == ["real", "semisynthetic", "synthetic"]


def test_spec_from_onnx_reads_metadata_of_a_real_file(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph)
    spec = video_spec()
    helper.set_model_props(model, {"sn34_kit.spec": spec.to_json()})
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    assert spec_from_onnx(path) == spec
    assert spec_from_onnx(path.read_bytes()) == spec
    assert np.isclose(spec_from_onnx(path).temperature, 1.0)
