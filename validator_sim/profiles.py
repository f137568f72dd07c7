"""The validator's rule sets as data: one `Profile` record per evaluator era.

The pipeline reads every era-specific choice from a profile (batch sizes, frame
selection, resize algorithm, the decision rule per output width, how a failing
batch is treated), so adding an era means adding a record to `PROFILES`, not
editing the pipeline. Contract §1–§6 describe `onnx-2026-02`; §7 describes `current`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Literal

from discriminator.errors import UsageError

#: How an image or frame reaches the model's H×W (contract §2 and §7).
ResizeMethod = Literal["shortest_edge_center_crop", "center_crop_resize"]
#: How one row of logits becomes (predicted AI?, p(AI)) — see `validator_sim.metrics.decide`.
DecisionRule = Literal["always_ai", "sigmoid", "argmax_is_1", "argmax_not_0", "p0_above_half", "not_real_above_half"]
#: What the validator did when `session.run` raised for a batch.
FailurePolicy = Literal["abort_dataset", "error_rows", "invalidate_run"]
#: Which library decodes video (see `validator_sim.decode`).
VideoDecoder = Literal["pyav", "decord"]
#: Which of the two sn34 readings is `sn34_score` (current-contract §5).
Scoring = Literal["binary", "multiclass"]


@dataclass(frozen=True)
class Profile:
    """Everything about one evaluator era that changes the number a miner gets."""

    name: str
    description: str
    batch_size: dict[str, int] = field(default_factory=lambda: {"image": 32, "video": 4})
    #: Used when the graph's H or W is symbolic (both default together).
    default_size: int = 224
    #: Frames sent when the graph's frame axis is symbolic.
    default_frames: int = 16
    #: T is clamped to this.
    max_frames: int = 64
    resize: ResizeMethod = "shortest_edge_center_crop"
    #: Whether `--frame-rate` may step through a clip (every round(fps / rate) frames from frame 0).
    frame_rate_stepping: bool = False
    #: Frame rate assumed when a clip does not declare one.
    fallback_fps: float = 30.0
    #: Every image was re-saved by the dataset cache (own mode and format, Pillow defaults) before decoding.
    image_resave: bool = True
    #: decord 0.6.0 (ONNX era) or PyAV with explicit colour matrix/range and rotation (current).
    video_decoder: VideoDecoder = "decord"
    #: The sn34 reported as `sn34_score` unless `--scoring` says otherwise.
    default_scoring: Scoring = "binary"
    #: Which of a build folder's two formats is benched when `--format` is not given: what the era's evaluator ran.
    preferred_format: Literal["onnx", "bundle"] = "onnx"
    #: What `accuracy` compares: the binary decision with real/AI (ONNX era, contract §4), or the argmax
    #: with the multiclass label (today, current-contract §5: the entrance exam's reading).
    accuracy_against: Scoring = "binary"
    #: Decision rule by number of logits; key 4 stands for "4 or more".
    decision_rules: dict[int, DecisionRule] = field(default_factory=dict)
    #: By modality: what a failing `session.run` did to the rest of the dataset.
    on_batch_failure: dict[str, FailurePolicy] = field(default_factory=dict)
    #: Logit widths this era scores meaningfully; others are flagged as broken.
    sound_logit_widths: tuple[int, ...] = (2, 3)

    def rule_for(self, num_logits: int) -> DecisionRule:
        """The decision rule for a row of `num_logits` logits."""
        if num_logits < 1:
            raise UsageError("the model returned an empty output row", "the first output must be [batch, classes] logits")
        return self.decision_rules[min(num_logits, 4)]

    def batch_size_for(self, modality: str) -> int:
        return self.batch_size[modality]


PROFILES: dict[str, Profile] = {
    profile.name: profile
    for profile in (
        Profile(
            name="onnx-2026-02",
            description="the last ONNX-era evaluator (Feb 2026): contract §1–§6",
            decision_rules={1: "always_ai", 2: "argmax_is_1", 3: "argmax_not_0", 4: "p0_above_half"},
            on_batch_failure={"image": "abort_dataset", "video": "error_rows"},
            video_decoder="decord",
            default_scoring="binary",
        ),
        Profile(
            name="current",
            description="today's evaluator (gasbench 0.11, bundles): crop-then-resize, PyAV with colour tags and rotation, "
                        "multiclass sn34, any inference failure voids the run (current-contract)",
            resize="center_crop_resize",
            frame_rate_stepping=True,
            decision_rules={1: "sigmoid", 2: "not_real_above_half", 3: "not_real_above_half", 4: "not_real_above_half"},
            on_batch_failure={"image": "invalidate_run", "video": "invalidate_run"},
            video_decoder="pyav",
            default_scoring="multiclass",
            accuracy_against="multiclass",
            preferred_format="bundle",
            sound_logit_widths=(1, 2, 3),
        ),
    )
}

DEFAULT_PROFILE = "onnx-2026-02"
#: What `kit train` and `kit calibrate` train for unless told otherwise: today's evaluator (3 classes, epochs
#: kept by multiclass sn34, a temperature that lowers the 3-class Brier without raising the binary one).
TRAIN_PROFILE = "current"


def get_profile(name: str) -> Profile:
    """The profile called `name`, or a UsageError that suggests the closest one."""
    if name in PROFILES:
        return PROFILES[name]
    close = difflib.get_close_matches(name, PROFILES, n=1)
    suggestion = f"did you mean {close[0]!r}? " if close else ""
    raise UsageError(f"unknown profile {name!r}", f"{suggestion}choose one of: {', '.join(PROFILES)}")
