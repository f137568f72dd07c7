"""One sample's payload → the uint8 tensor the model is fed: decode as the profile's evaluator does, then resize.

`prepare_sample` is the kit's own preparing function: the run loop calls it for every
sample, and the pixel cache names it (and digests its source) in every recipe, so
cached pixels are those this function would produce.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from validator_sim.decode import DecodeError, decode_image, decode_video, video_decoder
from validator_sim.preprocess import clip_to_tchw, image_to_chw
from validator_sim.profiles import Profile

if TYPE_CHECKING:  # onnxruntime: the pixel cache imports this module without it
    from validator_sim.session import ModelIO


def prepare_sample(payload: bytes | Path, model_io: ModelIO, profile: Profile, frame_rate: float | None,
                    decode_threads: int) -> np.ndarray | DecodeError:
    """One payload → the model's uint8 layout, or the DecodeError that drops it."""
    try:
        if model_io.modality == "image":
            return image_to_chw(decode_image(payload, profile.image_resave),
                                model_io.height, model_io.width, profile.resize)
        assert model_io.frames is not None
        frames = decode_video(payload, model_io.frames, frame_rate, profile.fallback_fps, decode_threads,
                              video_decoder(profile))
        return clip_to_tchw(frames, model_io.frames, model_io.height, model_io.width, profile.resize)
    except DecodeError as exc:
        return exc
    except cv2.error as exc:
        return DecodeError("cannot be resized", str(exc).strip().splitlines()[-1])

