"""Kit checkpoints: a folder with `checkpoint.json` and `model.safetensors`, accepted by `kit build --model DIR`.

`kit train` writes them. `checkpoint.json` names the registered source the weights
belong to (with the options it was built with) and the spec fields the training
settled (size, frames, normalisation, calibrated temperature), so a build from a
checkpoint needs no other flags.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from discriminator.errors import InputError

CHECKPOINT_FILE = "checkpoint.json"
WEIGHTS_FILE = "model.safetensors"


def is_checkpoint_dir(path: Path) -> bool:
    return path.is_dir() and (path / CHECKPOINT_FILE).is_file()


def write_checkpoint(directory: Path, module, source: str, modality: str, source_options: dict[str, Any],
                     spec_fields: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
    """Save `module`'s weights and the record a build needs. Returns the folder."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE))
    record = {"source": source, "modality": modality, "source_options": source_options,
              "spec": spec_fields, "weights_file": WEIGHTS_FILE, **(extra or {})}
    (directory / CHECKPOINT_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return directory


def read_checkpoint(directory: Path) -> dict[str, Any]:
    try:
        record = json.loads((directory / CHECKPOINT_FILE).read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{directory / CHECKPOINT_FILE} is not valid JSON ({exc})", "re-create the checkpoint with `kit train`") from exc
    if not isinstance(record, dict):
        raise InputError(f"{directory / CHECKPOINT_FILE} is not a JSON object", "re-create the checkpoint with `kit train`")
    for key, kind in (("source", str), ("modality", str), ("spec", dict)):
        if not isinstance(record.get(key), kind):
            raise InputError(f"{directory / CHECKPOINT_FILE} has no {kind.__name__} '{key}'",
                             "re-create the checkpoint with `kit train`")
    return record
