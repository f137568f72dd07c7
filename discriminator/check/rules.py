"""The checker's rules, as one table: what each checks, why the validator cares, and the fix.

Every statement in the validator contract that a model can break is a row of
`RULES`. The runner walks the table in order; a rule whose prerequisites (`needs`)
did not pass is skipped rather than reported twice. `severity` is the worst a rule
can report: `fail` blocks `kit package`, `warn` never does, `info` only measures.

A rule's function returns a `Finding`: `passed(...)`, `problem(...)` (reported at
the rule's severity), `warned(...)` (a milder outcome of a fail rule) or `skipped(...)`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from discriminator.check.context import (
    RANK_OF_MODALITY,
    VALIDATOR_DEFAULT_SIZE,
    CheckContext,
)
from discriminator.package_state import package_dir_for, package_states
from discriminator.spec import VALIDATOR_DEFAULT_FRAMES, VALIDATOR_MAX_FRAMES

#: The newest ai.onnx opset and ONNX IR version each onnxruntime release loads, by (major, minor).
#: Versions above the table are held to its last row (conservative).
ORT_LIMITS: dict[tuple[int, int], tuple[int, int]] = {
    (1, 17): (20, 9),
    (1, 18): (21, 10),
    (1, 19): (21, 10),
    (1, 20): (21, 10),
    (1, 21): (22, 10),
    (1, 22): (22, 10),
    (1, 23): (23, 11),
}
#: Batch sizes proven by running: the validator's own (32 image, 4 video) plus shorter last batches.
PROBE_BATCHES = {"image": (1, 2, 4, 32), "video": (1, 4)}
#: Frame counts proven when T is symbolic: what the validator sends first, then a spread up to its clamp.
PROBE_FRAMES = (VALIDATOR_DEFAULT_FRAMES, 1, 8, 33, VALIDATOR_MAX_FRAMES)
#: Inputs for the output checks, chosen to be very different from each other.
CONTENT_PROBES = ("random", "random-2", "all-0", "all-255", "mid-grey")
#: Below this spread of p(class) across the content probes, the model is called constant.
CONSTANT_SPREAD = 1e-3
#: A constant this large that is integer-typed (and not quantised weights) or indexed by Gather
#: looks like a memorised lookup table, which the network scans for.
LOOKUP_TABLE_MIN_BYTES = 1024**2
#: Ops whose integer constants are quantised weights, not tables.
QUANTISED_WEIGHT_OPS = frozenset({"DequantizeLinear", "QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger"})
GATHER_OPS = frozenset({"Gather", "GatherElements", "GatherND"})
#: Files above this size load slowly and sit near protobuf's 2 GiB ceiling.
LARGE_FILE_BYTES = 1024**3
#: Timed runs of the full latency figure (`--latency`), after one untimed warm-up run.
TIMING_REPEATS = 3
#: How the latency figure is measured: not at all, from the one validator-batch run the batch proof
#: already made (the default: no extra forward), or as the median of TIMING_REPEATS after a warm-up.
LATENCY_MODES = ("off", "quick", "full")
DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class Finding:
    """What one rule found: `status` is pass | problem | warn | skip; `problem` takes the rule's severity.

    `fix` replaces the rule's own fix when the finding calls for another (a run that ran out of time).
    """

    status: str
    message: str
    figure: str | int | float | None = None
    fix: str | None = None


def passed(message: str, figure: str | int | float | None = None) -> Finding:
    return Finding("pass", message, figure)


def problem(message: str, figure: str | int | float | None = None) -> Finding:
    return Finding("problem", message, figure)


def warned(message: str, figure: str | int | float | None = None) -> Finding:
    return Finding("warn", message, figure)


def skipped(message: str) -> Finding:
    return Finding("skip", message)


@dataclass(frozen=True)
class Rule:
    """One row of the table."""

    id: str
    severity: str  # fail | warn | info
    checks: str
    why: str
    fix: str
    evaluate: Callable[[CheckContext], Finding]
    needs: tuple[str, ...] = ()
    modality: str | None = None  # only for this modality


# ---------------------------------------------------------------------------- file and format


def _ort_limits(ctx: CheckContext) -> tuple[int, int, str]:
    """(max opset, max IR version, "onnxruntime X.Y") for --ort-min, using the newest table row not above it."""
    row = max(version for version in ORT_LIMITS if version <= ctx.ort_min)
    max_opset, max_ir = ORT_LIMITS[row]
    return max_opset, max_ir, f"onnxruntime {ctx.ort_min[0]}.{ctx.ort_min[1]}"


def check_ir_version(ctx: CheckContext) -> Finding:
    _, max_ir, ort = _ort_limits(ctx)
    ir = ctx.model.ir_version
    if ir > max_ir:
        return problem(f"IR version {ir}; {ort} refuses anything above {max_ir} and the model never loads", ir)
    return passed(f"IR version {ir} (≤ {max_ir} for {ort})", ir)


def check_opset(ctx: CheckContext) -> Finding:
    max_opset, _, ort = _ort_limits(ctx)
    opsets = [o.version for o in ctx.model.opset_import if o.domain in DEFAULT_DOMAINS]
    if not opsets:
        return problem("the model imports no ai.onnx opset")
    opset = max(opsets)
    if opset > max_opset:
        return problem(f"opset {opset}; {ort} loads opset ≤ {max_opset} and refuses this model", opset)
    return passed(f"opset {opset} (≤ {max_opset} for {ort})", opset)


def _all_graphs(graph) -> Iterator:
    """The graph and every subgraph inside If/Loop/Scan attributes."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _all_graphs(attribute.g)
            for sub in attribute.graphs:
                yield from _all_graphs(sub)


def _all_nodes(ctx: CheckContext) -> Iterator:
    for graph in _all_graphs(ctx.model.graph):
        yield from graph.node
    for function in ctx.model.functions:
        yield from function.node


def check_default_domain(ctx: CheckContext) -> Finding:
    local_functions = {(f.domain, f.name) for f in ctx.model.functions}
    foreign = sorted({f"{n.domain}::{n.op_type}" for n in _all_nodes(ctx)
                      if n.domain not in DEFAULT_DOMAINS and (n.domain, n.op_type) not in local_functions})
    if foreign:
        listing = ", ".join(foreign[:4]) + (" …" if len(foreign) > 4 else "")
        return problem(f"{len(foreign)} op type(s) outside the default domain: {listing}", len(foreign))
    return passed("default-domain ops only")


def _all_tensors(ctx: CheckContext) -> Iterator[tuple[str, object]]:
    """Every constant tensor as (the name nodes consume it by, TensorProto): initializers and Constant nodes."""
    for graph in _all_graphs(ctx.model.graph):
        for tensor in graph.initializer:
            yield tensor.name, tensor
        for node in graph.node:
            if node.op_type == "Constant" and node.output:
                for attribute in node.attribute:
                    if attribute.HasField("t"):
                        yield node.output[0], attribute.t


def check_external_data(ctx: CheckContext) -> Finding:
    import onnx

    external = [t for _, t in _all_tensors(ctx) if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        locations = sorted({e.value for t in external for e in t.external_data if e.key == "location"})
        where = ", ".join(locations[:3]) or "another file"
        return problem(f"{len(external)} tensor(s) stored outside the .onnx file (in {where}); the zip carries one file",
                       len(external))
    return passed("all weights inside the .onnx file")


def check_loads(ctx: CheckContext) -> Finding:
    session, error = ctx.session_or_error
    if session is None:
        return problem(f"onnxruntime cannot load it: {error}")
    return passed("loads in onnxruntime with ORT_ENABLE_ALL")


def check_single_io(ctx: CheckContext) -> Finding:
    if not ctx.inputs:
        return problem("the graph has no input to feed")
    if not ctx.outputs:
        return problem("the graph has no output")
    extra_inputs = [i.name for i in ctx.inputs[1:]]
    extra_outputs = [o.name for o in ctx.outputs[1:]]
    if extra_inputs:
        return problem(f"{len(ctx.inputs)} inputs; the validator feeds only {ctx.inputs[0].name!r}, "
                       f"so {', '.join(extra_inputs)} stay empty and every batch fails", len(ctx.inputs))
    if extra_outputs:
        return warned(f"{len(ctx.outputs)} outputs; the validator scores only {ctx.outputs[0].name!r} and ignores "
                      f"{', '.join(extra_outputs)}", len(ctx.outputs))
    return passed(f"one input ({ctx.inputs[0].name!r}) and one output ({ctx.outputs[0].name!r})")


# ---------------------------------------------------------------------------- the input


def check_input_dtype(ctx: CheckContext) -> Finding:
    import onnx

    first = ctx.first_input
    if first.elem_type != onnx.TensorProto.UINT8:
        return problem(f"input is {first.type_name}; the validator always feeds uint8 and every batch fails",
                       first.type_name)
    return passed("input is uint8", "uint8")


def check_input_rank(ctx: CheckContext) -> Finding:
    rank = ctx.first_input.rank
    if rank is None:
        return problem("the input declares no shape; the validator reads H, W (and T) from it")
    if ctx.modality is None:
        return problem(f"input rank {rank}; expected 4 ([B,3,H,W], image) or 5 ([B,T,3,H,W], video)", rank)
    expected = RANK_OF_MODALITY[ctx.modality]
    if rank != expected:
        return problem(f"input rank {rank}, but a {ctx.modality} model takes rank {expected}", rank)
    layout = "[B,3,H,W]" if ctx.modality == "image" else "[B,T,3,H,W]"
    return passed(f"rank {rank}: {ctx.modality} {layout}", rank)


def check_channels(ctx: CheckContext) -> Finding:
    channels = ctx.dim("channels")
    if channels == 3:
        return passed("3 channels in NCHW position", 3)
    shape = _shape_text(ctx.first_input.dims)
    if ctx.first_input.dims[-1] == 3:
        return problem(f"input {shape} is channels-last (NHWC); the validator sends channels first and every batch fails",
                       shape)
    return problem(f"input {shape} has {channels!r} where the validator puts its 3 RGB channels", shape)


def check_input_size(ctx: CheckContext) -> Finding:
    height, width = ctx.dim("height"), ctx.dim("width")
    if not (isinstance(height, int) and isinstance(width, int)):
        return problem(f"H×W is {height or '?'}×{width or '?'} (not fixed integers); the validator will feed "
                       f"{VALIDATOR_DEFAULT_SIZE}×{VALIDATOR_DEFAULT_SIZE}", f"{height}×{width}")
    if (height, width) != (VALIDATOR_DEFAULT_SIZE, VALIDATOR_DEFAULT_SIZE):
        return passed(f"H×W fixed at {height}×{width} (note: not 224; the validator resizes to what the graph declares)",
                      f"{height}×{width}")
    return passed(f"H×W fixed at {height}×{width}", f"{height}×{width}")


def check_batch_axis(ctx: CheckContext) -> Finding:
    batch = ctx.dim("batch")
    if isinstance(batch, int):
        return problem(f"batch fixed to {batch}; the validator sends batches of {ctx.validator_batch} "
                       "(the last one shorter)", batch)
    return passed(f"batch axis symbolic ({batch or 'unnamed'})", str(batch))


def check_frames_axis(ctx: CheckContext) -> Finding:
    frames = ctx.dim("frames")
    if isinstance(frames, int):
        if frames > VALIDATOR_MAX_FRAMES:
            return problem(f"T fixed at {frames}; the validator clamps T to {VALIDATOR_MAX_FRAMES} and every batch fails",
                           frames)
        return passed(f"T fixed at {frames}: the validator sends {frames} frames", frames)
    return passed(f"T symbolic ({frames or 'unnamed'}): the validator sends {VALIDATOR_DEFAULT_FRAMES}", str(frames))


# ---------------------------------------------------------------------------- running it


def check_runs(ctx: CheckContext) -> Finding:
    outcome = ctx.run(ctx.probe_batch)
    shape = _shape_text(outcome.feed_shape)
    if not outcome.ok:
        return problem(f"fails on a uint8 batch {shape}: {outcome.error}", shape)
    return passed(f"runs on uint8 {shape} → output {_shape_text(outcome.output.shape)}", shape)


def _batch_failures(ctx: CheckContext, batch: int, frames: int | None = None) -> str | None:
    outcome = ctx.run(batch, frames)
    label = f"B={batch}" + (f",T={frames}" if frames is not None else "")
    if not outcome.ok:
        return f"{label}: {outcome.error}"
    if outcome.output.ndim == 0 or outcome.output.shape[0] != batch:
        return f"{label}: output {_shape_text(outcome.output.shape)} does not follow the batch"
    return None


def check_batch_runs(ctx: CheckContext) -> Finding:
    batches = PROBE_BATCHES[ctx.modality]
    failures = [f for f in (_batch_failures(ctx, b) for b in batches) if f]
    sizes = ", ".join(str(b) for b in batches)
    if failures:
        return problem(f"batch frozen inside the graph: {failures[0]}" + (f" (+{len(failures) - 1} more)" if len(failures) > 1 else ""),
                       f"{len(batches) - len(failures)}/{len(batches)}")
    return passed(f"runs at B ∈ {{{sizes}}} and the output follows the batch", f"{len(batches)}/{len(batches)}")


def check_frames_runs(ctx: CheckContext) -> Finding:
    frames = ctx.dim("frames")
    if isinstance(frames, int):
        return passed(f"T fixed at {frames}; nothing else to prove")
    failures = [f for f in (_batch_failures(ctx, ctx.probe_batch, t) for t in PROBE_FRAMES) if f]
    counts = ", ".join(str(t) for t in PROBE_FRAMES)
    if failures:
        return problem(f"frames frozen inside the graph: {failures[0]}" + (f" (+{len(failures) - 1} more)" if len(failures) > 1 else ""),
                       f"{len(PROBE_FRAMES) - len(failures)}/{len(PROBE_FRAMES)}")
    return passed(f"runs at T ∈ {{{counts}}}", f"{len(PROBE_FRAMES)}/{len(PROBE_FRAMES)}")


def _probe_output(ctx: CheckContext) -> np.ndarray:
    return ctx.run(ctx.probe_batch).output


def _class_count(ctx: CheckContext) -> int:
    output = _probe_output(ctx)
    return int(math.prod(output.shape[1:])) if output.ndim >= 1 else 1


def check_output_shape(ctx: CheckContext) -> Finding:
    output = _probe_output(ctx)
    shape = _shape_text(output.shape)
    if output.ndim < 2:
        return problem(f"output {shape} has no class axis; each sample gets a single number", shape)
    if output.ndim > 2:
        return warned(f"output {shape}; the validator flattens each row to {_class_count(ctx)} values", shape)
    return passed(f"output [B, K] = {shape}", shape)


def check_class_count(ctx: CheckContext) -> Finding:
    count = _class_count(ctx)
    if count == 1:
        return problem("1 logit: under onnx-2026-02 the validator scores every sample as AI with p = 1", count)
    if count >= 4:
        return problem(f"{count} logits: the validator calls a sample AI when p[0] > 0.5, inverting class 0's meaning",
                       count)
    if count == 0:
        return problem("the output row is empty", count)
    names = ctx.spec.class_names if ctx.spec is not None and ctx.spec.num_classes == count else None
    return passed(f"K = {count}" + (f" ({', '.join(names)})" if names else ", class 0 = real"), count)


def _content_outputs(ctx: CheckContext) -> dict[str, np.ndarray]:
    """Each content probe's output rows (flattened per sample, float64), for probes that ran."""
    out = {}
    for probe in CONTENT_PROBES:
        outcome = ctx.run(ctx.probe_batch, probe=probe)
        if outcome.ok:
            out[probe] = outcome.output.reshape(outcome.output.shape[0], -1).astype(np.float64)
    return out


def check_finite(ctx: CheckContext) -> Finding:
    outputs = _content_outputs(ctx)
    broken = [name for name, rows in outputs.items() if not np.isfinite(rows).all()]
    crashed = [p for p in CONTENT_PROBES if p not in outputs]
    if broken:
        return problem(f"NaN or inf logits on {', '.join(broken)} input(s): those samples score as real with NaN "
                       "Brier/CE and the score collapses", len(broken))
    if crashed:
        return problem(f"the model fails on {', '.join(crashed)} input(s)", len(crashed))
    return passed(f"finite logits on {', '.join(CONTENT_PROBES)} inputs", len(outputs))


def _probabilities(rows: np.ndarray) -> np.ndarray:
    """The validator's probabilities, in float32 like the output it reads: a sigmoid for a single logit
    (read as [1 − p, p]), else a stable softmax."""
    rows = rows.astype(np.float32)
    if rows.shape[1] == 1:
        p_ai = 1.0 / (1.0 + np.exp(-rows))
        return np.concatenate([1.0 - p_ai, p_ai], axis=1)
    shifted = np.exp(rows - rows.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _finite_outputs(ctx: CheckContext) -> dict[str, np.ndarray]:
    return {name: rows for name, rows in _content_outputs(ctx).items() if np.isfinite(rows).all()}


def check_not_softmaxed(ctx: CheckContext) -> Finding:
    outputs = _finite_outputs(ctx)
    if not outputs:
        return skipped("no finite output to examine")
    rows = np.concatenate(list(outputs.values()))
    in_unit_range = bool(((rows >= -1e-6) & (rows <= 1 + 1e-6)).all())
    sums_to_one = bool((np.abs(rows.sum(axis=1) - 1.0) < 1e-4).all())
    if in_unit_range and sums_to_one:
        return problem("outputs are already probabilities (every row in [0, 1], summing to 1); the validator applies "
                       "softmax again (double softmax) and squashes every prediction toward uniform", "Σ=1")
    return passed("outputs are logits, not probabilities")


def check_responsive(ctx: CheckContext) -> Finding:
    outputs = _finite_outputs(ctx)
    if len(outputs) < 2:
        return skipped("fewer than two finite outputs to compare")
    probabilities = np.concatenate([_probabilities(rows) for rows in outputs.values()])
    spread = float((probabilities.max(axis=0) - probabilities.min(axis=0)).max())
    if spread < CONSTANT_SPREAD:
        return problem(f"probabilities never move (spread {spread:.2g}) across {', '.join(outputs)} inputs: "
                       "a constant model", f"{spread:.3g}")
    return passed(f"probabilities move across very different inputs (spread {spread:.3f})", round(spread, 6))


# ---------------------------------------------------------------------------- the kit's spec


def check_spec_match(ctx: CheckContext) -> Finding:
    spec = ctx.spec
    if spec is None:
        return skipped("no kit spec (a foreign model): nothing to compare")
    wrong = []
    if spec.modality != ctx.modality:
        wrong.append(f"modality: spec says {spec.modality}, the graph is {ctx.modality}")
    height, width = ctx.dim("height"), ctx.dim("width")
    if (height, width) != (spec.height, spec.width):
        wrong.append(f"size: spec says {spec.height}×{spec.width}, the graph declares {height}×{width}")
    if spec.modality == "video" and ctx.modality == "video":
        frames = ctx.dim("frames")
        sent = frames if isinstance(frames, int) else VALIDATOR_DEFAULT_FRAMES
        if spec.frames != sent:
            wrong.append(f"frames: spec says {spec.frames}, the validator will send {sent}"
                         + ("" if isinstance(frames, int) else " (T is symbolic)"))
    if spec.task == "classify" and ctx.run(ctx.probe_batch).ok and _class_count(ctx) != spec.num_classes:
        wrong.append(f"classes: spec lists {spec.num_classes}, the graph emits {_class_count(ctx)}")
    manifest_spec = (ctx.artifact.manifest or {}).get("spec")
    if manifest_spec and ctx.metadata_spec is not None:
        manifest_order = list(manifest_spec.get("class_names", []))
        if manifest_order != list(ctx.metadata_spec.class_names):
            wrong.append(f"class order: manifest.json says {manifest_order}, "
                         f"the model's metadata says {list(ctx.metadata_spec.class_names)}")
    if wrong:
        return problem("; ".join(wrong), len(wrong))
    return passed(f"graph matches the spec {spec.name!r} (size, frames, classes, order)")


# ---------------------------------------------------------------------------- what the build recorded (both formats)


def check_head_trained(ctx: CheckContext) -> Finding:
    manifest = ctx.artifact.manifest
    if manifest is None:
        return skipped("no kit manifest: nothing records whether the head was trained")
    trained = manifest.get("head_trained")
    if trained is None:
        return skipped("the manifest does not record head_trained (built before the kit recorded it)")
    if trained is False:
        return problem("manifest.json records head_trained: false: the class logits come from random weights, so the "
                       "model scores about chance and burns the hotkey's one submission", "untrained")
    return passed("the build recorded a trained head", "trained")


def check_stale_package(ctx: CheckContext) -> Finding:
    if ctx.artifact.container == "zip":
        return skipped("a zip is checked as it is")
    found = [s for s in package_states(package_dir_for(ctx.artifact)) if s.packages(ctx.artifact)]
    states = [s for s in found if s.stale and s.format in (None, ctx.artifact.format)]
    if states:
        first = states[0]
        more = f" (+{len(states) - 1} more)" if len(states) > 1 else ""
        return problem(f"{first.zip_path} does not hold this model: {first.stale}{more}", len(states))
    current = [s for s in found if s.format == ctx.artifact.format]
    if current:
        return passed(f"{current[0].zip_path.name} holds this model", current[0].zip_path.name)
    return passed("no earlier submission zip beside the model")


# ---------------------------------------------------------------------------- size and speed


def _tensor_bytes(tensor) -> int:
    from onnx import helper

    try:
        itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    except (KeyError, TypeError, ValueError):
        itemsize = 1
    return int(math.prod(tensor.dims)) * itemsize


def check_large_constants(ctx: CheckContext) -> Finding:
    import onnx

    integer_types = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.INT16, onnx.TensorProto.UINT16,
                     onnx.TensorProto.INT32, onnx.TensorProto.UINT32, onnx.TensorProto.INT64, onnx.TensorProto.UINT64}
    consumers: dict[str, set[str]] = {}
    gathered: set[str] = set()
    for node in _all_nodes(ctx):
        for position, name in enumerate(node.input):
            consumers.setdefault(name, set()).add(node.op_type)
            if position == 0 and node.op_type in GATHER_OPS:
                gathered.add(name)
    suspects = []
    for name, tensor in _all_tensors(ctx):
        size = _tensor_bytes(tensor)
        if size < LOOKUP_TABLE_MIN_BYTES:
            continue
        if name in gathered:
            suspects.append((size, f"{name} ({_mib(size)}, indexed by Gather)"))
        elif tensor.data_type in integer_types and not consumers.get(name, set()) & QUANTISED_WEIGHT_OPS:
            suspects.append((size, f"{name} ({_mib(size)}, {onnx.TensorProto.DataType.Name(tensor.data_type).lower()})"))
    if suspects:
        suspects.sort(reverse=True)
        return problem(f"{len(suspects)} constant(s) look like lookup tables: {suspects[0][1]}; the network scans "
                       "submissions for memorised tables", _mib(suspects[0][0]))
    return passed(f"no lookup-table-like constants (≥ {_mib(LOOKUP_TABLE_MIN_BYTES)} integer or gathered)")


def check_file_size(ctx: CheckContext) -> Finding:
    size = len(ctx.artifact.onnx_bytes)
    if size > LARGE_FILE_BYTES:
        return problem(f"{_mib(size)}: slow to upload and load, and near protobuf's 2 GiB limit", _mib(size))
    return passed(f"{_mib(size)} .onnx", _mib(size))


def check_latency(ctx: CheckContext) -> Finding:
    if ctx.latency == "off":
        return skipped("not timed (latency measurement switched off)")
    batch = ctx.probe_batch if isinstance(ctx.dim("batch"), int) else ctx.validator_batch
    if not ctx.run(batch).ok:
        batch = ctx.probe_batch
    frames = f", T={ctx.probe_frames}" if ctx.probe_frames else ""
    where = f"on this CPU ({ctx.threads} intra-op thread(s)"
    if ctx.latency == "quick":  # the run the batch proof made: no forward spent on a figure nobody scores
        outcome = ctx.run(batch)
        if not outcome.ok:
            return skipped(f"not timed: the model does not run at batch {batch}")
        per_sample_ms = outcome.seconds * 1000 / batch
        return passed(f"{per_sample_ms:.3g} ms/sample at batch {batch}{frames} {where}, one run, the batch proof's; "
                      "--latency for the median of 3 after a warm-up); validators use GPUs", round(per_sample_ms, 3))
    times = ctx.time_runs(batch, TIMING_REPEATS)
    if not times:
        return skipped(f"not timed: the model does not run at batch {batch}")
    per_sample_ms = statistics.median(times) * 1000 / batch
    return passed(f"{per_sample_ms:.3g} ms/sample at batch {batch}{frames} {where}, median of {len(times)}); "
                  "validators use GPUs", round(per_sample_ms, 3))


def _shape_text(dims) -> str:
    return "[" + ",".join("?" if d is None else str(d) for d in dims) + "]"


def _mib(size: int) -> str:
    return f"{size / 1024**2:.1f} MiB" if size >= 1024**2 else f"{size / 1024:.1f} KiB"


_STATIC_INPUT = ("single-io",)
_RUNNABLE = ("loads", "single-io", "input-dtype", "input-rank", "channels")

RULES: tuple[Rule, ...] = (
    Rule("ir-version", "fail", "ONNX IR version loadable by --ort-min",
         "onnxruntime refuses a model whose IR version is newer than it knows, before looking at any op",
         "save with an older IR version: set model.ir_version (10 for onnxruntime 1.22) and re-save, or export with `kit build`",
         check_ir_version),
    Rule("opset", "fail", "ai.onnx opset supported by --ort-min",
         "validators pinned onnxruntime ≥ 1.22, which loads opset ≤ 22 and refuses 23",
         "re-export with opset_version ≤ 22 (onnx.version_converter can lower an existing file)", check_opset),
    Rule("default-domain", "fail", "only default-domain (ai.onnx) ops",
         "the validator's plain onnxruntime has no custom-op libraries; unknown ops stop the model loading",
         "replace custom ops with standard ONNX ops (or export without the custom symbolic)", check_default_domain),
    Rule("external-data", "fail", "all tensors stored inside the .onnx file",
         "the submission zip carries exactly one file, so weights saved beside the model are lost",
         "re-save with onnx.save(model, path, save_as_external_data=False) (models under 2 GiB)", check_external_data),
    Rule("loads", "fail", "loads in onnxruntime with ORT_ENABLE_ALL",
         "the validator opens the model this way, with no retries; a load error scores nothing",
         "run the model in onnxruntime yourself and fix the error shown", check_loads, needs=("default-domain",)),
    Rule("single-io", "fail", "one input and one output",
         "the validator feeds only the first input and reads only the first output",
         "remove extra inputs (or give them initializer defaults) and extra outputs", check_single_io),
    Rule("input-dtype", "fail", "input dtype uint8",
         "the validator always feeds uint8 [0, 255], whatever the graph declares",
         "take uint8 and cast inside the graph: x.float() / 255 then normalise (kit build does this)",
         check_input_dtype, needs=_STATIC_INPUT),
    Rule("input-rank", "fail", "rank 4 (image) or 5 (video)",
         "the validator reads H, W and T from fixed positions of the first input",
         "take [B,3,H,W] for images or [B,T,3,H,W] for video", check_input_rank, needs=_STATIC_INPUT),
    Rule("channels", "fail", "3 channels first: NCHW / NTCHW",
         "the validator never checks layout; a channels-last model gets nonsense sizes and fails every batch",
         "permute inside the graph: take [B,3,H,W] (or [B,T,3,H,W]) and transpose to your layout",
         check_channels, needs=("input-rank",)),
    Rule("input-size", "fail", "H and W fixed integers",
         "if either H or W is symbolic the validator feeds 224×224, whatever the model was trained on",
         "export with fixed H and W (only the batch and frame axes dynamic)", check_input_size, needs=("input-rank",)),
    Rule("batch-axis", "fail", "batch axis symbolic",
         "the validator sends 32 images or 4 videos per batch, and a shorter last batch",
         "export with dynamic_axes / dynamic_shapes on axis 0", check_batch_axis, needs=("input-rank",)),
    Rule("frames-axis", "fail", "T fixed ≤ 64, or symbolic",
         "the validator sends the graph's T, or 16 when symbolic, and clamps T to 64",
         "fix T at the frames you train on (≤ 64), or make it symbolic and resample inside the graph",
         check_frames_axis, needs=("input-rank",), modality="video"),
    Rule("runs", "fail", "runs on a uint8 batch shaped as the validator sends",
         "every sample of a model that errors is lost", "run the model in onnxruntime on that shape and fix the error",
         check_runs, needs=_RUNNABLE),
    Rule("batch-runs", "fail", "proven at B ∈ {1,2,4,32} (image) / {1,4} (video)",
         "a batch frozen inside the graph (a Reshape/Expand with a constant batch) fails every batch the validator sends",
         "replace constant batch sizes inside the graph with -1 or shape-derived values; export with a dummy batch ≥ 2",
         check_batch_runs, needs=("runs", "batch-axis")),
    Rule("frames-runs", "fail", "symbolic T proven at T ∈ {16,1,8,33,64}",
         "a frame count frozen inside the graph fails on the validator's T = 16 or on short clips",
         "resample any T to the backbone's frames inside the graph (kit build's uniform frame mapping)",
         check_frames_runs, needs=("runs", "frames-axis"), modality="video"),
    Rule("output-shape", "fail", "output [B, K] following the batch",
         "the validator takes row i of output 0 as sample i's logits", "emit one row of logits per sample: [B, K]",
         check_output_shape, needs=("runs",)),
    Rule("class-count", "fail", "K ∈ {2, 3} logits",
         "1 logit is scored 'always AI, p = 1' under onnx-2026-02; ≥ 4 reads p[0] > 0.5 as AI",
         "emit 2 logits [real, ai] or 3 [real, synthetic, semisynthetic]; for 1 logit z emit [0, z]",
         check_class_count, needs=("runs",)),
    Rule("finite", "fail", "finite logits on random, all-0, all-255 and mid-grey inputs",
         "NaN logits make every probability NaN: predicted real, Brier and CE NaN, the score at its floor",
         "guard divisions (a per-sample std is 0 on a flat frame): add an epsilon, clamp, avoid log(0)",
         check_finite, needs=("runs",)),
    Rule("not-softmaxed", "fail", "outputs are logits, not probabilities",
         "the validator applies softmax itself; probabilities are squashed a second time and ruin calibration",
         "remove the final softmax/sigmoid from the exported graph", check_not_softmaxed,
         needs=("runs", "class-count")),
    Rule("responsive", "warn", "probabilities move across very different inputs",
         "a constant model scores MCC 0 whatever the data",
         "check the weights loaded and the normalisation is right (a model of zeros, or an input that is never used)",
         check_responsive, needs=("runs", "class-count")),
    Rule("spec-match", "fail", "graph agrees with the kit spec (size, frames, classes, order)",
         "the spec is what bench, the manifest and the submission record claim about the model",
         "rebuild with `kit build` so the graph and the manifest are written together", check_spec_match,
         needs=("input-rank",)),
    Rule("head-trained", "fail", "the build recorded a trained classification head",
         "a head with random weights scores about chance, and each hotkey has one counted submission for life",
         "train it (`kit train`, then `kit build --model runs/<modality>`) or build with --weights; "
         "`kit package --allow-untrained` only if you mean it", check_head_trained),
    Rule("stale-package", "warn", "no zip beside the model that holds an older model",
         "the zip a miner pushes must be the model that was checked; a forced rebuild leaves the old zip's model behind",
         "run `kit package --force` on the model to replace the zip and its record", check_stale_package),
    Rule("large-constants", "warn", "no large lookup-table-like constants",
         "the network scans ONNX files for memorised tables (integer arrays or Gather-indexed blocks)",
         "keep weights as float tensors used by the network; drop tables keyed on inputs", check_large_constants),
    Rule("file-size", "warn", "file size", "the model is uploaded, downloaded and loaded by every validator",
         "export in float16 or prune if it must shrink", check_file_size),
    Rule("latency", "info", "time per sample at the validator's batch (this machine; one run, or --latency)",
         "the results record inference time per sample", "profile the graph; large T or H×W dominate",
         check_latency, needs=("runs",)),
)

RULES_BY_ID = {rule.id: rule for rule in RULES}
