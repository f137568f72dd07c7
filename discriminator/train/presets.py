"""Training settings for the built-in demo data, as data: what `make demo` trains for each modality.

Chosen for a 2-core CPU and to land on every seed, not on average (the seed × threads
table is in docs/performance.md, "kit train and make demo"): the small example networks
with narrow channels, fine-tuned from seeded random weights with warm-up, cosine decay
and an EMA of the weights. Video at 112×112 with 4 native frames (a quarter of the
pixels and half the frames of 224×224×8, so about 1/8 of the compute; the demo clips'
8–16 px generator grid survives that resize); images at the validator's 224×224, where
their finer 4–8 px grid still shows. Video also trains on half of each dataset's clips
as the evaluator's robustness pass re-encodes them (`robustness_augment=0.5`, i.e.
`kit train --robustness-augment 0.5`): on demo data version 4 that raised the blended
0.8·plain + 0.2·augmented multiclass sn34 on every seed measured, for about 1.4× the
training time. Images leave it off: there it moved the blended sn34 by −0.03 to +0.02
from seed to seed (docs/performance.md, "Train-time robustness augmentation").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from discriminator.train.trainer import TrainRequest

DEMO_PRESETS: dict[str, dict[str, Any]] = {
    "video": dict(model="example-video", source_options={"channels": [8, 16, 32, 64]}, height=112, width=112,
                  native_frames=4, mode="finetune", epochs=16, batch_size=8, learning_rate=3e-3, robustness_augment=0.5),
    "image": dict(model="example-image", source_options={"channels": [8, 16, 32, 64]}, height=224, width=224,
                  mode="finetune", epochs=10, batch_size=16, learning_rate=3e-3),
}


def demo_train_request(modality: str, demo_root: Path, out: Path, force: bool = False, **overrides: Any) -> TrainRequest:
    """The `TrainRequest` for `kit data demo` output at `demo_root` (its train/ and val/ splits)."""
    settings = {**DEMO_PRESETS[modality], **overrides}
    return TrainRequest(modality=modality, data=Path(demo_root) / "train", val=Path(demo_root) / "val", out=out,
                        force=force, **settings)
