"""How long `kit check` takes on a ViT-L-sized bundle, with the default latency figure and with `--latency`.

Writes standalone image bundles the way a miner writes one from a transformers config
literal (no kit code inside: model_config.yaml + model.py + model.safetensors with
random weights), then times the whole `kit check BUNDLE --json` process for each:

* `vit-l16`: ViTForImageClassification with ViT-L/16 dimensions (hidden 1024, 24 layers,
  16 heads, MLP 4096, 224×224, patch 16, 3 labels), about 300 M parameters;
* `vit-l14-tta3` (`--tta`): the same at patch 14 (257 tokens, a CLIP ViT-L/14's shape),
  whose forward averages the logits of 3 views (the image, its mirror, a shifted copy),
  so every batch costs three forwards.

Each is checked twice: the default (the latency figure read off the batch-32 run the batch
proof makes) and `--latency` (a warm-up and the median of 3 more batch-32 runs: exactly the
forwards every check ran before the default changed, so that column is the "before"). The
verdicts of the two must be the same rule for rule. The load average is printed before
and after each run: other jobs on the machine slow every figure.

    .venv/bin/python benchmarks/check_time.py [--tta] [--default-only] [--time-limit 600] [--keep DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: ViT-L/16 as in "An Image is Worth 16x16 Words" (google/vit-large-patch16-224), with a 3-class head.
VIT_L16 = {
    "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096,
    "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
    "initializer_range": 0.02, "layer_norm_eps": 1e-12, "image_size": 224, "patch_size": 16, "num_channels": 3,
    "qkv_bias": True, "num_labels": 3, "id2label": {"0": "real", "1": "synthetic", "2": "semisynthetic"},
    "label2id": {"real": 0, "synthetic": 1, "semisynthetic": 2},
}
MODELS = {
    "vit-l16": (VIT_L16, 1),
    "vit-l14-tta3": ({**VIT_L16, "patch_size": 14}, 3),
}

MODEL_PY = '''"""A ViT-L image detector built from a transformers config literal, with {views}-view test-time augmentation."""

import torch
from torch import nn
from safetensors.torch import load_file
from transformers import ViTConfig, ViTForImageClassification

HF_CONFIG = {config!r}
VIEWS = {views}


class Detector(nn.Module):
    def __init__(self, num_classes: int):
        super().__init__()
        self.vit = ViTForImageClassification(ViTConfig(**{{**HF_CONFIG, "num_labels": num_classes}}))

    def forward(self, x):
        x = x.to(next(self.parameters()).dtype) / 255.0
        x = (x - 0.5) / 0.5
        views = [x, torch.flip(x, dims=[3]), torch.roll(x, shifts=(8, 8), dims=(2, 3))][:VIEWS]
        return torch.stack([self.vit(pixel_values=view).logits for view in views]).mean(dim=0)


def load_model(weights_path, num_classes=3, **kwargs):
    model = Detector(num_classes)
    model.load_state_dict(load_file(weights_path), strict=True)
    return model
'''

MODEL_CONFIG = """name: {name}
version: "1"
modality: image
dtype: float32
preprocessing:
  resize: [224, 224]
model:
  num_classes: 3
  weights_file: model.safetensors
"""


def write_bundle(folder: Path, name: str) -> Path:
    """The bundle as a miner writes it: its model.py builds the model, its weights come from that model (seed 0)."""
    import torch
    from safetensors.torch import save_file

    config, views = MODELS[name]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_config.yaml").write_text(MODEL_CONFIG.format(name=name))
    (folder / "model.py").write_text(MODEL_PY.format(config=config, views=views))
    spec = importlib.util.spec_from_file_location(f"bundle_{name.replace('-', '_')}", folder / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    model = module.Detector(3)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    return folder


def load_average() -> str:
    return "/".join(f"{value:.1f}" for value in os.getloadavg())


def time_check(folder: Path, extra: list[str], time_limit: float) -> dict:
    """Wall time of the whole `kit check --json` process, its per-rule statuses and the latency row."""
    command = [sys.executable, "-m", "discriminator.cli.app", "check", str(folder), "--json",
               "--time-limit", f"{time_limit:g}", *extra]
    load_before = load_average()
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if completed.returncode not in (0, 1):
        raise SystemExit(f"kit check failed to run (exit {completed.returncode}): {completed.stderr.strip()[-400:]}")
    report = json.loads(completed.stdout)
    statuses = {r["id"]: r["status"] for r in report["results"]}
    latency = next(r for r in report["results"] if r["id"] == "latency")
    return {"seconds": seconds, "exit": completed.returncode, "statuses": statuses, "latency": latency["message"],
            "load": f"{load_before} → {load_average()}", "progress": completed.stderr.strip()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tta", action="store_true", help="also the ViT-L/14 bundle with 3-view test-time augmentation")
    parser.add_argument("--default-only", action="store_true", help="skip the --latency (before) runs")
    parser.add_argument("--time-limit", type=float, default=600.0,
                        help="kit check --time-limit (default 600: a loaded 2-core CPU needs minutes per batch of 32)")
    parser.add_argument("--keep", type=Path, help="write the bundles here and keep them (default: a temporary folder)")
    args = parser.parse_args()
    if args.keep is not None and args.keep.exists() and any(args.keep.iterdir()):
        raise SystemExit(f"--keep {args.keep} is not empty; pass a new folder")

    names = ["vit-l16", *(["vit-l14-tta3"] if args.tta else [])]
    modes = [("default", []), *([] if args.default_only else [("--latency", ["--latency"])])]
    work = args.keep or Path(tempfile.mkdtemp(prefix="kit-check-time-"))
    print(f"{os.cpu_count()} CPU(s); load average (1/5/15 min) at start: {load_average()}", flush=True)
    try:
        rows = []
        for name in names:
            started = time.perf_counter()
            folder = write_bundle(work / name, name)
            size = (folder / "model.safetensors").stat().st_size / 1024**2
            print(f"{name}: bundle written in {time.perf_counter() - started:.0f} s ({size:.0f} MiB of weights)", flush=True)
            results = {}
            for mode, extra in modes:
                results[mode] = time_check(folder, extra, args.time_limit)
                result = results[mode]
                print(f"  {mode:<10} {result['seconds']:6.1f} s  exit {result['exit']}  load {result['load']}\n"
                      f"             {result['latency']}\n"
                      + "".join(f"             {line.strip()}\n" for line in result["progress"].splitlines()), flush=True)
            same = all(r["statuses"] == results["default"]["statuses"] for r in results.values())
            print(f"  same verdicts, rule for rule: {'yes' if same else 'NO'}", flush=True)
            rows.append((name, {mode: r["seconds"] for mode, r in results.items()}, same))
        print("\n| bundle | kit check (default) | kit check --latency (before) | same verdicts |")
        print("|---|---|---|---|")
        for name, seconds, same in rows:
            before = f"{seconds['--latency']:.0f} s" if "--latency" in seconds else "–"
            print(f"| {name} | {seconds['default']:.0f} s | {before} | {'yes' if same else 'NO'} |")
        print(f"load average at the end: {load_average()}")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
