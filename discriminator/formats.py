"""The artifact formats `kit build` emits from one wrapped detector, as data.

| format | what it writes                                            | the network takes it      |
|--------|-----------------------------------------------------------|---------------------------|
| onnx   | `<modality>_detector.onnx`                                | until 2026-02-03 (ONNX era) |
| bundle | `bundle/` = model_config.yaml + model.py + model.safetensors | since 2026-02-03 (today)  |

The default builds both: the bundle is what a miner pushes today, and its ONNX twin is
the faster engine for local benches and a second, independent proof that the bundle
computes what the model computes. Embedding exports are not submissions and are ONNX only.
No torch import: the command line reads this table to build its options.
"""

from __future__ import annotations

from dataclasses import dataclass

from discriminator.errors import UsageError


@dataclass(frozen=True)
class ArtifactFormat:
    name: str
    description: str
    #: The files (or folder) a build folder holds for this format; `{modality}` is filled in.
    writes: str
    #: Whether today's evaluator accepts a zip of this format.
    accepted_now: bool


FORMATS: dict[str, ArtifactFormat] = {
    "onnx": ArtifactFormat("onnx", "ONNX graph for onnxruntime (the ONNX-era network; fast local benches)",
                           "{modality}_detector.onnx", accepted_now=False),
    "bundle": ArtifactFormat("bundle", "safetensors bundle: model_config.yaml + model.py + model.safetensors "
                             "(what the network accepts today)", "bundle/", accepted_now=True),
}
#: `--format` values: one format, or both.
FORMAT_CHOICES = ("both", *FORMATS)
BUNDLE_DIR = "bundle"


def resolve_formats(requested: str | tuple[str, ...] | None, task: str) -> tuple[str, ...]:
    """`--format` → the formats to emit, in emit order (ONNX first, so the bundle can be compared with it)."""
    if requested is None:
        return ("onnx",) if task == "embeddings" else ("onnx", "bundle")
    names = (requested,) if isinstance(requested, str) else tuple(requested)
    if "both" in names:
        names = tuple(FORMATS)
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise UsageError(f"unknown --format '{unknown[0]}'", f"choose one of: {', '.join(FORMAT_CHOICES)}")
    if task == "embeddings" and "bundle" in names:
        raise UsageError("an embeddings export is not a submission, so it has no bundle", "use --format onnx with --task embeddings")
    return tuple(n for n in FORMATS if n in names)
