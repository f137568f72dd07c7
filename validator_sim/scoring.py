"""A run's per-sample records → the network's numbers: both sn34 readings, provenance weights, bootstrap intervals,
and the paired comparison of two runs against the king-of-the-hill margin (current-contract §1, §5).

`validator_sim.metrics` holds the formulas; this module decides which samples and weights
go into them. Records are dicts with `dataset`, `sample`, `status`, `label` (binary),
`predicted` (binary), `p_ai`, `class_label` and `class_probs` (projected onto K classes).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from discriminator.errors import UsageError
from validator_sim.metrics import (
    BRIER_BASELINE,
    EPS,
    PROVENANCE_CLASSES,
    decide_with_probs,
    project_probs,
    provenance_of,
    provenance_weights,
    score_samples,
    sn34_from,
)

if TYPE_CHECKING:
    from validator_sim.run import RunState

Scoring = Literal["binary", "multiclass"]
#: A new model takes a lane only with sn34 ≥ the king's + this (current-contract §1).
KING_MARGIN = 0.010
#: Resamples behind every interval; seeded, so the same records give the same interval anywhere.
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
#: Resamples drawn at a time: bounds the [block, N] count matrix on large runs.
RESAMPLE_BLOCK = 100
#: Scores that get an interval.
INTERVAL_SCORES = ("sn34_score", "binary_sn34_score", "multiclass_sn34_score", "accuracy")


@dataclass(frozen=True)
class ScoringOptions:
    """How records become a score: which reading is `sn34_score`, the provenance shares, the class count."""

    scoring: Scoring = "multiclass"
    #: Provenance class → share, as given (missing classes count 0 in the scoring code).
    shares: dict[str, float] = field(default_factory=dict)
    #: Classes of the multiclass reading: 3, or 4 when `rendered` is read as a class of its own.
    num_classes: int = 3


def shares_from_cli(holdout_share: float | None, gasstation_share: float | None) -> dict[str, float]:
    """The shares the command line sets: those given, plus `public` = the remainder; {} when none is given."""
    given = {name: value for name, value in (("holdout", holdout_share), ("gasstation", gasstation_share))
             if value is not None}
    for name, value in given.items():
        if not 0.0 <= value <= 1.0:
            raise UsageError(f"--{name}-share must be between 0 and 1, got {value}", f"pass e.g. --{name}-share 0.2")
    if not given:
        return {}
    remainder = 1.0 - sum(given.values())
    if remainder < -1e-9:
        raise UsageError(f"the provenance shares add up to {sum(given.values()):.3f}, more than 1",
                         "lower --holdout-share / --gasstation-share so they sum to at most 1")
    return {**given, "public": max(0.0, remainder)}


def scored_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["status"] == "ok"]


def sample_weights(rows: list[dict[str, Any]], options: ScoringOptions) -> np.ndarray:
    """Per-sample weights from the provenance shares (all 1 when no share is set)."""
    return provenance_weights([provenance_of(r["dataset"]) for r in rows], options.shares)


def _arrays(rows: list[dict[str, Any]], k: int) -> tuple[np.ndarray, ...]:
    labels = np.array([r["label"] for r in rows], dtype=np.int64)
    preds = np.array([r["predicted"] for r in rows], dtype=np.int64)
    p_ai = np.array([r["p_ai"] for r in rows], dtype=np.float64)
    class_labels = np.array([r["class_label"] for r in rows], dtype=np.int64)
    class_probs = np.array([r["class_probs"] for r in rows], dtype=np.float64).reshape(len(rows), k)
    return labels, preds, p_ai, class_labels, class_probs


def score_row(row: np.ndarray, state: "RunState", label: int, class_index: int) -> dict[str, Any]:
    """One output row → the record fields the scoring reads (binary decision, p_ai, probabilities, projection)."""
    pred, p_ai, probs = decide_with_probs(row, state.profile)
    projected = project_probs(probs, p_ai, state.scoring.num_classes)
    if state.profile.accuracy_against == "multiclass":
        correct = int(np.argmax(projected)) == class_index
    else:
        correct = pred == label
    return {"status": "ok", "predicted": pred, "probs": [float(p) for p in probs], "p_ai": p_ai, "correct": correct,
            "class_probs": [float(p) for p in projected], "nan": bool(math.isnan(p_ai))}


def score_rows(rows: list[dict[str, Any]], options: ScoringOptions, weights: np.ndarray | None = None) -> dict[str, Any]:
    """Every number of current-contract §5 for `rows`, `sn34_score` being the selected reading."""
    if weights is None:
        weights = sample_weights(rows, options)
    labels, preds, p_ai, class_labels, class_probs = _arrays(rows, options.num_classes)
    result = score_samples(labels, preds, p_ai, class_labels, class_probs, weights, options.num_classes)
    result["sn34_score"] = result[f"{options.scoring}_sn34_score"]
    result["scoring"] = options.scoring
    return result


def _replicate_scores(labels: np.ndarray, preds: np.ndarray, p_ai: np.ndarray, class_labels: np.ndarray,
                      class_probs: np.ndarray, counts: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Every INTERVAL_SCORES value for each row of `counts` (replicate × sample weights), vectorised."""
    reps = counts.shape[0]
    total = counts.sum(axis=1)
    pred_k = np.argmax(class_probs, axis=1)

    def confusion(truth: np.ndarray, guess: np.ndarray, size: int) -> np.ndarray:
        pair = np.zeros((truth.size, size * size))
        pair[np.arange(truth.size), truth * size + guess] = 1.0
        return (counts @ pair).reshape(reps, size, size)

    def rk(c: np.ndarray) -> np.ndarray:
        n = c.sum(axis=(1, 2))
        t, p = c.sum(axis=2), c.sum(axis=1)
        trace = np.trace(c, axis1=1, axis2=2)
        denominator = np.sqrt(np.maximum(0.0, (n * n - (p * p).sum(1)) * (n * n - (t * t).sum(1))))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denominator > 0, (n * trace - (t * p).sum(1)) / np.where(denominator > 0, denominator, 1), 0.0)

    q = np.clip(p_ai, EPS, 1 - EPS)
    with np.errstate(invalid="ignore", divide="ignore"):
        binary_brier = counts @ ((q - labels) ** 2) / total
        multi_brier = counts @ np.sum((class_probs - np.eye(k)[class_labels]) ** 2, axis=1) / total
        accuracy = counts @ (pred_k == class_labels).astype(np.float64) / total
        binary_accuracy = counts @ (preds == labels).astype(np.float64) / total
    binary_mcc, gorodkin = rk(confusion(labels, preds, 2)), rk(confusion(class_labels, pred_k, k))
    binary = np.array([sn34_from(m, b, BRIER_BASELINE) for m, b in zip(binary_mcc, binary_brier)])
    multi = np.array([sn34_from(m, b, (k - 1) / k) for m, b in zip(gorodkin, multi_brier)])
    return {"binary_sn34_score": binary, "multiclass_sn34_score": multi, "accuracy": accuracy,
            "binary_accuracy": binary_accuracy}


def _resample_blocks(datasets: list[str], weights: np.ndarray, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """`_resample_counts` in blocks of at most RESAMPLE_BLOCK rows, so memory stays bounded on large runs."""
    rng = np.random.default_rng(seed)
    for start in range(0, resamples, RESAMPLE_BLOCK):
        yield _resample_counts(datasets, weights, min(RESAMPLE_BLOCK, resamples - start), rng)


def _resample_counts(datasets: list[str], weights: np.ndarray, resamples: int,
                     rng: np.random.Generator | int) -> np.ndarray:
    """[resamples, N] weight × multiplicity: each dataset's samples drawn with replacement, its size kept."""
    rng = np.random.default_rng(rng) if isinstance(rng, int) else rng
    names = np.array(datasets)
    counts = np.zeros((resamples, names.size))
    for name in sorted(set(datasets)):
        members = np.flatnonzero(names == name)
        counts[:, members] = rng.multinomial(members.size, np.full(members.size, 1.0 / members.size), size=resamples)
    return counts * weights[None, :]


def bootstrap_intervals(rows: list[dict[str, Any]], options: ScoringOptions, resamples: int = BOOTSTRAP_RESAMPLES,
                        seed: int = BOOTSTRAP_SEED, accuracy_against: str = "multiclass") -> dict[str, list[float] | None]:
    """95 % percentile intervals of INTERVAL_SCORES, resampling samples within each dataset (stratified).

    `accuracy_against` is the profile's reading of accuracy: the binary decision (ONNX era) or the argmax
    against the class label (current), so the interval is of the same number the report prints."""
    if len(rows) < 2:
        return {name: None for name in INTERVAL_SCORES}
    weights = sample_weights(rows, options)
    arrays = _arrays(rows, options.num_classes)
    blocks = [_replicate_scores(*arrays, counts, options.num_classes)
              for counts in _resample_blocks([r["dataset"] for r in rows], weights, resamples, seed)]
    scores = {name: np.concatenate([block[name] for block in blocks]) for name in blocks[0]}
    scores["sn34_score"] = scores[f"{options.scoring}_sn34_score"]
    if accuracy_against == "binary":
        scores["accuracy"] = scores["binary_accuracy"]
    return {name: [float(np.percentile(scores[name], 2.5)), float(np.percentile(scores[name], 97.5))]
            for name in INTERVAL_SCORES}


def sample_key(record: dict[str, Any]) -> tuple[str, str]:
    return record["dataset"], record["sample"]


def paired_comparison(ours: list[dict[str, Any]], theirs: list[dict[str, Any]], options: ScoringOptions,
                      resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """Δsn34 = ours − theirs on the same samples, its paired 95 % interval, and a verdict against KING_MARGIN.

    Raises UsageError when the two runs did not score the same samples.
    """
    mine = {sample_key(r): r for r in scored_records(ours)}
    other = {sample_key(r): r for r in scored_records(theirs)}
    if set(mine) != set(other):
        only_mine, only_theirs = len(set(mine) - set(other)), len(set(other) - set(mine))
        raise UsageError(f"the runs scored different samples ({only_mine} only in this run, {only_theirs} only in the "
                         "other)", "bench both models with the same --data, --mode, --seed and --max-per-dataset")
    keys = sorted(mine)
    rows_a, rows_b = [mine[k] for k in keys], [other[k] for k in keys]
    score_a, score_b = score_rows(rows_a, options), score_rows(rows_b, options)
    delta = score_a["sn34_score"] - score_b["sn34_score"]
    interval = None
    if len(keys) >= 2:
        weights = sample_weights(rows_a, options)
        name = f"{options.scoring}_sn34_score"
        arrays_a, arrays_b = _arrays(rows_a, options.num_classes), _arrays(rows_b, options.num_classes)
        a_parts, b_parts = [], []
        for counts in _resample_blocks([k[0] for k in keys], weights, resamples, seed):  # the same draws for both
            a_parts.append(_replicate_scores(*arrays_a, counts, options.num_classes)[name])
            b_parts.append(_replicate_scores(*arrays_b, counts, options.num_classes)[name])
        a, b = np.concatenate(a_parts), np.concatenate(b_parts)
        interval = [float(np.percentile(a - b, 2.5)), float(np.percentile(a - b, 97.5))]
    return {
        "samples": len(keys),
        "scoring": options.scoring,
        "sn34_score": score_a["sn34_score"],
        "other_sn34_score": score_b["sn34_score"],
        "delta_sn34": delta,
        "delta_interval": interval,
        "margin": KING_MARGIN,
        "verdict": verdict(delta, interval),
    }


def verdict(delta: float, interval: list[float] | None) -> str:
    """One plain sentence on whether Δsn34 clears the king's margin."""
    if interval is not None and interval[0] > KING_MARGIN:
        return f"better by more than the +{KING_MARGIN:.3f} margin, with 95 % confidence"
    if delta >= KING_MARGIN:
        return (f"Δ clears the +{KING_MARGIN:.3f} margin but its interval reaches below it: "
                "on other samples it may not")
    if interval is not None and interval[1] < KING_MARGIN:
        return f"does not clear the +{KING_MARGIN:.3f} margin (the whole interval is below it)"
    return f"does not clear the +{KING_MARGIN:.3f} margin on these samples"


def provenance_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    names = [provenance_of(r["dataset"]) for r in rows]
    return {p: names.count(p) for p in PROVENANCE_CLASSES if names.count(p)}


#: The entrance exam: 3-class accuracy (`benchmark_score`, the argmax against the class label) of at least this
#: on the datasets of the submitted modality (current-contract §5).
EXAM_THRESHOLD = 0.80
#: The kit's mode whose sample size (100 per dataset) mirrors the exam's `--small` run.
EXAM_MODE = "small"
#: Samples per dataset in the exam's run (what `--mode small` takes).
EXAM_SAMPLES_PER_DATASET = 100
EXAM_VERDICTS = {
    "pass": "clears the entrance exam: the whole 95 % interval of 3-class accuracy is at or above 0.80",
    "at risk": "may fail the entrance exam: the 95 % interval of 3-class accuracy straddles 0.80, so other samples of "
               "the same data can land either side",
    "fail": "fails the entrance exam: the whole 95 % interval of 3-class accuracy is below 0.80",
    "incomplete": "no verdict: the run was interrupted, so these figures cover only the samples scored before it "
                  "stopped — bench again to the end",
}


def exam_verdict(rows: list[dict[str, Any]], num_classes: int, network_scoring: Scoring,
                 mode: str, scorable: bool = True, completed: bool = True,
                 max_per_dataset: int | None = None) -> dict[str, Any]:
    """Whether these scored records clear the entrance exam, and the sn34 the network would select.

    The exam's accuracy is unweighted (provenance shares weight sn34, not `benchmark_score`). Pass: the
    bootstrap interval's lower end ≥ 0.80; fail: its upper end < 0.80; at risk: it straddles 0.80.
    With fewer than two samples there is no interval and the point decides. A run the evaluator cannot
    score fails whatever its accuracy; an interrupted one gets no verdict ("incomplete"), since the samples
    it did not reach could have gone either way.
    """
    options = ScoringOptions(scoring=network_scoring, shares={}, num_classes=num_classes)
    score = score_rows(rows, options) if rows else None
    accuracy = score["accuracy"] if score else 0.0
    interval = bootstrap_intervals(rows, options, accuracy_against="multiclass")["accuracy"] if rows else None
    low, high = interval if interval else (accuracy, accuracy)
    if not scorable:
        verdict = "fail"
    elif not completed:
        verdict = "incomplete"
    elif not rows or high < EXAM_THRESHOLD:
        verdict = "fail"
    elif low >= EXAM_THRESHOLD:
        verdict = "pass"
    else:
        verdict = "at risk"
    return {
        "threshold": EXAM_THRESHOLD,
        "accuracy": accuracy,
        "interval_95": interval,
        "samples": len(rows),
        "verdict": verdict,
        "meaning": EXAM_VERDICTS[verdict] if scorable else "fails the entrance exam: the evaluator cannot score this run",
        "mode": mode,
        # --max-per-dataset overrides the mode's cap: only the exam's own cap is its sample size
        "exam_sample_size": mode == EXAM_MODE and max_per_dataset in (None, EXAM_SAMPLES_PER_DATASET),
        "network_scoring": network_scoring,
        "network_sn34_score": score[f"{network_scoring}_sn34_score"] if score else 0.0,
    }

