"""`kit bench` against the evaluator, in one run: whole-process and loop throughput on the three workloads of issue 18.

Workloads (each benched as the network benches it: the example detector's bundle, built at
224×224, under `current`, every sample, no pixel cache, default threads and decode workers):

* demo video — the test split of `kit data demo` (90 clips);
* demo images — the same split's images (120, in every format and container the demo writes);
* 720p clips — generated H.264 clips of 1280×720 (`--clips` per media type), where decoding
  costs more than the model.

For each it prints the **whole process** (wall time of `kit bench …` as a fresh process: start-up,
model load, the run, the reports) and the **loop** (samples ÷ the run's own wall time, from
`results.json`, less the time it waited for the bundle's worker to finish loading: the `model_load_wait`
stage, which the kit overlaps with decoding and older kits spent before the run began), as samples
per second, best of `--repeats`.

The evaluator's side:

* with `import gasbench` working and `--gasbench-cache DIR --gasbench-config FILE` pointing at a
  gasbench cache that holds the same datasets, `gasbench run` is timed the same way (whole
  process) on each workload, taking turns with the kit, and kit ÷ evaluator is printed;
* otherwise the kit's side is printed alone, beside the evaluator ratios issue 18 recorded on this
  machine (whole process, kit ÷ evaluator: video 1.37×, 720p 1.22×, images 1.05×; the evaluator's
  image loop 102 images/s). `--baseline DIR` (a source tree of the kit those ratios were measured
  with, e.g. `git archive 621e7a9 | tar -x -C /tmp/kit-base`) times that kit in turn with this one,
  and the ratio is carried over: kit ÷ evaluator now ≈ recorded ratio × (baseline time ÷ this kit's time).

    .venv/bin/python benchmarks/bench_vs_evaluator.py                                # generates the demo data first
    .venv/bin/python benchmarks/bench_vs_evaluator.py --demo /tmp/demo --baseline /tmp/kit-base --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_speed import KIT, build, source_clips  # noqa: E402

#: Issue 18's side-by-side figures on this machine: kit ÷ evaluator, whole process, and the evaluator's image loop.
RECORDED_RATIO = {"demo video": 1.37, "demo images": 1.05, "720p clips": 1.22}
EVALUATOR_IMAGE_LOOP = 102.0
TARGET_RATIO = 1.5
MODALITY = {"demo video": "video", "demo images": "image", "720p clips": "video"}


def kit_command(source: Path | None) -> list[str]:
    """This kit's console script, or `python -c` running the CLI of another source tree first on the path."""
    if source is None:
        return [str(KIT)]
    return [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(source)!r}); "
                                  "from discriminator.cli.app import main; sys.argv[0] = 'kit'; sys.exit(main())"]


def time_kit(command: list[str], model: Path, data: Path, out: Path) -> dict[str, float]:
    """Whole-process seconds of one `kit bench`, and the loop's samples and seconds from its results.json."""
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    done = subprocess.run([*command, "bench", str(model), "--data", str(data), "--profile", "current", "--mode", "full",
                           "--no-cache", "--out", str(out)], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"kit bench failed ({done.returncode}): {(done.stderr or done.stdout)[-1500:]}")
    results = json.loads((out / "results.json").read_text())
    kit = results["kit"]
    stages = (results.get("metrics", {}).get("performance") or {}).get("stages", {})
    loading = stages.get("model_load_wait", {}).get("seconds", 0.0)
    return {"process_s": seconds, "loop_s": kit["wall_seconds"] - loading, "samples": float(kit["samples_handled"]),
            "model_load_s": loading}


def time_gasbench(modality: str, model: Path, cache: Path, config: Path, out: Path) -> float:
    """Whole-process seconds of `gasbench run` on the bundle, over the datasets `config` names in `cache`."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "gasbench.cli", "run", f"--{modality}-model", str(model), "--full",
                           "--cache-dir", str(cache), "--dataset-config", str(config), "--results-dir", str(out)],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"gasbench run failed ({done.returncode}): {(done.stdout + done.stderr)[-1500:]}")
    return seconds


def gasbench_importable() -> bool:
    return subprocess.run([sys.executable, "-c", "import gasbench"], capture_output=True).returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, help="demo data from `kit data demo` (default: generate it)")
    parser.add_argument("--clips", type=int, default=14, help="720p clips per media type")
    parser.add_argument("--repeats", type=int, default=2, help="each figure is the best of this many runs")
    parser.add_argument("--workloads", nargs="+", choices=list(MODALITY), default=list(MODALITY),
                        help="which workloads to run (default: all three)")
    parser.add_argument("--baseline", type=Path, help="source tree of an earlier kit to time in turn with this one")
    parser.add_argument("--gasbench-cache", type=Path, help="gasbench cache holding the same datasets")
    parser.add_argument("--gasbench-config", type=Path, help="gasbench dataset config naming them")
    args = parser.parse_args()
    if args.repeats < 1 or args.clips < 1:
        parser.error("--repeats and --clips must be at least 1")
    if args.baseline is not None and not (args.baseline / "discriminator" / "cli" / "app.py").is_file():
        parser.error(f"--baseline {args.baseline} is not a kit source tree (no discriminator/cli/app.py)")
    with_gasbench = gasbench_importable()
    if with_gasbench and (args.gasbench_cache is None or args.gasbench_config is None):
        print("gasbench is importable, but --gasbench-cache and --gasbench-config are needed to time it: kit side only")
        with_gasbench = False

    with tempfile.TemporaryDirectory(prefix="bench_vs_evaluator_") as tmp:
        tmp_path = Path(tmp)
        demo = args.demo
        if demo is None:
            demo = tmp_path / "demo"
            subprocess.run([str(KIT), "data", "demo", "--out", str(demo)], check=True, capture_output=True, text=True)
        folders = {"demo video": lambda: demo / "test", "demo images": lambda: demo / "test",
                   "720p clips": lambda: source_clips(tmp_path / "clips720", 1280, 720, args.clips)}
        data = {workload: folders[workload]() for workload in args.workloads}
        models = {modality: build(modality, tmp_path / modality, 224) for modality in {MODALITY[w] for w in data}}
        kits = {"this kit": kit_command(None), **({"baseline": kit_command(args.baseline)} if args.baseline else {})}
        print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}; {os.cpu_count()} cores")
        runs: dict[tuple[str, str], list[dict[str, float]]] = {}
        evaluator: dict[str, list[float]] = {}
        for _ in range(args.repeats):  # every kit and workload once per round, so drifting load hits them alike
            for workload, folder in data.items():
                model = models[MODALITY[workload]]
                for name, command in kits.items():
                    runs.setdefault((workload, name), []).append(
                        time_kit(command, model, folder, tmp_path / "out"))
                if with_gasbench:
                    evaluator.setdefault(workload, []).append(time_gasbench(
                        MODALITY[workload], model / "bundle", args.gasbench_cache, args.gasbench_config,
                        tmp_path / "gasbench"))
        print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}\n")

        figures: list[dict[str, Any]] = []
        for workload in data:
            unit = "images" if MODALITY[workload] == "image" else "clips"
            best = {name: min(runs[(workload, name)], key=lambda r: r["process_s"]) for name in kits}
            loop = {name: max(runs[(workload, name)], key=lambda r: r["samples"] / r["loop_s"]) for name in kits}
            mine, mine_loop = best["this kit"], loop["this kit"]
            row: dict[str, Any] = {"workload": workload, "samples": mine["samples"],
                                   "process_per_s": mine["samples"] / mine["process_s"], "process_s": mine["process_s"],
                                   "loop_per_s": mine_loop["samples"] / mine_loop["loop_s"]}
            print(f"{workload} ({int(mine['samples'])} {unit}):")
            print(f"  this kit:  whole process {mine['process_s']:6.2f} s = {row['process_per_s']:6.1f} {unit}/s · "
                  f"loop {row['loop_per_s']:6.1f} {unit}/s once the model was ready (decoding ran "
                  f"{mine['model_load_s']:.2f} s ahead while it loaded)")
            if "baseline" in kits:
                base, base_loop = best["baseline"], loop["baseline"]
                speedup = base["process_s"] / mine["process_s"]
                row.update(baseline_process_s=base["process_s"], speedup=speedup,
                           baseline_loop_per_s=base_loop["samples"] / base_loop["loop_s"],
                           implied_ratio=RECORDED_RATIO[workload] * speedup)
                print(f"  baseline:  whole process {base['process_s']:6.2f} s = {base['samples'] / base['process_s']:6.1f} "
                      f"{unit}/s · loop {row['baseline_loop_per_s']:6.1f} {unit}/s")
                print(f"  this kit ÷ baseline, whole process: {speedup:.2f}× → kit ÷ evaluator ≈ "
                      f"{RECORDED_RATIO[workload]:.2f} × {speedup:.2f} = {row['implied_ratio']:.2f}× "
                      f"(target ≥ {TARGET_RATIO}×)")
            if workload in evaluator:
                theirs = min(evaluator[workload])
                row.update(evaluator_process_s=theirs, ratio=theirs / mine["process_s"])
                print(f"  gasbench:  whole process {theirs:6.2f} s → kit ÷ evaluator {row['ratio']:.2f}× "
                      f"(target ≥ {TARGET_RATIO}×)")
            elif "baseline" not in kits:
                print(f"  evaluator (issue 18, recorded): kit ÷ evaluator was {RECORDED_RATIO[workload]:.2f}× "
                      f"with the kit of that day; gasbench is not importable here")
            if MODALITY[workload] == "image":
                print(f"  image loop vs the evaluator's recorded {EVALUATOR_IMAGE_LOOP:.0f} images/s: "
                      f"{row['loop_per_s'] / EVALUATOR_IMAGE_LOOP:.2f}× (the evaluator decodes nothing before its "
                      "model is loaded, so this flatters the kit: compare whole processes)")
            figures.append(row)
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
