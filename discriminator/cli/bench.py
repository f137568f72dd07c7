"""`kit bench`: score a model on local datasets exactly as the SN34 validator would (a thin layer over `validator_sim`)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from discriminator.cli.common import PYTHON_HELP, console, err_console, examples_epilog, kit_command, use_python
from discriminator.errors import KitError, UsageError

EXAMPLES = [
    ("kit bench submissions/example-video --data demo_data/test", "a build folder's bundle under today's rules (current), data laid out as <media_type>/<dataset>/…"),
    ("kit bench submissions/example-video --data demo_data/test --format onnx", "its ONNX twin under the ONNX era's rules (onnx-2026-02)"),
    ("kit bench video_detector.zip --datasets my_sets.yaml --mode full", "every sample of the datasets a YAML file lists"),
    ("kit bench model.onnx --data data/ --profile current --frame-rate 8", "the safetensors-era rules, sampling clips at 8 fps"),
    ("kit bench model.onnx --data data/ --max-per-dataset 500 --seed 7 --out results/run7 --force", "a fixed, reproducible sample"),
    ("kit bench out/video/bundle --data data/ --profile current --robustness 20", "a bundle as today's evaluator scores it, with the robustness pass"),
    ("kit bench new.zip --data data/ --profile current --compare results/king/results.json", "paired Δsn34 against another run, vs the +0.010 margin"),
    ("kit bench new.zip --data data/ --profile current --compare king.zip", "both models on the same samples in one run"),
    ("kit bench out/image/bundle --data data/ --plots", "also draw the PNG plots (reliability, confusion, accuracy, recall, latency)"),
    ("kit bench video.zip --data data/ --mode full --shards 4", "four processes on this machine, one report (cores shared out among them)"),
    ("torchrun --nproc_per_node 8 -m discriminator.cli.app bench video.zip --data data/ --mode full",
     "one process per GPU; the same command on each machine with --nnodes/--node_rank/--rdzv_endpoint"),
]


def _metric(value: Optional[float]) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "[bold red]NaN[/]"
    return f"{value:.1e}" if 0 < value < 1e-4 else f"{value:.4f}"


def _signed(value: float) -> str:
    """`+0.0123`; a value that rounds to zero prints as +0.0000, never -0.0000."""
    return f"{0.0 if abs(value) < 5e-5 else value:+.4f}"


def _interval(kit: dict[str, Any], name: str) -> str:
    interval = (kit.get("intervals_95") or {}).get(name)
    return f" [{interval[0]:.4f}, {interval[1]:.4f}]" if interval else ""


def _print_summary(results: dict[str, Any], out_dir: Optional[Path], plots: bool = False) -> None:
    res, kit = results["results"], results["kit"]
    meta = results["metadata"]
    cap = f", at most {kit['max_per_dataset']} per dataset" if kit.get("max_per_dataset") is not None else ""
    partial = "" if meta["completed"] else " · [bold yellow]INTERRUPTED: partial[/]"
    table = Table(title=f"kit bench · {kit['model_name']} ({kit['model_format']}) · profile {kit['profile']} · "
                        f"mode {meta['mode']}{cap}{partial}",
                  caption="per dataset: one media type labels every sample, so MCC and sn34 are 0 by construction there; "
                          "accuracy (and mean p(AI)) is what a dataset can show", caption_justify="left")
    for column, justify in (("dataset", "left"), ("type", "left"), ("n", "right"), ("accuracy", "right"),
                            ("mean p(AI)", "right"), ("skipped", "right")):
        table.add_column(column, justify=justify)
    empty = []
    for name, row in results["per_dataset"].items():
        extra = kit["per_dataset"][name]
        if row["total"] == 0:  # nothing scored: the contract's empty-set values (Brier 0.25 …) would read as a result
            empty.append(name)
            table.add_row(name, extra["media_type"], "0", "—", "—", f"[bold red]{extra['skipped']}[/]")
            continue
        table.add_row(name, extra["media_type"], str(row["total"]), _metric(row["accuracy"]), _metric(extra["mean_p_ai"]),
                      str(extra["skipped"]))
    table.add_section()
    table.add_row("[bold]all[/]", "", str(res["total_samples"]), _metric(res["accuracy"]), "",
                  str(sum(v["count"] for v in kit["skipped"].values())))
    console.print(table)
    selected = res["scoring"]
    if not meta["completed"]:
        console.print(f"[bold yellow]partial run: the figures below cover only the {res['total_samples']} sample(s) "
                      "scored before the interruption, not the whole data[/]")
    console.print(f"[bold]sn34 {_metric(res['sn34_score'])}[/]{_interval(kit, 'sn34_score')} ({selected}, selected) · "
                  f"multiclass {_metric(res['multiclass_sn34_score'])}{_interval(kit, 'multiclass_sn34_score')} · "
                  f"binary {_metric(res['binary_sn34_score'])}{_interval(kit, 'binary_sn34_score')}  (95 % bootstrap)")
    console.print(f"Gorodkin R_K {_metric(res['gorodkin_mcc'])} · multiclass Brier {_metric(res['multiclass_brier'])} · "
                  f"binary MCC {_metric(res['binary_mcc'])} · binary Brier {_metric(res['binary_brier'])} · "
                  f"CE {_metric(res['binary_cross_entropy'])} · accuracy ({kit['accuracy_against']}) "
                  f"{_metric(res['accuracy'])}{_interval(kit, 'accuracy')}")
    from validator_sim.reports import exam_line

    exam = kit["exam"]
    colour = {"pass": "green", "at risk": "yellow", "fail": "red", "incomplete": "yellow"}[exam["verdict"]]
    console.print(f"[bold {colour}]{exam_line(exam)}[/]", highlight=False)
    console.print(f"  ({exam['meaning']})", highlight=False)
    recall = " · ".join(f"{name} {_metric(value)}" for name, value in res["per_class_recall"].items() if value is not None)
    console.print(f"recall per class: {recall}")
    if kit.get("robustness"):
        rob = kit["robustness"]
        ratio = f"{rob['robustness_ratio']:.3f}" if rob["robustness_ratio"] is not None else "—"
        console.print(f"robustness ({rob['samples']} samples, w={rob['aug_weight']:g}): base {_metric(rob['base_sn34_score'])} · "
                      f"aug {_metric(rob['aug_sn34_score'])} · ratio {ratio} · blended {_metric(rob['blended_sn34_score'])}")
    if kit.get("compare") and "refused" not in kit["compare"]:
        cmp_ = kit["compare"]
        interval = cmp_["delta_interval"]
        span = f" [{_signed(interval[0])}, {_signed(interval[1])}]" if interval else ""
        console.print(f"[bold]vs {cmp_['other_results']}: Δsn34 {_signed(cmp_['delta_sn34'])}{span} over {cmp_['samples']} "
                      f"paired samples — {cmp_['verdict']}[/]")
    console.print(f"{res['avg_inference_time_ms']:.2f} ms/sample mean over every batch (p95 {res['p95_inference_time_ms']:.2f}) · "
                  f"{kit['throughput_samples_per_s']:.1f} samples/s · {kit['session']['runtime']}, {kit['threads']} thread(s)")
    from validator_sim.sample_feed import feed_summary
    from validator_sim.timing import performance_line

    console.print(performance_line(results["metrics"]["performance"], kit.get("decode_workers"),
                                   len(kit.get("shards") or ()) or 1))

    for line in feed_summary(kit):
        console.print(line)
    if kit["nan_samples"]:
        err_console.print(f"[bold red]NaN: {kit['nan_samples']} sample(s) gave NaN/inf logits — the validator scores "
                          "them as real with NaN Brier, which floors sn34[/]")
    for note in kit["validator_treatment"]:
        err_console.print(f"[yellow]validator:[/] {note}")
    from validator_sim.run import INTERRUPTED

    for message in results["errors"]:
        if not message.startswith(INTERRUPTED):  # said once, last, by the command
            err_console.print(f"[red]error:[/] {message}", markup=True)
    for message in kit["warnings"]:
        err_console.print(f"[yellow]warning:[/] {message}")
    for name, skipped in kit["skipped"].items():
        reasons = ", ".join(f"{count} {reason}" for reason, count in skipped["reasons"].items())
        lost = " — no sample of this dataset was scored; the overall figures leave it out" if name in empty else ""
        err_console.print(f"[yellow]skipped in {name}:[/] {reasons}{lost}")
    for name, ignored in kit["ignored_files"].items():
        reasons = ", ".join(f"{count} {reason}" for reason, count in ignored.items())
        err_console.print(f"[yellow]not scored in {name}:[/] {reasons}")
    if out_dir is not None:
        drawn = "plots follow" if plots else "no plots: pass --plots to draw them"
        console.print(f"reports in {out_dir}/ (results.json, summary.txt, records; {drawn})")


@kit_command
def bench_command(
    model: Path = typer.Argument(..., help="An .onnx file, a bundle folder, a `kit build` folder, or a submission zip."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Folder laid out as <real|synthetic|semisynthetic|rendered>/<dataset-name>/…"),
    datasets_file: Optional[Path] = typer.Option(None, "--datasets", help="YAML listing datasets (name, modality, media_type, path, source_format)."),
    profile: Optional[str] = typer.Option(None, "--profile", "-p", help="Validator rules: current (the network today; the default for a bundle or a build folder, whose bundle is then benched) or onnx-2026-02 (the default for an ONNX file)."),
    mode: str = typer.Option("small", "--mode", help="debug (first dataset, ~100/50), small (100 per dataset: the entrance exam's sample size), full (all)."),
    max_per_dataset: Optional[int] = typer.Option(None, "--max-per-dataset", help="Cap samples per dataset (overrides the mode's cap)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample choice; the same seed picks the same samples anywhere."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Override the profile's batch size (image 32, video 4)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Inference threads: onnxruntime's intra-op threads, or torch's for a bundle (default: all cores)."),
    decode_workers: Optional[int] = typer.Option(None, "--decode-workers", help="Threads decoding ahead of inference (default: as many as keep up with inference, measured as it runs)."),
    frame_rate: Optional[float] = typer.Option(None, "--frame-rate", help="current profile only: sample clips at this many frames per second."),
    media_column: Optional[str] = typer.Option(None, "--media-column", help="Parquet column holding the media (default: detected)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Decode every sample; neither read nor fill the pixel cache (`kit cache info`)."),
    cache_size: Optional[str] = typer.Option(None, "--cache-size", help="Bound of the pixel cache, e.g. 20G (default: $KIT_CACHE_SIZE or 10G)."),
    scoring: Optional[str] = typer.Option(None, "--scoring", help="Which sn34 is `sn34_score`: multiclass (default under current) or binary (default under onnx-2026-02). Both are always reported."),
    holdout_share: Optional[float] = typer.Option(None, "--holdout-share", help="Provenance share of datasets named *-holdout-* (public gets the remainder)."),
    gasstation_share: Optional[float] = typer.Option(None, "--gasstation-share", help="Provenance share of datasets named *gasstation* (public gets the remainder)."),
    rendered: str = typer.Option("real", "--rendered", help="How rendered/ datasets count: real (the newest evaluator) or fourth-class."),
    robustness: int = typer.Option(0, "--robustness", help="Robustness pass on N samples per dataset (seed 42), blended into sn34."),
    aug_weight: float = typer.Option(0.2, "--aug-weight", help="Weight of the robustness score in the blend (the network uses 0.2)."),
    compare: Optional[Path] = typer.Option(None, "--compare", help="Another run's results.json, or another model benched here on the same samples: paired Δsn34 and a verdict vs +0.010."),
    model_format: Optional[str] = typer.Option(None, "--format", help="onnx or bundle, when a build folder holds both (default: bundle under current, onnx under onnx-2026-02; with neither option, the bundle under current)."),
    modality: Optional[str] = typer.Option(None, "--modality", help="image or video, for a bundle whose manifest and datasets do not say."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Report folder (default: results/<model>-<timestamp>/)."),
    force: bool = typer.Option(False, "--force", help="Write into a non-empty --out folder."),
    shards: Optional[int] = typer.Option(None, "--shards", help="Split the sample plan over N processes on this machine (each with cores ÷ N threads, and its own GPU when there are several); one report, the same figures as one process. Under torchrun leave it out: every rank takes a share."),
    plots: bool = typer.Option(False, "--plots/--no-plots", help="Also draw the PNG plots (reliability, confusion, accuracy, recall, latency) after the summary; off by default, as they add about a second."),
    python: Optional[str] = typer.Option(None, "--python", help=PYTHON_HELP),
) -> None:
    """Run a detector over local datasets through the validator's own pipeline and report sn34 and its parts."""
    use_python(python)
    if (data is None) == (datasets_file is None):
        raise UsageError("give exactly one of --data DIR or --datasets FILE.yaml", "see `kit bench --help` for examples")
    from validator_sim.opening import started_early

    # A bundle's worker imports the evaluator's torch (over a second on a CPU): let it do that while this
    # process imports the pipeline and reads the datasets. The run adopts it when it opens the model; one it
    # did not adopt (the command failed first) is stopped when the command ends.
    with started_early(model, profile, model_format, modality, threads, shards):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        from validator_sim.datasets import discover_datasets, load_datasets_yaml
        from validator_sim.pixel_cache import open_cache
        from validator_sim.run import BenchRequest, raise_if_unusable
        from validator_sim.shards import bench
        from validator_sim.scoring import shares_from_cli

        datasets = discover_datasets(data, media_column) if data is not None else load_datasets_yaml(datasets_file, media_column)
        shares = shares_from_cli(holdout_share, gasstation_share)
        request = BenchRequest.of(model, datasets, profile, mode=mode, max_per_dataset=max_per_dataset, seed=seed,
                                  batch_size=batch_size, threads=threads, decode_workers=decode_workers,
                                  frame_rate=frame_rate, pixel_cache=open_cache(not no_cache, cache_size), scoring=scoring,
                                  shares=shares, rendered=rendered, robustness=robustness, aug_weight=aug_weight,
                                  model_format=model_format, modality=modality, compare=compare, out_dir=out, force=force,
                                  plots=False)  # drawn here, after the summary, when --plots asks
        columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                   TimeRemainingColumn())
        with Progress(*columns, console=err_console, transient=True, disable=os.environ.get("RANK", "0") != "0") as progress:
            task = progress.add_task("scoring", total=None, rate="")

            def on_progress(done: int, total: int) -> None:
                speed = progress.tasks[0].speed
                progress.update(task, completed=done, total=total, rate=f"{speed:.1f} samples/s" if speed else "")

            result = bench(request, on_progress, shards)
    if result is None:  # a torchrun rank other than 0: rank 0 reports
        return
    _print_summary(result.results, result.out_dir, plots)
    if plots and result.out_dir is not None:  # drawn after the numbers are on screen
        from validator_sim.plots import write_plots

        try:
            result.paths.update(write_plots(result.out_dir, result.results, result.records))
        except KeyboardInterrupt:
            err_console.print("[bold yellow]interrupted while drawing the plots:[/] the reports are complete; "
                              "the plots drawn so far are whole, the rest were not written")
            raise typer.Exit(130) from None
    if not result.completed:
        from validator_sim.run import INTERRUPTED

        said = next((m for m in result.results["errors"] if m.startswith(INTERRUPTED)), "interrupted")
        err_console.print(f"[bold yellow]{said}[/] (the reports say completed: false); bench again to the end for an "
                          "exam verdict")
        raise typer.Exit(130)
    if not result.results["scorable"]:
        from validator_sim.run import MODALITY_GUESSED

        guessed = any(w.startswith(MODALITY_GUESSED) for w in result.results["kit"].get("warnings") or ())
        fix = ("the bundle names no modality, so it was benched as its datasets' one: pass --modality image or "
               "--modality video, with data of that modality" if guessed
               else "fix the failing sample's cause (see errors above), then bench again")
        raise KitError(result.results["errors"][0], fix, exit_code=4)
    refused = result.results["kit"].get("compare", {}).get("refused")
    if refused:
        raise UsageError(f"--compare: {refused}")
    raise_if_unusable(result)


def register(app: typer.Typer) -> None:
    app.command("bench", epilog=examples_epilog(EXAMPLES))(bench_command)
