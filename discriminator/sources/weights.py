"""Load a state dict (safetensors or a torch checkpoint) into a module, with errors a miner can act on."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from discriminator.errors import InputError, first_line
from discriminator.wrapper import Backbone


#: Prefixes training wrappers put before every key of a state dict.
WRAPPER_PREFIXES = ("module.", "model.", "_orig_mod.")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if path.is_dir():
        raise InputError(f"--weights {path} is a folder, not a weights file",
                         "pass the .safetensors or torch file inside it (a `kit train` folder goes to --model instead)")
    if not path.is_file():
        raise InputError(f"weights file {path} does not exist", "check the --weights path")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors/torch raise many types for corrupt files
        raise InputError(f"cannot read weights from {path} ({type(exc).__name__}: {first_line(exc).rstrip('.')})",
                         "pass a .safetensors file or a torch state dict saved with torch.save(model.state_dict())") from exc
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path} does not hold a state dict of tensors", "save it with torch.save(model.state_dict(), path)")
    return state


def load_weights_into(module: nn.Module, path: Path) -> None:
    """Strictly load `path` into `module`. Prefixes that wrappers add to every key are dropped when the model's own
    keys do not have them: `module.` (DataParallel/DDP), `model.` (Lightning), `_orig_mod.` (torch.compile)."""
    state = read_state_dict(path)
    expected = module.state_dict()
    stripped = True
    while stripped and state and not set(state) <= set(expected):
        stripped = False
        for prefix in WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                stripped = True
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    # load_state_dict raises a multi-line RuntimeError for these; name the first one with both shapes instead.
    mismatched = [k for k in state if k in expected and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or mismatched:
        detail = []
        if mismatched:
            first = mismatched[0]
            detail.append(f"{len(mismatched)} with another shape (e.g. {first}: {list(state[first].shape)} in the file, "
                          f"{list(expected[first].shape)} in the model)")
        if missing:
            detail.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise InputError(f"weights in {path} do not fit the model: {', '.join(detail)}",
                         "use the weights saved from this same architecture (same --model and --model-option values)")
    module.load_state_dict(state, strict=True)


def apply_weights(backbone: Backbone, weights: Path | None) -> Backbone:
    """Load `--weights` into the backbone's module (strictly) and record where they came from."""
    if weights is not None:
        load_weights_into(backbone.module, weights)
        backbone.head_trained = True
    backbone.provenance["weights"] = str(weights) if weights is not None else backbone.provenance.get("weights", "as loaded")
    return backbone
