"""`kit train --from-bundle DIR`: give anyone's bundle a 3-class head, train it, write a new bundle beside it.

A bundle is `model_config.yaml` + `model.py` + weights, loaded by the evaluator through
`model.py`'s own `load_model(weights_path, num_classes=…)`. Most community bundles are
2-class `[real, ai]`; today's network scores 3 classes (current-contract §5). This module:

1. loads the bundle exactly as the evaluator does (`validator_sim.bundle_runtime`:
   `import_model_module`, `call_load_model` with the YAML's `model:` keywords);
2. finds the head — the last `nn.Linear`/`nn.ConvNd` whose width is the model's output
   width — and writes the weights with that layer widened to 3 (fresh, seeded), then
   builds the 3-class model through the bundle's own `load_model(…, num_classes=3)`, so a
   `load_model` that sizes its head from `num_classes` *or* from the weights both work;
3. keeps every original tensor whose name and shape still match (all but the head's);
4. trains on the validator's pixels for the bundle's size and frames (`--mode probe`: only
   the new head; `finetune`: everything), keeps the epoch with the best validation
   multiclass sn34, folds a fitted temperature into the head's weights when the head's
   output is the logits (checked, else T = 1);
5. writes the new bundle: the same `model.py` (and any other file) byte for byte,
   `model.num_classes: 3`, the new weights under the original tensor names, and
   verifies it in a fresh `python -I` process (`BundleWorker`, which refuses kit imports)
   against the trained module's logits.

The original bundle is only read.
"""

from __future__ import annotations

import copy
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from discriminator.errors import InputError, OutputExistsError, UsageError
from discriminator.train.calibration import CalibrationReport, calibrate_logits, profile_scoring, score_logits
from discriminator.train.data import (
    MEDIA_TYPES,
    LoadedSplit,
    check_media_type_folders,
    check_robustness_fraction,
    load_split,
    require_both_classes,
    robustness_copies,
)
from discriminator.train.trainer import MODES, WEIGHT_DECAY, _World, epoch_batches, warmup_cosine
from validator_sim.bundle_runtime import (
    CONFIG_FILE,
    MODULE_NAME,
    BundleConfig,
    BundleError,
    BundleWorker,
    call_load_model,
    import_model_module,
    keep_freed_memory,
    parse_output,
    read_model_config,
)
from validator_sim.profiles import TRAIN_PROFILE

#: The head width today's network scores: real / synthetic / semisynthetic.
TARGET_CLASSES = len(MEDIA_TYPES)
#: Per mode: epochs and peak learning rate unless told otherwise.
FROM_BUNDLE_DEFAULTS = {"probe": (30, 1e-2), "finetune": (10, 1e-4)}
BATCH_SIZE = {"image": 16, "video": 4}
#: The new bundle's logits in a fresh process must match the trained module's to this (plus the same relative part).
VERIFY_TOLERANCE = 1e-4
HEAD_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass
class BundleTrainRequest:
    """What `kit train MODALITY --from-bundle DIR` takes."""

    modality: str
    bundle: Path
    data: Path
    val: Path
    mode: str = "finetune"
    epochs: int | None = None
    learning_rate: float | None = None
    batch_size: int | None = None
    seed: int = 0
    #: Default: `<bundle>-3class` beside the bundle.
    out: Path | None = None
    force: bool = False
    calibrate: bool = True
    profile: str = TRAIN_PROFILE
    #: Share of each training dataset's samples also trained on through the evaluator's robustness chain (0: none).
    robustness_augment: float = 0.0


@dataclass
class BundleTrainResult:
    """The new bundle and how it came about."""

    out: Path
    head: str
    original_classes: int
    kept_tensors: int
    new_tensors: int
    best_epoch: int
    epochs: int
    scoring: str
    temperature: float
    calibration: CalibrationReport | None
    val_multiclass_sn34: float
    val_sn34: float
    val_multiclass_accuracy: float
    verify_max_diff: float
    seconds: float
    #: Robustness copies trained on beside the decoded training samples.
    robustness_copies: int = 0


def default_out(bundle: Path) -> Path:
    """Where the new bundle goes unless told: beside the original, named `<name>-3class`."""
    bundle = Path(bundle).resolve()
    return bundle.parent / f"{bundle.name}-{TARGET_CLASSES}class"


def output_logits(output: Any) -> torch.Tensor:
    """The logits tensor of a forward's result, gradients kept (the evaluator's reading, `parse_output`, detaches)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        value = output.get("logits", output.get("output"))
        if value is None and len(output) == 1:
            value = next(iter(output.values()))
        return value
    if hasattr(output, "logits"):
        return output.logits
    if isinstance(output, (tuple, list)) and len(output) == 1:
        return output[0]
    raise BundleError("output", f"forward returned a {type(output).__name__}; return a tensor of logits [B, K]")


def find_head(module: nn.Module, width: int) -> tuple[str, nn.Module]:
    """The last Linear/ConvNd whose output width is `width`: the layer that makes the logits."""
    heads = [(name, m) for name, m in module.named_modules()
             if isinstance(m, HEAD_TYPES) and (m.out_features if isinstance(m, nn.Linear) else m.out_channels) == width]
    if not heads:
        raise UsageError(f"this bundle's model has no Linear or Conv layer of width {width} (its output width), so its "
                         f"head cannot be widened to {TARGET_CLASSES}",
                         f"give its model.py a load_model that builds a {TARGET_CLASSES}-class head from num_classes")
    return heads[-1]


def widened(layer: nn.Module, generator: torch.Generator) -> nn.Module:
    """A fresh copy of `layer` with TARGET_CLASSES outputs, initialised from `generator` (small weights, zero bias)."""
    if isinstance(layer, nn.Linear):
        new = nn.Linear(layer.in_features, TARGET_CLASSES, bias=layer.bias is not None)
    else:
        new = type(layer)(layer.in_channels, TARGET_CLASSES, layer.kernel_size, layer.stride, layer.padding,
                          layer.dilation, layer.groups, layer.bias is not None, layer.padding_mode)
    with torch.no_grad():
        new.weight.copy_(torch.randn(new.weight.shape, generator=generator) * 0.01)
        if new.bias is not None:
            new.bias.zero_()
    return new.to(layer.weight.dtype)


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    parent._modules[child] = new


def _weight_names(path: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return list(handle.keys())


def save_weights(module: nn.Module, names: list[str], path: Path) -> None:
    """The module's tensors under exactly `names` (the original file's keys), so the bundle's own loader reads them."""
    from safetensors.torch import save_file

    state = module.state_dict()
    missing = [name for name in names if name not in state]
    if missing:
        raise UsageError(f"the weights file names {len(missing)} tensor(s) the 3-class model does not have "
                         f"(first: {missing[0]})", "this bundle's load_model maps weight names itself; fine-tune it by hand")
    save_file({name: state[name].detach().to("cpu").contiguous().clone() for name in names}, str(path))


def _probe_input(config: BundleConfig, modality: str, batch: int = 2) -> torch.Tensor:
    shape = (batch, config.num_frames, 3, config.height, config.width) if modality == "video" else (batch, 3, config.height, config.width)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def build_three_class_model(bundle: Path, modality: str, seed: int, work: Path) -> tuple[nn.Module, BundleConfig, str, int, int, int]:
    """(3-class model, config, head name, original width, kept tensors, new tensors); see the module docstring."""
    config = read_model_config(bundle, modality)
    weights = bundle / config.weights_file
    if not weights.is_file():
        raise InputError(f"{bundle} has no weights file {config.weights_file} (model.weights_file)", "point --from-bundle at a complete bundle")
    module = import_model_module(bundle)
    load_model = module.__dict__.get("load_model")
    if not callable(load_model):
        raise InputError(f"{bundle}/model.py defines no load_model function", "a bundle's model.py must define load_model")
    original = call_load_model(load_model, str(weights), config.model_kwargs)
    if not isinstance(original, nn.Module):
        raise InputError(f"load_model returned a {type(original).__name__}, not a torch.nn.Module", "fix the bundle's load_model")
    original = original.float().eval()
    with torch.no_grad():
        width = parse_output(original(_probe_input(config, modality)), 2).shape[1]
    head_name, head = find_head(original, width)
    candidate = copy.deepcopy(original)
    _set_submodule(candidate, head_name, widened(head, torch.Generator().manual_seed(seed)))
    names = _weight_names(weights)
    widened_weights = work / config.weights_file
    save_weights(candidate, names, widened_weights)
    kwargs = {**config.model_kwargs, "num_classes": TARGET_CLASSES}
    try:
        model = call_load_model(load_model, str(widened_weights), kwargs)
    except BundleError as exc:
        raise UsageError(f"this bundle's model cannot get a {TARGET_CLASSES}-wide head: its load_model, given "
                         f"num_classes={TARGET_CLASSES} and weights whose head ({head_name}) is {TARGET_CLASSES} wide, "
                         f"failed ({exc.message.splitlines()[0]})",
                         f"make load_model build its head from num_classes (or from the weights' shape)") from None
    model = model.float()
    with torch.no_grad():
        new_width = parse_output(model.eval()(_probe_input(config, modality)), 2).shape[1]
    if new_width != TARGET_CLASSES:
        raise UsageError(f"this bundle's model cannot get a {TARGET_CLASSES}-wide head: its load_model(num_classes="
                         f"{TARGET_CLASSES}) still returns {new_width} logits per sample",
                         "make load_model build its head from num_classes (or from the weights' shape)")
    # Every original tensor whose name and shape still match is kept (load_model may have loaded them already;
    # copying makes it so whatever load_model does with weights).
    source = original.state_dict()
    kept = new = 0
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name in source and source[name].shape == tensor.shape:
                tensor.copy_(source[name])
                kept += 1
            else:
                new += 1
    return model, config, head_name, width, kept, new


def _logits(model: nn.Module, inputs: torch.Tensor, batch: int = 16) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return torch.cat([output_logits(model(inputs[i:i + batch])).float().reshape(len(inputs[i:i + batch]), -1)
                          for i in range(0, len(inputs), batch)])


def fold_temperature(model: nn.Module, head_name: str, temperature: float, check: torch.Tensor) -> bool:
    """Divide the head's weight and bias by T when that divides the logits by T (checked on `check`); say whether it did."""
    if temperature == 1.0:
        return True
    before = _logits(model, check)
    head = model.get_submodule(head_name)
    saved = copy.deepcopy(head.state_dict())
    with torch.no_grad():
        head.weight.div_(temperature)
        if head.bias is not None:
            head.bias.div_(temperature)
    after = _logits(model, check)
    if torch.allclose(after, before / temperature, atol=1e-4, rtol=1e-4):
        return True
    head.load_state_dict(saved)
    return False


def _prepare_out(out: Path, bundle: Path, force: bool) -> None:
    if out.resolve() == bundle.resolve() or bundle.resolve() in out.resolve().parents:
        raise UsageError("--out is the original bundle or inside it",
                         "write the 3-class bundle to a folder outside it (the original is never changed)")
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file, not a folder", "choose another --out")
    if out.exists() and any(out.iterdir()) and not force:
        raise OutputExistsError(out)


def write_bundle(bundle: Path, out: Path, model: nn.Module, config: BundleConfig, names: list[str]) -> None:
    """Copy every file of `bundle` but its config and weights, then write `model.num_classes: 3` and the new weights."""
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(bundle.iterdir()):
        if path.name in (CONFIG_FILE, config.weights_file) or path.name == "__pycache__":
            continue
        (shutil.copytree if path.is_dir() else shutil.copy2)(path, out / path.name)
    raw = yaml.safe_load((bundle / CONFIG_FILE).read_text(encoding="utf-8")) or {}
    raw.setdefault("model", {})
    raw["model"]["num_classes"] = TARGET_CLASSES
    (out / CONFIG_FILE).write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    save_weights(model, names, out / config.weights_file)


def verify_in_fresh_process(out: Path, modality: str, inputs: torch.Tensor, expected: torch.Tensor) -> float:
    """Load the new bundle in a fresh `python -I` worker (no kit imports) and compare its logits; the largest difference."""
    with BundleWorker(out, modality) as worker:
        got = worker.run(inputs.numpy())
    if got.shape != tuple(expected.shape):
        raise UsageError(f"the new bundle returns logits of shape {list(got.shape)} in a fresh process, not {list(expected.shape)}",
                         "its load_model does not rebuild what was trained; fine-tune this bundle by hand")
    diff = float(np.max(np.abs(got - expected.numpy())))
    limit = VERIFY_TOLERANCE + VERIFY_TOLERANCE * float(expected.abs().max())
    if not diff <= limit:
        raise UsageError(f"the new bundle's logits in a fresh process differ from the trained model's by {diff:.2e} (limit {limit:.2e})",
                         "its load_model does not load the saved weights as they were trained")
    return diff


def train_from_bundle(request: BundleTrainRequest, on_epoch: Callable[[int, float | None, Any], None] | None = None,
                      on_step: Callable[[str], None] | None = None) -> BundleTrainResult:
    """Turn the bundle at `request.bundle` into a trained 3-class bundle (see the module docstring)."""
    started = time.perf_counter()
    step = on_step or (lambda _message: None)
    bundle = Path(request.bundle)
    if not bundle.is_dir():
        raise InputError(f"--from-bundle {bundle} is not a folder", "point it at a bundle folder (model_config.yaml, model.py, weights)")
    if request.mode not in MODES:
        raise UsageError(f"--mode must be one of {', '.join(MODES)}, got '{request.mode}'", "use --mode probe or finetune")
    default_epochs, default_lr = FROM_BUNDLE_DEFAULTS[request.mode]
    epochs = request.epochs if request.epochs is not None else default_epochs
    learning_rate = request.learning_rate if request.learning_rate is not None else default_lr
    batch_size = request.batch_size if request.batch_size is not None else BATCH_SIZE[request.modality]
    for name, value in (("--epochs", epochs), ("--batch-size", batch_size), ("--lr", learning_rate)):
        if not value > 0:
            raise UsageError(f"{name} must be positive, got {value}", f"pass a positive {name}")
    check_robustness_fraction(request.robustness_augment)
    out = Path(request.out) if request.out else default_out(bundle)
    _prepare_out(out, bundle, request.force)
    for directory in (request.data, request.val):
        check_media_type_folders(Path(directory))
    keep_freed_memory()
    torch.manual_seed(request.seed)
    scoring = profile_scoring(request.profile)
    with tempfile.TemporaryDirectory(prefix="kit-from-bundle-") as work:
        try:
            model, config, head_name, width, kept, new = build_three_class_model(bundle, request.modality, request.seed, Path(work))
        except BundleError as exc:
            raise InputError(f"{bundle}: the bundle does not load as the evaluator loads it ({exc})",
                             f"run `kit check {bundle} --modality {request.modality}` for the details") from None
        finally:
            sys.modules.pop(MODULE_NAME, None)
    step(f"{bundle}: {width}-wide head {head_name} → {TARGET_CLASSES} wide; kept {kept} tensors, {new} new; "
         f"{config.height}×{config.width}" + (f", {config.num_frames} frames" if config.num_frames else "")
         + f"; {request.mode}, {epochs} epochs, epoch kept by {scoring} sn34")
    splits: dict[str, LoadedSplit] = {}
    for name, directory in (("train", request.data), ("val", request.val)):
        splits[name] = load_split(Path(directory), request.modality, config.height, config.width, config.num_frames,
                                  MEDIA_TYPES, request.profile)
        require_both_classes(splits[name], directory, f"--{'data' if name == 'train' else 'val'}")
    train, val = splits["train"], splits["val"]
    decoded = len(train)
    if request.robustness_augment > 0:
        train = train + robustness_copies(train, request.robustness_augment, request.seed, request.modality, config.height,
                                          config.width, config.num_frames, MEDIA_TYPES, request.profile)
    step(f"decoded {decoded} train" + (f" (+ {len(train) - decoded} robustness copies)" if request.robustness_augment > 0 else "")
         + f" and {len(val)} validation samples")

    head = model.get_submodule(head_name)
    head_ids = {id(p) for p in head.parameters()}
    for parameter in model.parameters():
        parameter.requires_grad_(request.mode == "finetune" or id(parameter) in head_ids)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=WEIGHT_DECAY)
    steps_per_epoch = max(1, len(train) // batch_size)
    schedule = warmup_cosine(optimizer, steps_per_epoch, epochs * steps_per_epoch)
    world = _World()

    def score(logits: torch.Tensor) -> Any:
        return score_logits(logits.numpy(), val.media_labels, 1.0, request.profile)

    best_card = score(_logits(model, val.inputs))
    best_epoch, best_state = 0, copy.deepcopy(model.state_dict())
    if on_epoch:
        on_epoch(0, None, best_card)
    for epoch in range(1, epochs + 1):
        model.train(request.mode == "finetune")  # a probe keeps the frozen backbone's batch norm as it was
        flips = torch.rand(len(train), generator=torch.Generator().manual_seed(request.seed * 100_003 + epoch)) < 0.5
        total, seen = 0.0, 0
        for idx in epoch_batches(len(train), batch_size, request.seed, epoch, world):
            x = train.inputs[idx]
            x = torch.where(flips[idx].view(-1, *[1] * (x.dim() - 1)), x.flip(-1), x)
            logits = output_logits(model(x)).reshape(len(idx), -1)
            loss = F.cross_entropy(logits.float(), train.labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total, seen = total + float(loss.detach()) * len(idx), seen + len(idx)
        card = score(_logits(model, val.inputs))
        if on_epoch:
            on_epoch(epoch, total / max(seen, 1), card)
        if card.sn34_for(scoring) > best_card.sn34_for(scoring):
            best_card, best_epoch, best_state = card, epoch, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    val_logits = _logits(model, val.inputs)
    calibration, temperature = None, 1.0
    if request.calibrate:
        calibration = calibrate_logits(val_logits.numpy(), val.media_labels, 1.0, request.profile, scoring)
        if fold_temperature(model, head_name, calibration.temperature, val.inputs[:8]):
            temperature = calibration.temperature
        else:
            step(f"the head's output is not the logits, so T = {calibration.temperature:.3f} cannot be folded into it: T = 1 kept")
            calibration = None
    final = score_logits(val_logits.numpy(), val.media_labels, temperature, request.profile)
    names = _weight_names(bundle / config.weights_file)
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:  # written and verified aside, then renamed into place: a failed verification leaves no bundle behind
        write_bundle(bundle, staging, model, config, names)
        check = val.inputs[: min(4, len(val))]
        diff = verify_in_fresh_process(staging, request.modality, check, _logits(model, check))
        if out.exists():
            shutil.rmtree(out)  # empty, or replaced with --force (checked before any work)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    step(f"verified in a fresh process: max |Δlogit| {diff:.1e}")
    return BundleTrainResult(out=out, head=head_name, original_classes=width, kept_tensors=kept, new_tensors=new,
                             best_epoch=best_epoch, epochs=epochs, scoring=scoring, temperature=temperature,
                             calibration=calibration, val_multiclass_sn34=final.multiclass_sn34, val_sn34=final.sn34,
                             val_multiclass_accuracy=final.multiclass_accuracy, verify_max_diff=diff,
                             seconds=time.perf_counter() - started, robustness_copies=len(train) - decoded)
