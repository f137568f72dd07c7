"""The run's reports: `results.json` in the validator's shape (contract §6) plus the kit's additions,
one row per sample (parquet, or JSONL without pyarrow), `summary.txt` and the PNG plots.

JSON is strict: NaN and ±inf become null (the real validator writes a bare `NaN`,
which strict readers reject). The validator's fields keep their names and meaning,
so a miner's existing tools read the file; everything the kit adds sits under `kit`.
"""

from __future__ import annotations

import json
import math
import uuid
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from discriminator import __version__
from validator_sim.datasets import MEDIA_TYPES
from validator_sim.decode import decoder_versions
from validator_sim.metrics import compute_metrics, provenance_of, timing_summary
from validator_sim.scoring import bootstrap_intervals, exam_verdict, provenance_counts, sample_weights, score_rows
from validator_sim.timing import performance_line

if TYPE_CHECKING:
    from validator_sim.run import RunState

RESULTS_NAME = "results.json"
SUMMARY_NAME = "summary.txt"
RECORDS_PARQUET = "records.parquet"
RECORDS_JSONL = "records.jsonl"
#: Order and types of the per-sample columns.
RECORD_COLUMNS = ("dataset", "media_type", "sample", "status", "label", "predicted", "probs", "p_ai", "correct",
                  "class_label", "class_probs", "weight", "inference_ms", "batch_inference_ms", "error", "nan")
#: The numbers `results` carries for both readings (current-contract §5), whichever is selected.
SCORE_FIELDS = ("sn34_score", "binary_sn34_score", "multiclass_sn34_score", "gorodkin_mcc", "binary_mcc",
                "binary_brier", "multiclass_brier")
CLASS_NAMES = ("real", "synthetic", "semisynthetic", "rendered")


def strict(value: Any) -> Any:
    """A copy of `value` that `json.dumps(allow_nan=False)` accepts: NaN/±inf → None, numpy scalars → Python."""
    if isinstance(value, dict):
        return {str(k): strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def to_strict_json(value: Any) -> str:
    return json.dumps(strict(value), indent=2, allow_nan=False)


def _scored(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["status"] == "ok"]


def _metrics_of(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return compute_metrics([r["label"] for r in rows], [r["predicted"] for r in rows], [r["p_ai"] for r in rows])


def _class_recall(recall: dict[int, float | None]) -> dict[str, float | None]:
    return {CLASS_NAMES[k]: v for k, v in recall.items()}


def build_results(state: "RunState") -> dict[str, Any]:
    """The results document for a run, complete or interrupted."""
    scored = _scored(state.records)
    overall = _metrics_of(scored)
    options = state.scoring
    weights = sample_weights(scored, options)
    for record, weight in zip(scored, weights):
        record["weight"] = float(weight)
    score = score_rows(scored, options, weights)
    # `correct` in each record follows the era's accuracy (binary decision, or argmax vs the class label).
    accuracy = score["accuracy"] if state.profile.accuracy_against == "multiclass" else overall["accuracy"]
    timing = timing_summary([r["inference_ms"] for r in scored])
    plans = state.plans
    per_dataset: dict[str, Any] = {}
    kit_per_dataset: dict[str, Any] = {}
    for plan in plans:
        name = plan.dataset.name
        rows = [r for r in scored if r["dataset"] == name]
        metrics = _metrics_of(rows)
        dataset_score = score_rows(rows, options, np.ones(len(rows)))
        ai_predictions = sum(r["predicted"] for r in rows)
        correct = sum(1 for r in rows if r["correct"])
        per_dataset[name] = {
            "correct": correct,
            "total": len(rows),
            "accuracy": correct / len(rows) if rows else 0.0,
            "predictions": {"real": len(rows) - ai_predictions, "synthetic": ai_predictions},
        }
        skipped = state.skipped.get(name, [])
        kit_per_dataset[name] = {
            "media_type": plan.dataset.media_type,
            "source": str(plan.dataset.path),
            "source_format": plan.dataset.source_format,
            "available": len(plan.listing.keys) if plan.listing else 0,
            "chosen": len(plan.indices),
            "scored": len(rows),
            "errors": sum(1 for r in state.records if r["dataset"] == name and r["status"] == "error"),
            "skipped": len(skipped),
            "nan_samples": sum(1 for r in rows if r["nan"]),
            "sn34_score": dataset_score["sn34_score"],
            #: One media type labels a whole dataset, so MCC is 0 by construction and sn34 says nothing there.
            "sn34_meaningful": False,
            "class_recall": dataset_score["per_class_recall"].get(rows[0]["class_label"]) if rows else None,
            "provenance": provenance_of(name),
            "binary_mcc": metrics["binary_mcc"],
            "binary_brier": metrics["binary_brier"],
            "binary_cross_entropy": metrics["binary_cross_entropy"],
            "mean_p_ai": float(np.mean([r["p_ai"] for r in rows])) if rows else None,
            "unreadable": plan.error,
        }
    by_media: dict[str, Any] = {}
    for media_type in MEDIA_TYPES:
        rows = [r for r in scored if r["media_type"] == media_type]
        if rows:
            correct = sum(1 for r in rows if r["correct"])
            by_media[media_type] = {"samples": len(rows), "correct": correct, "accuracy": correct / len(rows)}
    nan_count = sum(1 for r in scored if r["nan"])
    errors = list(state.errors)
    reads_classes = options.scoring == "multiclass" or state.profile.accuracy_against == "multiclass"
    warnings = list(state.warnings) + (_unreachable_classes(scored, options.num_classes) if reads_classes else [])
    verdict = _verdict(state, len(scored))
    if verdict:
        errors.insert(0, verdict)
    intervals = bootstrap_intervals(scored, options, accuracy_against=state.profile.accuracy_against)
    robustness = _robustness_summary(state, score)
    headline = dict(score)
    if robustness:
        headline["sn34_score"] = robustness["blended_sn34_score"]
    if verdict:
        headline["sn34_score"] = 0.0
    if nan_count:
        errors.append(f"{nan_count} sample(s) produced NaN/inf logits: predicted real, Brier and CE are NaN, "
                      "and sn34 collapses to its floor")
    model_io = state.model_io
    handled = len(state.records) + sum(len(v) for v in state.skipped.values())
    finished = state.finished_at or state.started_at
    return {
        "metadata": {
            "run_id": uuid.uuid4().hex[:12],
            "started_at": state.started_at.isoformat(),
            "finished_at": finished.isoformat(),
            "model_path": str(state.model_source),
            "modality": model_io.modality,
            "mode": state.mode.name,
            "completed": state.completed,
            "duration_seconds": (finished - state.started_at).total_seconds(),
        },
        "overall_score": accuracy,
        "validation": {
            "input_shape": str(model_io.input_shape),
            "input_type": model_io.input_type,
            "output_shape": str(model_io.output_shape),
        },
        "errors": errors,
        "results": {
            "total_samples": overall["total_samples"],
            "correct_predictions": sum(1 for r in scored if r["correct"]),
            "accuracy": accuracy,
            **timing,
            "binary_cross_entropy": score["binary_cross_entropy"],
            **{key: headline[key] for key in SCORE_FIELDS},
            "scoring": options.scoring,
            "per_class_recall": _class_recall(score["per_class_recall"]),
        },
        "scorable": verdict is None,
        "metrics": {"performance": state.timings.snapshot()},
        "per_dataset": per_dataset,
        "accuracy_by_media_type": by_media,
        "dataset_media_types": {p.dataset.name: p.dataset.media_type for p in plans},
        "kit": {
            "kit_version": __version__,
            "profile": state.profile.name,
            "profile_description": state.profile.description,
            "model_name": state.model_name,
            "session": state.session_settings,
            "model_format": state.model_format,
            "threads": state.session_settings["intra_op_num_threads"],
            "decode_workers": state.decode_workers,
            "batch_size": state.batch_size,
            "seed": state.seed,
            "max_per_dataset": state.max_per_dataset,
            "frame_rate": state.frame_rate,
            "target": {"height": model_io.height, "width": model_io.width, "frames": model_io.frames},
            "class_order": list(state.spec.class_names) if state.spec else ["real", "synthetic", "semisynthetic"],
            "spec": state.spec.to_dict() if state.spec else None,
            "confusion": {k: overall[k] for k in ("tp", "tn", "fp", "fn")},
            "multiclass_confusion": score["multiclass_confusion"],
            "num_classes": options.num_classes,
            "rendered_reading": state.rendered,
            "accuracy_against": state.profile.accuracy_against,
            "provenance_shares": options.shares,
            "provenance_samples": provenance_counts(scored),
            "intervals_95": intervals,
            "interval_method": "percentile bootstrap, 1000 resamples, seed 0, stratified by dataset",
            "robustness": robustness,
            "exam": _exam(state, scored, robustness, scorable=verdict is None),
            "decoders": decoder_versions(),
            "video_decoder": state.profile.video_decoder if model_io.modality == "video" else None,
            "lost_datasets": state.lost_datasets,
            "invalidated": state.invalidated,
            "error_samples": sum(1 for r in state.records if r["status"] == "error"),
            "nan_samples": nan_count,
            "skipped": {
                name: {"count": len(items), "reasons": dict(Counter(reason for _, reason in items)),
                       "samples": [{"sample": key, "reason": reason} for key, reason in items]}
                for name, items in state.skipped.items()
            },
            "ignored_files": {p.dataset.name: p.listing.ignored for p in plans if p.listing and p.listing.ignored},
            "per_dataset": kit_per_dataset,
            "validator_treatment": state.validator_treatment,
            "warnings": warnings,
            "wall_seconds": state.wall_s,
            "inference_seconds": state.inference_s,
            "samples_handled": handled,
            "throughput_samples_per_s": handled / state.wall_s if state.wall_s > 0 else 0.0,
        },
    }


def summary_text(results: dict[str, Any]) -> str:
    """A plain-text account of a run, for `summary.txt` (the terminal shows a table instead)."""
    meta, res, kit = results["metadata"], results["results"], results["kit"]
    lines = [
        f"kit bench — {kit['model_name']} ({meta['modality']}), profile {kit['profile']}, mode {meta['mode']}, seed {kit['seed']}",
        f"model: {meta['model_path']}",
        f"input {results['validation']['input_shape']} {results['validation']['input_type']} → target "
        f"{kit['target']['height']}×{kit['target']['width']}" + (f", T={kit['target']['frames']}" if kit["target"]["frames"] else ""),
        f"completed: {'yes' if meta['completed'] else 'NO (interrupted: partial results)'}",
        "",
        *_score_lines(res, kit),
        exam_line(kit["exam"]),
        f"scored {res['total_samples']} samples, {kit['error_samples']} error rows, "
        f"{sum(v['count'] for v in kit['skipped'].values())} skipped",
        f"inference {res['avg_inference_time_ms']:.2f} ms/sample mean, {res['p95_inference_time_ms']:.2f} ms p95; "
        f"wall {kit['wall_seconds']:.1f} s ({kit['throughput_samples_per_s']:.1f} samples/s); "
        f"{kit['session']['runtime']} on {', '.join(kit['session']['providers'])}, "
        f"{kit['threads']} thread(s), {kit['decode_workers']} decode worker(s), batch {kit['batch_size']}",
        performance_line(results["metrics"]["performance"], kit.get("decode_workers"), len(kit.get("shards") or ()) or 1),
        "decoders: " + ", ".join(f"{name} {version}" for name, version in kit["decoders"].items()),
        "",
        "per dataset (one media type labels every sample, so MCC and sn34 are 0 by construction there: accuracy is "
        "what a dataset can show)",
        f"{'dataset':<28} {'type':<14} {'n':>6} {'acc':>7} {'mean p(AI)':>10} {'skipped':>8}",
    ]
    for name, row in results["per_dataset"].items():
        extra = kit["per_dataset"][name]
        accuracy = _fmt(row["accuracy"]) if row["total"] else "—"
        lines.append(f"{name:<28} {extra['media_type']:<14} {row['total']:>6} {accuracy:>7} "
                     f"{_fmt(extra['mean_p_ai']) if row['total'] else '—':>10} {extra['skipped']:>8}")
    for title, items in (("errors", results["errors"]), ("what the real validator would have done", kit["validator_treatment"]),
                         ("warnings", kit["warnings"])):
        if items:
            lines += ["", f"{title}:"] + [f"  - {item}" for item in items]
    if kit["skipped"]:
        lines += ["", "skipped samples (the real validator drops these silently):"]
        for name, info in kit["skipped"].items():
            reasons = ", ".join(f"{reason} ×{count}" for reason, count in info["reasons"].items())
            lines.append(f"  - {name}: {info['count']} ({reasons})")
    if kit["ignored_files"]:
        lines += ["", "files not scored:"]
        for name, ignored in kit["ignored_files"].items():
            lines.append(f"  - {name}: " + ", ".join(f"{reason} ×{count}" for reason, count in ignored.items()))
    return "\n".join(lines) + "\n"


def _score_lines(res: dict[str, Any], kit: dict[str, Any]) -> list[str]:
    """Both sn34 readings with their intervals, the parts, recall per class, robustness and comparison."""
    def interval(name: str) -> str:
        found = (kit.get("intervals_95") or {}).get(name)
        return f" [{found[0]:.4f}, {found[1]:.4f}]" if found else ""

    lines = [
        f"sn34 {_fmt(res['sn34_score'])}{interval('sn34_score')} ({res['scoring']}, selected)   "
        f"multiclass {_fmt(res['multiclass_sn34_score'])}{interval('multiclass_sn34_score')}   "
        f"binary {_fmt(res['binary_sn34_score'])}{interval('binary_sn34_score')}   (95 % bootstrap)",
        f"Gorodkin R_K {_fmt(res['gorodkin_mcc'])}   multiclass Brier {_fmt(res['multiclass_brier'])}   "
        f"binary MCC {_fmt(res['binary_mcc'])}   binary Brier {_fmt(res['binary_brier'])}   "
        f"CE {_fmt(res['binary_cross_entropy'])}   accuracy ({kit['accuracy_against']}) {_fmt(res['accuracy'])}",
        "recall per class: " + ", ".join(f"{name} {_fmt(value)}" for name, value in res["per_class_recall"].items()
                                         if value is not None),
    ]
    if kit.get("robustness"):
        rob = kit["robustness"]
        lines.append(f"robustness ({rob['samples']} samples, w={rob['aug_weight']:g}): base {_fmt(rob['base_sn34_score'])}, "
                     f"aug {_fmt(rob['aug_sn34_score'])}, ratio {_fmt(rob['robustness_ratio'])}, "
                     f"blended {_fmt(rob['blended_sn34_score'])}; {rob['encoder']}")
    compare = kit.get("compare")
    if compare and "refused" not in compare:
        span = compare["delta_interval"]
        lines.append(f"vs {compare['other_results']}: Δsn34 {compare['delta_sn34']:+.4f}"
                     + (f" [{span[0]:+.4f}, {span[1]:+.4f}]" if span else "") + f" — {compare['verdict']}")
    return lines


def exam_line(exam: dict[str, Any]) -> str:
    """The entrance-exam verdict and the sn34 the network selects, in one line (plain text)."""
    interval = exam["interval_95"]
    span = f" [{interval[0]:.4f}, {interval[1]:.4f}]" if interval else " (no interval: fewer than 2 samples)"
    size = ("at the exam's sample size (--mode small)" if exam["exam_sample_size"]
            else f"at --mode {exam['mode']}; the exam's sample size is --mode small")
    return (f"entrance exam: {exam['verdict'].upper()} — 3-class accuracy {exam['accuracy']:.4f}{span} vs "
            f"{exam['threshold']:.2f} over {exam['samples']} samples, {size}; the network selects "
            f"{exam['network_scoring']} sn34 {_fmt(exam['network_sn34_score'])} by default (a round may configure the "
            "other)")


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NaN"
    return f"{value:.1e}" if 0 < value < 1e-4 else f"{value:.4f}"


def write_records(out_dir: Path, records: list[dict[str, Any]]) -> Path:
    """One row per sample: parquet when pyarrow is installed, else JSON lines."""
    rows = [{column: record.get(column) for column in RECORD_COLUMNS} for record in records]
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        path = out_dir / RECORDS_JSONL
        path.write_text("".join(json.dumps(strict(row), allow_nan=False) + "\n" for row in rows))
        return path
    schema = pa.schema([
        ("dataset", pa.string()), ("media_type", pa.string()), ("sample", pa.string()), ("status", pa.string()),
        ("label", pa.int8()), ("predicted", pa.int8()), ("probs", pa.list_(pa.float32())), ("p_ai", pa.float64()),
        ("correct", pa.bool_()), ("class_label", pa.int8()), ("class_probs", pa.list_(pa.float64())),
        ("weight", pa.float64()), ("inference_ms", pa.float64()), ("batch_inference_ms", pa.float64()),
        ("error", pa.string()), ("nan", pa.bool_()),
    ])
    path = out_dir / RECORDS_PARQUET
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def write_reports(out_dir: Path, results: dict[str, Any], records: list[dict[str, Any]],
                  plots: bool = True) -> dict[str, Path]:
    """Write every report into `out_dir` (the PNG plots only when `plots`); returns what was written, by kind."""
    from validator_sim.plots import write_plots

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"results": out_dir / RESULTS_NAME, "summary": out_dir / SUMMARY_NAME}
    paths["results"].write_text(to_strict_json(results) + "\n")
    paths["summary"].write_text(summary_text(results))
    paths["records"] = write_records(out_dir, records)
    if plots:
        paths.update(write_plots(out_dir, results, records))
    return paths


def _verdict(state: "RunState", scored: int) -> str | None:
    """Why the evaluator would not score the run at all (current: any inference failure, or nothing scored)."""
    if state.invalidated:
        return f"UNSCORABLE: the {state.profile.name} evaluator voids a run with any inference failure; {state.invalidated}"
    voids = "invalidate_run" in state.profile.on_batch_failure.values()
    if voids and scored == 0 and state.completed:
        return f"UNSCORABLE: no sample was predicted, and the {state.profile.name} evaluator cannot score such a run"
    return None


def _exam(state: "RunState", scored: list[dict[str, Any]], robustness: dict[str, Any] | None,
          scorable: bool) -> dict[str, Any]:
    """The entrance-exam verdict; the network's sn34 is the blended one when the robustness pass ran, 0 when voided."""
    exam = exam_verdict(scored, state.scoring.num_classes, state.profile.default_scoring, state.mode.name, scorable,
                        completed=state.completed, max_per_dataset=state.max_per_dataset)
    if state.refused:  # never examined: the network turns the submission away first
        exam.update(verdict="fail", network_sn34_score=0.0, refused=list(state.refused),
                    meaning=f"fails before the entrance exam: the network refuses the submission ({state.refused[0]})")
    elif not scorable:
        exam["network_sn34_score"] = 0.0
    elif robustness:
        exam["network_sn34_score"] = robustness[f"{exam['network_scoring']}_blended_sn34_score"]
    return exam


def _robustness_summary(state: "RunState", score: dict[str, Any]) -> dict[str, Any] | None:
    """Base, aug, their ratio and the blend (current-contract §6) for the selected reading and both readings."""
    if not state.robustness:
        return None
    aug_rows, weight = state.robustness["records"], state.robustness["aug_weight"]
    aug = score_rows(aug_rows, state.scoring) if aug_rows else None
    summary: dict[str, Any] = {"samples": len(aug_rows), "per_dataset": state.robustness["per_dataset"],
                               "aug_weight": weight, "seed": state.robustness["seed"],
                               "skipped": state.robustness["skipped"], "encoder": state.robustness["encoder"]}
    for key in ("sn34_score", "binary_sn34_score", "multiclass_sn34_score"):
        base_value = score[key]
        aug_value = aug[key] if aug else 0.0
        prefix = "" if key == "sn34_score" else key.replace("sn34_score", "")
        summary[f"{prefix}base_sn34_score"] = base_value
        summary[f"{prefix}aug_sn34_score"] = aug_value
        summary[f"{prefix}robustness_ratio"] = aug_value / base_value if base_value > 0 else None
        summary[f"{prefix}blended_sn34_score"] = (1 - weight) * base_value + weight * aug_value
    return summary


def load_run_records(results_path: Path | str) -> list[dict[str, Any]]:
    """The per-sample records of an earlier `kit bench` run, found beside its results.json."""
    from discriminator.errors import InputError

    path = Path(results_path)
    folder = path.parent if path.is_file() or path.suffix == ".json" else path
    if not (folder / RESULTS_NAME).is_file():
        raise InputError(f"{path} is not a kit bench results.json (or a folder holding one)",
                         "pass the results.json of an earlier `kit bench` run")
    if (folder / RECORDS_PARQUET).is_file():
        import pyarrow.parquet as pq

        records = pq.read_table(folder / RECORDS_PARQUET).to_pylist()
    elif (folder / RECORDS_JSONL).is_file():
        records = [json.loads(line) for line in (folder / RECORDS_JSONL).read_text().splitlines() if line.strip()]
    else:
        raise InputError(f"{folder} holds no records.parquet or records.jsonl beside results.json",
                         "compare against a run whose report folder is complete")
    if any(r.get("status") == "ok" and r.get("class_probs") is None for r in records):
        raise InputError(f"{folder}: its records carry no class probabilities (an older kit wrote them)",
                         "bench the other model again with this kit version")
    return records


def _unreachable_classes(scored: list[dict[str, Any]], num_classes: int) -> list[str]:
    """A warning per class the head cannot predict (a 2-logit head is never right on semisynthetic samples)."""
    if not scored:
        return []
    width = max(len(r["probs"]) for r in scored)
    head = 2 if width == 1 else width
    notes = []
    for cls in range(head, num_classes):
        count = sum(1 for r in scored if r["class_label"] == cls)
        if count:
            notes.append(f"the model has {width} output(s), so its argmax never names class {cls} "
                         f"({CLASS_NAMES[cls]}): its {count} {CLASS_NAMES[cls]} sample(s) always count as wrong in "
                         "accuracy and the multiclass score, as on the network")
    return notes
