"""PNG plots of a run, cheap to draw: reliability diagram, confusion matrix, per-dataset accuracy,
per-class recall, latency.

Calibration drives the Brier half of sn34, so the reliability diagram comes first:
a miner sees at a glance whether the model's p(AI) means what it says. Bars carry their
values (a 0 % bar is drawn as a visible sliver), datasets with nothing scored are marked
rather than drawn as 0 %, colours name the media type without reading as good/bad, and an
interrupted run says so on every plot. Each PNG appears whole or not at all (written beside
its name, then renamed), so a drawing stopped by Ctrl-C leaves no broken file.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

#: Media type → bar colour: neutral hues, none of them "alarm" red or "all good" green.
MEDIA_COLOURS = {"real": "#4477aa", "synthetic": "#cc9944", "semisynthetic": "#aa77aa", "rendered": "#66aaaa"}
#: Width of the bar drawn for a value of 0, so an empty result is seen, not missed.
ZERO_BAR = 0.004
#: Equal-width p(AI) bins in the reliability diagram.
RELIABILITY_BINS = 10
FIGSIZE = (5.0, 4.0)
DPI = 90


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def reliability_bins(labels: np.ndarray, p_ai: np.ndarray, bins: int = RELIABILITY_BINS) -> list[dict[str, float]]:
    """Per equal-width p(AI) bin: mean predicted p(AI), observed AI fraction and count (empty bins left out)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p_ai, edges[1:-1], right=False), 0, bins - 1)
    out = []
    for b in range(bins):
        mask = which == b
        if mask.any():
            out.append({"low": float(edges[b]), "high": float(edges[b + 1]), "mean_p": float(p_ai[mask].mean()),
                        "observed": float(labels[mask].mean()), "count": int(mask.sum())})
    return out


def write_plots(out_dir: Path, results: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Path]:
    """Draw the five plots into `out_dir`; returns their paths keyed by plot name."""
    plt = _pyplot()
    scored = [r for r in records if r["status"] == "ok" and not math.isnan(r["p_ai"])]
    labels = np.array([r["label"] for r in scored], dtype=np.float64)
    p_ai = np.array([r["p_ai"] for r in scored], dtype=np.float64)
    paths = {}

    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    bins = reliability_bins(labels, p_ai)
    if bins:
        ax.plot([b["mean_p"] for b in bins], [b["observed"] for b in bins], marker="o", label="model")
        for b in bins:
            ax.annotate(str(b["count"]), (b["mean_p"], b["observed"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean predicted p(AI)", ylabel="observed fraction AI",
           title=f"Reliability (Brier {_fmt(results['results']['binary_brier'])})")
    ax.legend(loc="upper left", fontsize=8)
    paths["reliability_plot"] = _save(fig, out_dir / "reliability.png", plt, results)

    confusion = results["kit"]["confusion"]
    matrix = np.array([[confusion["tn"], confusion["fp"]], [confusion["fn"], confusion["tp"]]])
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="black", fontsize=12)
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["real", "AI"], yticklabels=["real", "AI"],
           xlabel="predicted", ylabel="actual", title=f"Confusion (MCC {_fmt(results['results']['binary_mcc'])})")
    paths["confusion_plot"] = _save(fig, out_dir / "confusion.png", plt, results)

    paths["accuracy_plot"] = _accuracy_plot(out_dir, results, plt)
    paths["class_recall_plot"] = _class_recall_plot(out_dir, results, plt)

    latencies = [r["inference_ms"] for r in records if r["status"] == "ok"]
    fig, ax = plt.subplots(figsize=FIGSIZE)
    if latencies:
        ax.hist(latencies, bins=min(30, max(5, len(set(latencies)))), color="tab:blue")
        ax.axvline(results["results"]["p95_inference_time_ms"], color="tab:red", linestyle="--", label="p95")
        ax.legend(fontsize=8)
    ax.set(xlabel="inference ms per sample (batch time / batch size)", ylabel="samples", title="Latency")
    paths["latency_plot"] = _save(fig, out_dir / "latency.png", plt, results)
    return paths


def _bars(ax: Any, names: list[str], values: list[float | None], colours: list[str], unscored_label: str) -> None:
    """Horizontal bars with value labels; None is an unscored row, marked as such instead of drawn as 0."""
    drawn = [max(v, ZERO_BAR) if v is not None else 0.0 for v in values]
    ax.barh(names, drawn, color=colours)
    for row, value in enumerate(values):
        text = unscored_label if value is None else f"{value:.0%}"
        ax.text(min(value if value is not None else 0.0, 0.86) + 0.01, row, text, va="center", fontsize=8,
                color="dimgrey" if value is None else "black", style="italic" if value is None else "normal")


def _accuracy_plot(out_dir: Path, results: dict[str, Any], plt: Any) -> Path:
    return _save(accuracy_figure(results, plt), out_dir / "accuracy_per_dataset.png", plt, results)


def accuracy_figure(results: dict[str, Any], plt: Any) -> Any:
    """The per-dataset accuracy bars (left open, so a caller or a test can look at it)."""
    per_dataset = results["per_dataset"]
    names = list(per_dataset)
    media = results["dataset_media_types"]
    fig, ax = plt.subplots(figsize=(FIGSIZE[0] + 1, max(2.0, 0.35 * len(names) + 1.4)))
    values = [per_dataset[n]["accuracy"] if per_dataset[n]["total"] else None for n in names]
    _bars(ax, names, values, [MEDIA_COLOURS.get(media[n], "grey") for n in names], "not scored")
    ax.axvline(0.8, color="grey", linestyle="--", linewidth=1)
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=colour, label=media_type) for media_type, colour in MEDIA_COLOURS.items()
                       if media_type in media.values()], fontsize=7, loc="lower right")
    ax.set(xlim=(0, 1), xlabel=f"accuracy ({results['kit'].get('accuracy_against', 'binary')}; line: entrance bar 0.8)",
           title="Accuracy per dataset")
    ax.invert_yaxis()
    return fig


def _class_recall_plot(out_dir: Path, results: dict[str, Any], plt: Any) -> Path:
    recall = results["results"].get("per_class_recall", {})
    names = list(recall)
    fig, ax = plt.subplots(figsize=FIGSIZE)
    _bars(ax, names, [recall[n] for n in names], [MEDIA_COLOURS.get(n, "grey") for n in names], "no samples")
    ax.set(xlim=(0, 1), xlabel="recall (argmax = the class)", title="Recall per class (multiclass reading)")
    ax.invert_yaxis()
    return _save(fig, out_dir / "class_recall.png", plt, results)


def _save(fig: Any, path: Path, plt: Any, results: dict[str, Any]) -> Path:
    """Write the figure to `path` whole or not at all: drawn into a `.part` file beside it, then renamed over it."""
    if not results["metadata"]["completed"]:
        fig.suptitle("PARTIAL RUN (interrupted): only the samples scored so far", color="darkorange", fontsize=9)
    partial = path.with_name(path.name + ".part")
    try:
        fig.tight_layout()
        fig.savefig(partial, dpi=DPI, format="png")
        os.replace(partial, path)
    finally:  # Ctrl-C or a failure mid-save leaves no half-written PNG
        partial.unlink(missing_ok=True)
        plt.close(fig)
    return path


def _fmt(value: float | None) -> str:
    return "NaN" if value is None or math.isnan(value) else f"{value:.3f}"
