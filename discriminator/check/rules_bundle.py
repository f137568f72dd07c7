"""The checker's rules for a safetensors bundle, as one table: what each checks, why the network cares, the fix.

Every statement of current-contract §1–§3 that a bundle can get wrong is a row of
`BUNDLE_RULES`, walked in order like the ONNX table (`rules.py`), with the same
`Rule`/`Finding` types and the same meaning of `needs` and `severity`. Files, the
YAML and model.py are read statically first; nothing runs unless the static rules
that the network applies before running pass (a model.py the network would refuse is
never executed here either). Then the bundle is loaded and run in a worker process
(see bundle_context.py) at the evaluator's batch sizes in the configured dtype. The
behaviour rules are the ONNX table's own functions (finite, not-softmaxed, responsive,
head-trained, stale-package, latency), so both formats are judged the same way.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import struct
from dataclasses import replace

from discriminator.artifact import BUNDLE_CONFIG, BUNDLE_MODEL, BUNDLE_OPTIONAL
from discriminator.bundle.analyzer import find_network_reaches
from discriminator.check.bundle_context import BundleContext, describe_load_error
from discriminator.check.rules import RULES_BY_ID, Finding, Rule, passed, problem, skipped, warned
from validator_sim.runtime import EVALUATOR, kit_environment_notes
from validator_sim.bundle_runtime import DEFAULT_FRAMES, DEFAULT_NUM_CLASSES, DEFAULT_RESIZE, DTYPE_ALIASES, MAX_FRAMES

#: Batches proven by running: the evaluator's own (32 image, 4 video) and shorter last batches.
BUNDLE_PROBE_BATCHES = {"image": (32, 1, 5), "video": (4, 1, 3)}
#: Classes the network scores for image and video: [real, synthetic, semisynthetic] (current-contract §2, §5).
NETWORK_CLASSES = 3
#: model_config.yaml keys the evaluator reads (current-contract §2; name, version, modality and normalize are
#: tolerated and never read). Every key under `model:` is passed to load_model, so none there is unknown.
TOP_LEVEL_KEYS = ("dtype", "preprocessing", "model", "name", "version", "modality")
PREPROCESSING_KEYS = ("resize", "num_frames", "max_frames", "frame_rate", "normalize")
#: The keys under `model:` the evaluator reads itself (all of them, these included, also go to load_model).
MODEL_KEYS_READ = ("num_classes", "weights_file")
#: Violations listed one per line in the static-analysis row (the rest are counted).
MAX_VIOLATIONS_SHOWN = 8
#: Names of sharded safetensors checkpoints (transformers' save_pretrained with max_shard_size).
SHARD_PATTERN = re.compile(r"-\d{5}-of-\d{5}\.safetensors$")
SHARD_INDEX_SUFFIX = ".safetensors.index.json"
#: Files that look like weights (a second one beside the named file is likely the one the miner meant).
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
#: A safetensors header larger than this is not a real header (the format caps it at 100 MB).
MAX_SAFETENSORS_HEADER = 100 * 1024**2
SAFETENSORS_DTYPES = frozenset({"BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32",
                                "F32", "F64", "I64", "U64"})


# ---------------------------------------------------------------------------- files


def check_bundle_files(ctx: BundleContext) -> Finding:
    missing = [name for name in (BUNDLE_CONFIG, BUNDLE_MODEL) if ctx.member(name) is None]
    if missing:
        return problem(f"no {' and no '.join(missing)} at the bundle's root; the evaluator looks for "
                       f"{BUNDLE_CONFIG} and {BUNDLE_MODEL} there and the load fails", len(missing))
    return passed(f"{BUNDLE_CONFIG} and {BUNDLE_MODEL} at the root")


def check_weights_file(ctx: BundleContext) -> Finding:
    raw, _ = ctx.raw_config
    named = ctx.section("model").get("weights_file", "model.safetensors") if raw is not None else ctx.weights_name
    if not isinstance(named, str) or not named or "/" in named or "\\" in named:
        return problem(f"model.weights_file is {named!r}; it must name a file at the bundle's root", str(named))
    data = ctx.member(named)
    if data is None:
        present = [n for n in ctx.names if n.endswith(WEIGHT_SUFFIXES)]
        also = f" (the bundle has {', '.join(present)})" if present else ""
        return problem(f"{named}, named by model.weights_file{'' if 'weights_file' in ctx.section('model') else ' (its default)'}, "
                       f"is not in the bundle{also}", named)
    header_problem, tensors = _safetensors_header(data)
    if header_problem:
        return problem(f"{named} is not a readable safetensors file: {header_problem}", named)
    dtypes = sorted({entry.get("dtype", "?") for entry in tensors.values()})
    return passed(f"{named}: {len(tensors)} tensor(s), {', '.join(dtypes) or 'no'} weights, {_mib(len(data))}",
                  _mib(len(data)))


def _safetensors_header(data: bytes) -> tuple[str | None, dict]:
    """(problem or None, {tensor name: entry}) from a safetensors file's header, read without torch."""
    if len(data) < 8:
        return f"{len(data)} bytes, shorter than the 8-byte header length", {}
    (length,) = struct.unpack("<Q", data[:8])
    if length > MAX_SAFETENSORS_HEADER or 8 + length > len(data):
        return f"its header claims {length} bytes in a {len(data)}-byte file (truncated or not safetensors)", {}
    try:
        header = json.loads(data[8:8 + length])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"its header is not JSON ({type(exc).__name__})", {}
    if not isinstance(header, dict):
        return "its header is not a JSON object", {}
    tensors = {name: entry for name, entry in header.items() if name != "__metadata__"}
    body = len(data) - 8 - length
    for name, entry in tensors.items():
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and 0 <= offsets[0] <= offsets[1] <= body):
            return f"tensor {name!r} points outside the file", {}
        if entry.get("dtype") not in SAFETENSORS_DTYPES:
            return f"tensor {name!r} has an unknown dtype {entry.get('dtype')!r}", {}
    return None, tensors


def check_sharded_weights(ctx: BundleContext) -> Finding:
    shards = [n for n in ctx.names if _is_shard(n)]
    if shards:
        return problem(f"sharded weights ({', '.join(shards[:3])}{' …' if len(shards) > 3 else ''}): the evaluator "
                       f"loads one weights file and never reads the others", len(shards))
    return passed("one weights file (not sharded)")


def _is_shard(name: str) -> bool:
    return bool(SHARD_PATTERN.search(name)) or name.endswith(SHARD_INDEX_SUFFIX)


def check_extra_files(ctx: BundleContext) -> Finding:
    needed = {BUNDLE_CONFIG, BUNDLE_MODEL, ctx.weights_name, *BUNDLE_OPTIONAL}
    if ctx.artifact.container == "zip":
        extra = [n for n in ctx.names if n not in needed and not _is_shard(n)]
        if extra:
            return problem(f"{len(extra)} file(s) the evaluator never reads: {_listing(extra)}; they are uploaded "
                           "for nothing (and a second weights file is not the one loaded)", len(extra))
        return passed("nothing beyond the files the evaluator reads")
    extra = [n for n in ctx.artifact.extra_files if not _is_shard(n)]  # shards: sharded-weights
    unread_weights = [n for n in extra if n.endswith(WEIGHT_SUFFIXES)]
    if unread_weights:
        return problem(f"{_listing(unread_weights)} beside the bundle: the evaluator loads only {ctx.weights_name} "
                       "(model.weights_file) and kit package leaves these out", len(unread_weights))
    if extra:
        return passed(f"kit package leaves out {len(extra)} other file(s): {_listing(extra)}", len(extra))
    return passed("nothing beyond the files the evaluator reads")


# ---------------------------------------------------------------------------- model_config.yaml


def check_config_yaml(ctx: BundleContext) -> Finding:
    raw, error = ctx.raw_config
    if error:
        return problem(f"{error}; the evaluator cannot read it and the load fails")
    return passed(f"{BUNDLE_CONFIG} parses")


def check_config_keys(ctx: BundleContext) -> Finding:
    raw, _ = ctx.raw_config
    unknown = [_unknown_key(key, TOP_LEVEL_KEYS) for key in raw if key not in TOP_LEVEL_KEYS]
    unknown += [_unknown_key(key, PREPROCESSING_KEYS, "preprocessing.")
                for key in ctx.section("preprocessing") if key not in PREPROCESSING_KEYS]
    model = ctx.section("model")
    misplaced = []
    for key in model:
        close = difflib.get_close_matches(str(key), MODEL_KEYS_READ, n=1, cutoff=0.75)
        if key not in MODEL_KEYS_READ and close:
            misplaced.append(f"model.{key} is passed to load_model as a keyword; did you mean model.{close[0]}, which "
                             "the evaluator reads itself?")
    if "dtype" in model:
        where = "and the top-level dtype decides" if "dtype" in raw else "and the model runs in float32 (the default)"
        misplaced.append(f"model.dtype: {model['dtype']!r} is passed to load_model as a keyword, not used as the "
                         f"evaluator's dtype, {where}; put `dtype:` at the top level")
    for key in ("resize", "num_frames", "max_frames", "frame_rate"):
        if key in model:
            misplaced.append(f"model.{key} is passed to load_model as a keyword; the evaluator reads it only under "
                             "preprocessing:")
    found = unknown + misplaced
    if found:
        return warned("; ".join(found), len(found))
    keys = ", ".join(sorted(k for k in model if k not in ("num_classes", "weights_file")))
    extra = f"; model: keys passed to load_model: {keys}" if keys else ""
    return passed(f"every key is one the evaluator reads{extra}")


def _unknown_key(key: object, known: tuple[str, ...], prefix: str = "") -> str:
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
    hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
    return f"{prefix}{key} is not a key the evaluator reads{hint}"


def check_config_dtype(ctx: BundleContext) -> Finding:
    raw, _ = ctx.raw_config
    dtype = raw.get("dtype", "float32")
    canonical = DTYPE_ALIASES.get(dtype.lower()) if isinstance(dtype, str) else None
    if canonical is None:
        return problem(f"dtype {dtype!r} is not one the evaluator accepts ({', '.join(DTYPE_ALIASES)}); the load fails",
                       str(dtype))
    where = "" if "dtype" in raw else " (the default)"
    return passed(f"dtype {canonical}{where}: the evaluator moves the model to it", canonical)


def check_config_resize(ctx: BundleContext) -> Finding:
    preprocessing = ctx.section("preprocessing")
    if "resize" not in preprocessing:
        return passed(f"no preprocessing.resize: the evaluator sends {DEFAULT_RESIZE[0]}×{DEFAULT_RESIZE[1]}",
                      f"{DEFAULT_RESIZE[0]}×{DEFAULT_RESIZE[1]}")
    resize = preprocessing["resize"]
    ok = isinstance(resize, list) and len(resize) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in resize)
    if not ok:
        return problem(f"preprocessing.resize is {resize!r}; the evaluator needs exactly two positive ints [H, W] "
                       "and the load fails", str(resize))
    return passed(f"the evaluator sends {resize[0]}×{resize[1]}", f"{resize[0]}×{resize[1]}")


def check_config_frames(ctx: BundleContext) -> Finding:
    preprocessing = ctx.section("preprocessing")
    key = "num_frames" if "num_frames" in preprocessing else ("max_frames" if "max_frames" in preprocessing else None)
    if key is None:
        return passed(f"no num_frames: the evaluator sends {DEFAULT_FRAMES} frames", DEFAULT_FRAMES)
    frames = preprocessing[key]
    if not isinstance(frames, int) or isinstance(frames, bool) or not 1 <= frames <= MAX_FRAMES:
        return problem(f"preprocessing.{key} is {frames!r}; the evaluator needs an int in 1–{MAX_FRAMES} and the load fails",
                       str(frames))
    if "resize" not in preprocessing:
        return problem(f"preprocessing.{key}: {frames} without preprocessing.resize is silently ignored: the evaluator "
                       f"reads T only together with resize and sends {DEFAULT_FRAMES} frames", frames)
    older = " (max_frames: the older spelling)" if key == "max_frames" else ""
    return passed(f"the evaluator sends exactly {frames} frames{older}", frames)


def check_config_frame_rate(ctx: BundleContext) -> Finding:
    preprocessing = ctx.section("preprocessing")
    if preprocessing.get("frame_rate") is None:
        return passed("no frame_rate: consecutive frames from frame 0")
    rate = preprocessing["frame_rate"]
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
        return problem(f"preprocessing.frame_rate is {rate!r}; the evaluator needs a finite number > 0 and the load fails",
                       str(rate))
    return passed(f"frames sampled at {rate:g} fps (stride round(fps / {rate:g}) from frame 0)", float(rate))


def check_config_classes(ctx: BundleContext) -> Finding:
    model = ctx.section("model")
    classes = model.get("num_classes", DEFAULT_NUM_CLASSES)
    if not isinstance(classes, int) or isinstance(classes, bool) or classes < 1:
        return problem(f"model.num_classes is {classes!r}; the evaluator needs a positive int and the load fails",
                       str(classes))
    if classes == NETWORK_CLASSES:
        return passed(f"model.num_classes: {NETWORK_CLASSES} (real, synthetic, semisynthetic)", NETWORK_CLASSES)
    said = f"model.num_classes is {classes}" if "num_classes" in model else \
        f"model.num_classes is missing, so the evaluator uses its default {DEFAULT_NUM_CLASSES}"
    width = {1: "a 1-logit head", 2: "a 2-logit head"}.get(classes, f"a {classes}-logit head")
    return warned(f"{said}, so load_model is given num_classes={classes}: the network loads and scores the model "
                  f"whatever its head's width (bundle-classes), and {width} is scored, {classes_cost(classes)}", classes)


def classes_cost(count: int) -> str:
    """What a head of `count` logits costs under today's 3-class scoring (one sentence end, shared by two rows)."""
    if count in (1, 2):
        return ("but a semisynthetic sample can never be predicted right: the multiclass reading pads the head "
                "with zeros, and the entrance exam's ≥ 80 % 3-class accuracy counts those samples as wrong")
    return f"truncated to {NETWORK_CLASSES} classes: the probability of every class past the third is lost"


# ---------------------------------------------------------------------------- model.py, statically


def check_network_reach(ctx: BundleContext) -> Finding:
    if ctx.model_tree is None:
        return skipped("model.py does not parse (see static-analysis)")
    reaches = find_network_reaches(ctx.model_source)
    if reaches:
        shown = "".join(f"\n{v.where} {v.message}" for v in reaches[:MAX_VIOLATIONS_SHOWN])
        return warned(f"{len(reaches)} place(s) that download when they run; the evaluator has no network, so a "
                      f"load that reaches one fails:{shown}", len(reaches))
    return passed("no hub id, URL or pretrained download in model.py")


def check_static_analysis(ctx: BundleContext) -> Finding:
    violations = ctx.violations
    if violations:
        shown = "".join(f"\n{v.where} {v.message} — {v.fix}" for v in violations[:MAX_VIOLATIONS_SHOWN])
        more = f"\n+{len(violations) - MAX_VIOLATIONS_SHOWN} more" if len(violations) > MAX_VIOLATIONS_SHOWN else ""
        return problem(f"{len(violations)} violation(s) the network rejects the submission for:{shown}{more}",
                       len(violations))
    return passed("imports only from the allowlist; no blocked import, call or submodule")


def check_load_model_signature(ctx: BundleContext) -> Finding:
    if ctx.model_tree is None:
        return skipped("model.py does not parse (see static-analysis)")
    signature = ctx.load_model_signature()
    if signature is None:
        return problem("model.py defines no top-level `def load_model(...)`; the evaluator calls load_model and the load fails")
    keywords = {k: v for k, v in ctx.section("model").items() if k != "weights_file"}
    keywords.setdefault("num_classes", DEFAULT_NUM_CLASSES)
    written = f"load_model{signature}".replace("=None", "=…")
    try:
        signature.bind("weights_path", **keywords)
        return passed(f"{written} binds (weights_path, {', '.join(sorted(keywords))})")
    except TypeError:
        pass
    try:
        signature.bind("weights_path", num_classes=keywords["num_classes"])
    except TypeError:
        return problem(f"{written} accepts neither the model: keys ({', '.join(sorted(keywords))}) nor num_classes "
                       "alone; the evaluator cannot call it")
    dropped = sorted(k for k in keywords if k != "num_classes")
    return problem(f"{written} does not accept model.{', model.'.join(dropped)}: the evaluator then calls it with "
                   "num_classes alone and those keys are silently dropped", len(dropped))


# ---------------------------------------------------------------------------- loading and running


def check_bundle_loads(ctx: BundleContext) -> Finding:
    worker, error = ctx.load()
    if worker is None:
        return problem(describe_load_error(error, ctx.runtime_record()["kind"]), error.stage)
    info = worker.info
    config = info["config"]
    dtype_note = "" if info["param_dtype"] == config["dtype"] else f" (config dtype {config['dtype']})"
    return passed(f"loads in a fresh python -I as custom_model: {info['module_class']} with {info['param_dtype']} "
                  f"parameters{dtype_note} on {info['device']}, in {ctx.seconds_to_load:.1f} s", info["module_class"])


def check_bundle_runs(ctx: BundleContext) -> Finding:
    outcome = ctx.run(ctx.probe_batch)
    shape = _shape_text(outcome.feed_shape)
    if not outcome.ok and outcome.stage != "output":
        return problem(f"fails on a uint8 batch {shape}: {outcome.error}", outcome.stage)
    dtype = ctx.loaded_info["config"]["dtype"]
    result = _shape_text(outcome.output.shape) if outcome.ok else "an output examined by output-format"
    return passed(f"runs on uint8 {shape} in {dtype} → {result}", shape)


def check_output_format(ctx: BundleContext) -> Finding:
    outcome = ctx.run(ctx.probe_batch)
    if outcome.stage == "output":
        return problem(f"the evaluator cannot read the output: {outcome.error}")
    return passed(f"read as the evaluator does (tensor, .logits, dict or 1-tuple) → float32 {_shape_text(outcome.output.shape)}")


def check_bundle_batches(ctx: BundleContext) -> Finding:
    batches = BUNDLE_PROBE_BATCHES[ctx.require_modality()]
    failures = []
    for batch in batches:
        outcome = ctx.run(batch)
        if not outcome.ok:
            failures.append(f"B={batch}: {outcome.error}")
    sizes = ", ".join(str(b) for b in batches)
    if failures:
        return problem(f"{failures[0]}" + (f" (+{len(failures) - 1} more)" if len(failures) > 1 else ""),
                       f"{len(batches) - len(failures)}/{len(batches)}")
    return passed(f"runs at B ∈ {{{sizes}}} and the output batch equals the input batch", f"{len(batches)}/{len(batches)}")


def check_bundle_classes(ctx: BundleContext) -> Finding:
    output = ctx.run(ctx.probe_batch).output
    count = int(output.shape[-1])
    configured = ctx.loaded_info["config"]["num_classes"]
    if count == NETWORK_CLASSES:
        return passed(f"K = {count} logits: real, synthetic, semisynthetic", count)
    what = {1: "1 logit (read through a sigmoid as p(AI))", 2: "2 logits [real, AI]"}.get(count, f"{count} logits")
    mismatch = f" (model.num_classes says {configured})" if configured != count else ""
    return problem(f"{what}{mismatch}: the network scores it, {classes_cost(count)}", count)


def check_runtime(ctx: BundleContext) -> Finding:
    record = ctx.runtime_record()
    versions = record.get("versions") or {}
    held = ", ".join(f"{name} {version}" for name, version in versions.items() if version)
    notes = "".join(f"; {note}" for note in record.get("notes") or ())
    if record["kind"] == "kit":
        notes += "".join(f"; {note}" for note in kit_environment_notes(versions, []))
        differences = "; ".join(record["drift"]) or "none of the pinned versions differ"
        return warned(f"ran under the kit's own environment, not the evaluator's ({differences}){notes} — "
                      f"`kit runtime install` makes the evaluator's runtime once, and every check then runs in it",
                      "kit")
    if record["drift"]:
        return warned(f"ran under {record['label']}, which differs from {EVALUATOR}: {'; '.join(record['drift'])}"
                      f"{notes}", record["kind"])
    return passed(f"ran under {record['label']}: Python {record.get('python')}, {held}{notes}", record["kind"])


def check_bundle_spec_match(ctx: BundleContext) -> Finding:
    spec = ctx.spec
    if spec is None:
        return skipped("no kit spec (a foreign bundle): nothing to compare")
    config = ctx.loaded_info["config"]
    wrong = []
    if spec.modality != ctx.modality:
        wrong.append(f"modality: spec says {spec.modality}, checked as {ctx.modality}")
    if (config["height"], config["width"]) != (spec.height, spec.width):
        wrong.append(f"size: spec says {spec.height}×{spec.width}, the evaluator sends {config['height']}×{config['width']}")
    if spec.modality == "video" and config["num_frames"] is not None and config["num_frames"] != spec.frames:
        wrong.append(f"frames: spec says {spec.frames}, the evaluator sends {config['num_frames']}")
    outcome = ctx.run(ctx.probe_batch)
    if spec.task == "classify" and outcome.ok and outcome.output.shape[-1] != spec.num_classes:
        wrong.append(f"classes: spec lists {spec.num_classes}, model.py emits {outcome.output.shape[-1]}")
    if wrong:
        return problem("; ".join(wrong), len(wrong))
    return passed(f"model_config.yaml and the outputs match the spec {spec.name!r} (size, frames, classes)")


def _shape_text(dims) -> str:
    return "[" + ",".join(str(d) for d in dims) + "]"


def _listing(names: list[str]) -> str:
    return ", ".join(names[:4]) + (" …" if len(names) > 4 else "")


def _mib(size: int) -> str:
    return f"{size / 1024**2:.1f} MiB" if size >= 1024**2 else f"{size / 1024:.1f} KiB"


def _shared(rule_id: str, needs: tuple[str, ...]) -> Rule:
    """A row of the ONNX table that judges behaviour, reused as is with this table's prerequisites."""
    return replace(RULES_BY_ID[rule_id], needs=needs)


_CONFIG = ("bundle-files", "config-yaml")
#: What must pass before anything runs: the network's own checks before it imports model.py.
_LOADABLE = ("bundle-files", "weights-file", "sharded-weights", "config-yaml", "config-dtype", "config-resize",
             "config-frames", "config-frame-rate", "static-analysis", "load-model-signature")
_RUNNABLE = ("bundle-loads", "bundle-runs")
_OUTPUTS = ("bundle-loads", "bundle-runs", "output-format")

BUNDLE_RULES: tuple[Rule, ...] = (
    Rule("bundle-files", "fail", f"{BUNDLE_CONFIG} and {BUNDLE_MODEL} at the root",
         "the server unzips the submission and the evaluator loads those two files from the folder's root",
         f"put {BUNDLE_CONFIG}, {BUNDLE_MODEL} and the weights at the top of the folder or zip (kit package does)",
         check_bundle_files),
    Rule("weights-file", "fail", "the weights file named by model.weights_file exists and is safetensors",
         "load_model is given that path; a missing or unreadable file fails the load",
         "save the weights with safetensors.torch.save_file(state_dict, 'model.safetensors') and name that file in "
         "model.weights_file (or leave the key out for the default)", check_weights_file, needs=("bundle-files",)),
    Rule("sharded-weights", "fail", "one weights file, not shards",
         "the evaluator passes load_model one file; sharded checkpoints are not supported",
         "save one file: model.save_pretrained(dir, max_shard_size='100GB') or safetensors.torch.save_file",
         check_sharded_weights),
    Rule("extra-files", "warn", "no files the evaluator silently ignores",
         "only model_config.yaml, model.py, the named weights and config.json are read; anything else is ignored, "
         "so a second weights file is a sign the wrong one is loaded",
         "delete the other files, or name the right weights in model.weights_file", check_extra_files,
         needs=("bundle-files", "weights-file")),
    Rule("config-yaml", "fail", f"{BUNDLE_CONFIG} parses as a mapping",
         "the evaluator reads its keys before anything else; a YAML error fails the load",
         "fix the YAML (python -c \"import yaml; yaml.safe_load(open('model_config.yaml'))\" shows the error)",
         check_config_yaml, needs=("bundle-files",)),
    Rule("config-keys", "warn", "every key is one the evaluator reads, where it reads it",
         "a misspelt key (rezise:) is silently ignored and its default used; `dtype` or `resize` under model: "
         "goes to load_model as a keyword and never reaches the evaluator",
         "rename the key as shown (did you mean …), or move it to where the evaluator reads it",
         check_config_keys, needs=_CONFIG),
    Rule("config-dtype", "fail", "dtype one of float32/fp32/float16/fp16/bfloat16/bf16",
         "the evaluator moves the model to this dtype with .to(device, dtype); any other value fails the load",
         "set `dtype: float32` (or float16 / bfloat16) at the top level", check_config_dtype, needs=_CONFIG),
    Rule("config-resize", "fail", "preprocessing.resize is two positive ints [H, W]",
         "every frame is cropped and resized to this H×W before it reaches the model",
         "set `preprocessing: {resize: [H, W]}` to the size the model takes", check_config_resize, needs=_CONFIG),
    Rule("config-frames", "fail", "preprocessing.num_frames an int in 1–64, given together with resize",
         "the clip always has exactly num_frames frames, but only when resize is set too: without it the evaluator "
         "sends 16 whatever num_frames says",
         "set both `resize: [H, W]` and `num_frames: T` (1 ≤ T ≤ 64) under preprocessing", check_config_frames,
         needs=_CONFIG, modality="video"),
    Rule("config-frame-rate", "fail", "preprocessing.frame_rate, if set, finite and > 0",
         "the evaluator samples every round(fps / frame_rate)-th frame; a zero, negative or NaN rate fails the load",
         "drop frame_rate (consecutive frames) or set the rate the model was trained at, e.g. 8",
         check_config_frame_rate, needs=_CONFIG, modality="video"),
    Rule("config-classes", "fail", "model.num_classes is a positive int, 3 to be scored on every class",
         "image and video are scored over [real, synthetic, semisynthetic]; the evaluator's default is 2. Any other "
         "head is loaded and scored, at the cost shown",
         "give the head 3 outputs in the order real, synthetic, semisynthetic (`kit train --from-bundle DIR` trains "
         "one on your model) and then set `model: {num_classes: 3}`; changing num_classes alone makes load_model "
         "build a head the weights do not fit", check_config_classes, needs=_CONFIG),
    Rule("static-analysis", "fail", "model.py uses only allowlisted imports and no blocked import, call or submodule",
         "the network analyses model.py before running it and rejects the submission on any hit (read conservatively)",
         "apply the fix shown for each model.py:LINE (docs/bundles.md lists the allowlist)", check_static_analysis,
         needs=("bundle-files",)),
    Rule("network", "warn", "model.py downloads nothing (no hub id, URL or pretrained weights)",
         "the evaluator loads bundles without network: from_pretrained('org/name'), torch.hub, URLs and "
         "pretrained=True fail there, and the submission with them",
         "save every weight into the weights file and build the model from code or a config literal "
         "(transformers: Config(...) + Model(config); timm: create_model(name, pretrained=False))",
         check_network_reach, needs=("bundle-files",)),
    Rule("load-model-signature", "fail", "load_model(weights_path, …) accepts num_classes and every model: key",
         "the evaluator binds load_model(weights_path, **model_keys); if that fails it retries with num_classes "
         "alone, silently dropping the other keys",
         "define `def load_model(weights_path, num_classes=3, **kwargs)` and read your keys from kwargs",
         check_load_model_signature, needs=_CONFIG),
    Rule("bundle-loads", "fail", "imports as custom_model, load_model returns an nn.Module, .to(dtype) works",
         "the evaluator imports model.py by file location, calls load_model, moves the result; any error (or a "
         "hang) means nothing is scored",
         "fix the stage the message names; model.py may import only itself and the allowlisted libraries, and "
         "load_model may read only the weights file",
         check_bundle_loads, needs=_LOADABLE),
    Rule("runtime", "warn", f"loaded under the evaluator's library versions ({EVALUATOR})",
         "the evaluator loads bundles under its pinned torch, transformers, timm …; weights saved from other "
         "versions can fail its strict load (transformers renamed ViT and VideoMAE attention weights after 5.2)",
         "run `kit runtime install` once: every bundle run then uses the evaluator's versions (or pass --python)",
         check_runtime),
    Rule("bundle-runs", "fail", "forward runs on a raw uint8 batch in the configured dtype",
         "the evaluator feeds the raw uint8 tensor under no_grad; the model must cast to its own parameter dtype",
         "in forward: x = x.to(next(self.parameters()).dtype) / 255, then normalise", check_bundle_runs,
         needs=("bundle-loads",)),
    Rule("output-format", "fail", "the output reads as the evaluator reads it, batch first, last dim accepted",
         "the evaluator takes a tensor, .logits, a dict (logits / output / one value) or a 1-tuple; the first dim "
         "must be the input batch and the last 1–4 or num_classes",
         "return a tensor of logits [B, 3] from forward", check_output_format, needs=_RUNNABLE),
    Rule("bundle-batches", "fail", "proven at B ∈ {32,1,5} (image) / {4,1,3} (video)",
         "the evaluator sends batches of 32 images or 4 videos and a shorter last batch; one failed batch "
         "invalidates the whole run",
         "do not hard-code the batch size (use x.shape[0], reshape with -1)", check_bundle_batches, needs=_OUTPUTS),
    Rule("bundle-classes", "warn", "3 logits [real, synthetic, semisynthetic]",
         "under multiclass scoring a narrower head is zero-padded (its missing classes are never predicted) and a "
         "wider one truncated; either is scored",
         "give the head 3 outputs in the order real, synthetic, semisynthetic (`kit train --from-bundle DIR`)",
         check_bundle_classes, needs=_OUTPUTS),
    _shared("finite", _OUTPUTS),
    _shared("not-softmaxed", _OUTPUTS),
    _shared("responsive", _OUTPUTS),
    Rule("bundle-spec-match", "fail", "model_config.yaml and the outputs agree with the kit spec",
         "the spec is what bench, the manifest and the submission record claim about the model",
         "rebuild with `kit build --format bundle` so the bundle and the manifest are written together",
         check_bundle_spec_match, needs=_OUTPUTS),
    _shared("head-trained", ()),
    _shared("stale-package", ()),
    _shared("latency", _OUTPUTS),
)

BUNDLE_RULES_BY_ID = {rule.id: rule for rule in BUNDLE_RULES}
