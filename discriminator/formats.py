"""The artifact formats `kit build` emits from one wrapped detector: one row per format, with its behaviour.

| format | what it writes                                            | the network takes it      |
|--------|-----------------------------------------------------------|---------------------------|
| onnx   | `<modality>_detector.onnx`                                | until 2026-02-03 (ONNX era) |
| bundle | `bundle/` = model_config.yaml + model.py + model.safetensors | since 2026-02-03 (today)  |

The default builds both: the bundle is what a miner pushes today, and its ONNX twin is
the faster engine for local benches and a second, independent proof that the bundle
computes what the model computes. Embedding exports are not submissions and are ONNX only.

Each row carries everything that differs between the formats, so no layer branches on a
format's name: the facts as data (what a build writes, the zip's name, which engine a check
runs, whether a bench may load it in a worker started early) and the behaviour as `Hook`s — how
a build emits and verifies it, how a folder, a lone file or a zip is found to hold it and read,
how its spec is found, its check rules and how a check runs them, the members its zip holds, and
how a bench opens a session on it. A hook is a "module:attribute" path imported on first
use: the command line reads this table to build its options, so it imports no torch (nor
onnxruntime, nor anything of the layers it points into), and every layer can import it.
`tests/test_format_rows.py` resolves every hook of every row.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from discriminator.errors import UsageError


@dataclass(frozen=True)
class Hook:
    """One behaviour of a format, as "module:attribute"; calling the hook imports the module and calls the attribute."""

    target: str

    def resolve(self) -> Any:
        module, _, attribute = self.target.partition(":")
        return getattr(importlib.import_module(module), attribute)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)


@dataclass(frozen=True)
class ArtifactFormat:
    """A format's row: what it is, and what every layer does with it."""

    name: str
    description: str
    #: The files (or folder) a build folder holds for this format; `{modality}` is filled in.
    writes: str
    #: Whether today's evaluator accepts a zip of this format.
    accepted_now: bool
    #: Whether an embeddings export (not a submission) can be written in this format.
    carries_embeddings: bool
    #: The submission zip's file name without `.zip` (unless --name says otherwise); `{modality}` is filled in.
    zip_stem: str
    #: Whether the zip keeps the model's own file names (a bundle) or renames its one file (ONNX → `<zip_stem>.onnx`):
    #: when they are renamed, a zip still holds its model when the same bytes are there under any name.
    zip_keeps_names: bool
    #: What a folder lacks when it holds no model of this format (an error's words).
    missing: str
    #: What `kit check` runs the model on (its table's title); `{ort_min}` is filled in.
    check_engine: str
    #: How an error names a zip's model of this format ("… mixes an ONNX model (x.onnx) and a bundle (…)").
    zip_called: str
    #: What a zip of this format holds, as the error for a zip of no format says it
    #: ("… holds neither one .onnx file nor …").
    zip_holds: str
    #: Whether `kit bench` may load it in a worker interpreter started before the bench needs it, so that the worker's
    #: start (its `import torch`) overlaps the bench's own set-up (validator_sim/opening.py).
    loads_in_worker: bool
    #: `kit build`, in this order: `plan(request, backbone)` refuses up front what the format cannot write and returns
    #: what its emit needs; `emit(stage) -> Path` writes it into the build's scratch folder (stage: build.BuildStage);
    #: `verify(stage, path)` runs it against PyTorch; `install(stage, path, out_dir) -> dict` moves it into the build
    #: folder and returns its manifest entry. `target(out_dir, spec) -> Path`: where it lands there.
    plan: Hook
    emit: Hook
    verify: Hook
    install: Hook
    target: Hook
    #: `zip_markers(names) -> list[str]`: which of a zip's root file names mark it as this format (none: not this format;
    #: a zip two formats mark is refused); also asked of a lone file's name, which refuses one file of a format that is
    #: never one file. `check_zip(zip_path, names, markers)`: refuses, with this format's
    #: InputError, a zip it marks that does not hold one whole model of it.
    zip_markers: Hook
    check_zip: Hook
    #: `locate(directory, manifest) -> Path | None`: the model of this format a folder holds (a file, or a folder), or None.
    locate: Hook
    #: `from_dir(directory, found, container, manifest) -> Artifact`: read the model a folder holds (`found`: its path).
    from_dir: Hook
    #: `from_file(path) -> Artifact`: read a lone file (not a zip) as this format's model; None for a format that is
    #: never one file. One row reads lone files.
    from_file: Hook | None
    #: `read_spec(artifact) -> DetectorSpec | None`: the spec of a model just read.
    read_spec: Hook
    #: The `kit check` rule table (a tuple of `Rule`).
    check_rules: Hook
    #: `check(artifact, modality, version, threads, latency, on_rule, bundle_options) -> CheckReport`.
    check: Hook
    #: `modality_of(artifact, requested) -> str | None`: the modality a check will use, found without running anything.
    modality_of: Hook
    #: `zip_members(artifact, modality) -> dict[str, bytes]`: the files its submission zip holds, by name.
    zip_members: Hook
    #: `open_session(artifact, profile, threads, modality, datasets, stack) -> (ModelSession, name)`: `kit bench`'s engine.
    open_session: Hook
    #: `refusals(artifact) -> list[str]`: what the network refuses the submission for before any exam, found without
    #: running it (one line each; `kit bench` warns and fails the exam on it). None: no such check is known for the
    #: format.
    refusals: Hook | None


FORMATS: dict[str, ArtifactFormat] = {
    "onnx": ArtifactFormat(
        "onnx", "ONNX graph for onnxruntime (the ONNX-era network; fast local benches)",
        "{modality}_detector.onnx", accepted_now=False, carries_embeddings=True, zip_stem="{modality}_detector",
        zip_keeps_names=False, missing="no .onnx model", check_engine="onnxruntime ≥ {ort_min}",
        zip_called="an ONNX model", zip_holds="one .onnx file", loads_in_worker=False,
        plan=Hook("discriminator.build:plan_onnx"), emit=Hook("discriminator.build:emit_onnx"),
        verify=Hook("discriminator.build:verify_onnx"), install=Hook("discriminator.build:install_onnx"),
        target=Hook("discriminator.build:onnx_target"),
        zip_markers=Hook("discriminator.artifact:onnx_zip_markers"),
        check_zip=Hook("discriminator.artifact:check_onnx_zip"),
        locate=Hook("discriminator.artifact:locate_onnx"), from_dir=Hook("discriminator.artifact:onnx_from_dir"),
        from_file=Hook("discriminator.artifact:onnx_from_file"), read_spec=Hook("discriminator.artifact:onnx_spec"),
        check_rules=Hook("discriminator.check.rules:RULES"), check=Hook("discriminator.check.runner:check_onnx"),
        modality_of=Hook("discriminator.check.runner:onnx_modality"),
        zip_members=Hook("discriminator.package:onnx_zip_members"),
        open_session=Hook("validator_sim.run:open_onnx_model"), refusals=None,
    ),
    "bundle": ArtifactFormat(
        "bundle", "safetensors bundle: model_config.yaml + model.py + model.safetensors (what the network accepts today)",
        "bundle/", accepted_now=True, carries_embeddings=False, zip_stem="{modality}_bundle",
        zip_keeps_names=True, missing="no bundle (model_config.yaml + model.py)",
        check_engine="torch on CPU, loaded as the evaluator loads it",
        zip_called="a bundle", zip_holds="a bundle (model_config.yaml, model.py, model.safetensors)",
        loads_in_worker=True,
        plan=Hook("discriminator.build:plan_bundle"), emit=Hook("discriminator.build:emit_bundle"),
        verify=Hook("discriminator.build:verify_emitted_bundle"), install=Hook("discriminator.build:install_bundle"),
        target=Hook("discriminator.build:bundle_target"),
        zip_markers=Hook("discriminator.artifact:bundle_zip_markers"),
        check_zip=Hook("discriminator.artifact:check_bundle_zip"),
        locate=Hook("discriminator.artifact:find_bundle_in_dir"), from_dir=Hook("discriminator.artifact:bundle_from_dir"),
        from_file=None, read_spec=Hook("discriminator.artifact:bundle_spec"),
        check_rules=Hook("discriminator.check.rules_bundle:BUNDLE_RULES"),
        check=Hook("discriminator.check.runner:check_bundle"),
        modality_of=Hook("discriminator.check.bundle_context:bundle_modality"),
        zip_members=Hook("discriminator.package:bundle_zip_members"),
        open_session=Hook("validator_sim.run:open_bundle_model"),
        refusals=Hook("discriminator.check.bundle_context:bundle_refusals"),
    ),
}
#: `--format` values: one format, or both.
FORMAT_CHOICES = ("both", *FORMATS)
#: When a build folder holds both formats and the caller does not choose: ONNX, what `load_artifact`
#: has always returned (kit bench reads it). `kit package` chooses "bundle"; `kit check` checks both.
FORMAT_WHEN_BOTH = "onnx"
BUNDLE_DIR = "bundle"


def format_row(name: str) -> ArtifactFormat:
    """The row of format `name`; a name not in the table is a UsageError."""
    if name not in FORMATS:
        raise UsageError(f"--format {name!r} is not one of {', '.join(FORMATS)}", "pass --format onnx or --format bundle")
    return FORMATS[name]


def resolve_formats(requested: str | tuple[str, ...] | None, task: str) -> tuple[str, ...]:
    """`--format` → the formats to emit, in emit order (ONNX first, so the bundle can be compared with it)."""
    if requested is None:
        return tuple(n for n, row in FORMATS.items() if row.carries_embeddings or task != "embeddings")
    names = (requested,) if isinstance(requested, str) else tuple(requested)
    if "both" in names:
        names = tuple(FORMATS)
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise UsageError(f"unknown --format '{unknown[0]}'", f"choose one of: {', '.join(FORMAT_CHOICES)}")
    if task == "embeddings" and not all(FORMATS[n].carries_embeddings for n in names):
        raise UsageError("an embeddings export is not a submission, so it has no bundle", "use --format onnx with --task embeddings")
    return tuple(n for n in FORMATS if n in names)
