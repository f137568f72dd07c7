"""`make demo`: the whole miner workflow on built-in generated data, as the kit commands a miner would type.

    python -m discriminator.demo video|image [--data demo_data] [--fresh]

Steps: generate demo data (reused when present) → train and calibrate the small
example detector → `kit build` → `kit check` → `kit bench` on the held-out test
split → `kit package`. Every step is the real `kit` command, printed before it runs,
so the log doubles as the recipe. The demo owns its output folders
(`runs/demo-<modality>`, `submissions/demo-<modality>`, `results/demo-<modality>`)
and replaces them on each run; it exits non-zero if a step fails or the packaged
model misses the demo's targets.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from rich.console import Console

console = Console(highlight=False, soft_wrap=True)

#: What the demo promises on its own test split (issue: accuracy ≥ 0.90, sn34 ≥ 0.70).
TARGETS = {"accuracy": 0.90, "sn34": 0.70}


def train_args(modality: str, data: Path, out: Path) -> list[str]:
    """The `kit train` command line for the demo preset (discriminator.train.presets, the one source of the settings)."""
    from discriminator.train.presets import DEMO_PRESETS

    preset = DEMO_PRESETS[modality]
    args = ["train", modality, "--data", str(data / "train"), "--val", str(data / "val"), "--model", preset["model"]]
    for key, value in preset.get("source_options", {}).items():
        text = ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)
        args += ["--model-option", f"{key}={text}"]
    flags = {"height": "--height", "width": "--width", "mode": "--mode", "epochs": "--epochs",
             "batch_size": "--batch-size", "learning_rate": "--lr"}
    for key, flag in flags.items():
        if key in preset:
            args += [flag, str(preset[key])]
    return args + ["--seed", "0", "--out", str(out), "--force"]


def run_kit(args: list[str]) -> None:
    """Run one `kit` command in-process, exactly as typed; stop the demo if it fails."""
    from discriminator.cli.app import app

    console.print(f"\n[bold cyan]$ kit {shlex.join(args)}[/]")
    started = time.perf_counter()
    try:
        code = app(args=args, prog_name="kit", standalone_mode=False)
    except SystemExit as exc:  # typer.Exit inside a command surfaces here in non-standalone mode
        code = exc.code
    if code not in (None, 0):
        console.print(f"[bold red]demo stopped: `kit {args[0]}` exited {code}[/]")
        raise SystemExit(code if isinstance(code, int) else 1)
    console.print(f"[dim]  ({time.perf_counter() - started:.1f} s)[/]")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the SN34 kit end to end on generated demo data.")
    parser.add_argument("modality", choices=["video", "image"], nargs="?", default="video")
    parser.add_argument("--data", type=Path, default=Path("demo_data"))
    parser.add_argument("--fresh", action="store_true", help="regenerate the demo data even if it exists")
    args = parser.parse_args(argv)
    modality = args.modality
    name = f"demo-{modality}"
    run_dir, build_dir, results_dir = Path("runs") / name, Path("submissions") / name, Path("results") / name
    started = time.perf_counter()

    data_ready = (args.data / "train").is_dir() and (args.data / "test").is_dir() and not args.fresh
    if data_ready:
        console.print(f"reusing demo data in {args.data}/ (pass --fresh, or delete it, to regenerate)")
    else:
        run_kit(["data", "demo", "--out", str(args.data), "--seed", "0", "--size", "small", "--force"])
    run_kit(train_args(modality, args.data, run_dir))
    run_kit(["build", modality, "--model", str(run_dir), "--name", name, "--out", str(build_dir), "--force"])
    run_kit(["check", str(build_dir)])
    run_kit(["bench", str(build_dir), "--data", str(args.data / "test"), "--mode", "full",
             "--out", str(results_dir), "--force"])
    run_kit(["package", str(build_dir), "--force"])  # the bundle: what the network takes today
    run_kit(["package", str(build_dir), "--format", "onnx", "--force"])  # its ONNX twin, for the ONNX-era profile

    results = json.loads((results_dir / "results.json").read_text())["results"]
    figures = {"accuracy": results["accuracy"], "sn34": results["sn34_score"]}
    console.print(f"\n[bold]demo ({modality}) finished in {time.perf_counter() - started:.0f} s[/]")
    missed = []
    for key, target in TARGETS.items():
        value = figures[key]
        ok = value is not None and value >= target
        missed += [] if ok else [key]
        console.print(f"  {'[green]✓[/]' if ok else '[red]✗[/]'} {key} on the test split: {value:.3f} (target ≥ {target})")
    console.print(f"  checkpoint  {run_dir}/\n  model       {build_dir}/bundle/ (and its ONNX twin {build_dir}/{modality}_detector.onnx)\n"
                  f"  submission  {build_dir}/{modality}_bundle.zip (+ .json record) — push this one\n"
                  f"  ONNX twin   {build_dir}/{modality}_detector.zip (+ .json record)\n  bench       {results_dir}/")
    if missed:
        console.print(f"[bold red]the demo model missed its target on: {', '.join(missed)}[/]")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
