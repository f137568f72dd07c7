"""The kit's scores equal a plain float64 reimplementation of current-contract §5 to 1e-12 (issue 18).

The evaluator (gasbench 0.11.1) receives float32 probabilities from the model, turns each into
a Python float and does all of its arithmetic from there in float64 — p(AI) = 1 − p[0] included.
The reference below is written from the contract's formulas alone, with loops and `math`, so
it shares no code with `validator_sim`; the kit's path runs exactly as a bench runs it
(`score_row` on each float32 output row, then `score_rows`).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from validator_sim.profiles import get_profile
from validator_sim.run import score_row
from validator_sim.scoring import ScoringOptions, score_rows

K = 3
TOLERANCE = 1e-12
DATASETS = ("public-a", "public-b", "x-holdout-1", "gasstation-week")
SHARES = {"public": 0.5, "holdout": 0.3, "gasstation": 0.2}


def evaluator_probabilities(logits: np.ndarray) -> list[float]:
    """What the evaluator reads from one float32 output row, as Python floats: a sigmoid for one logit, else a softmax."""
    if logits.size == 1:
        return [float(np.float32(1.0) / (np.float32(1.0) + np.exp(-logits[0])))]
    shifted = np.exp(logits - logits.max())
    return [float(p) for p in shifted / shifted.sum()]


def reference_scores(rows: list[tuple[str, int, list[float]]], shares: dict[str, float]) -> dict[str, float]:
    """current-contract §5 in float64, written out: rows are (dataset, 3-class label, probabilities)."""
    def provenance(name: str) -> str:
        return "holdout" if "-holdout-" in name else "gasstation" if "gasstation" in name else "public"

    n = len(rows)
    counts: dict[str, int] = {}
    for name, _, _ in rows:
        counts[provenance(name)] = counts.get(provenance(name), 0) + 1
    if any(shares.get(p, 0.0) for p in ("public", "holdout", "gasstation")):
        weights = [shares.get(provenance(name), 0.0) * n / counts[provenance(name)] for name, _, _ in rows]
    else:
        weights = [1.0] * n
    total_weight = math.fsum(weights)

    binary = [[0.0, 0.0], [0.0, 0.0]]
    multi = [[0.0] * K for _ in range(K)]
    binary_brier, multi_brier, correct = [], [], []
    for (name, label, probs), w in zip(rows, weights):
        y = 0 if label == 0 else 1
        if len(probs) == 1:
            p_ai = probs[0]
            projected = [1.0 - p_ai, p_ai, 0.0]
        else:
            p_ai = 1.0 - probs[0]
            projected = (list(probs) + [0.0] * K)[:K]
        binary[y][1 if p_ai > 0.5 else 0] += w
        guess = max(range(K), key=lambda k: (projected[k], -k))  # argmax, ties to the lower index
        multi[label][guess] += w
        q = min(max(p_ai, 1e-7), 1.0 - 1e-7)
        binary_brier.append(w * (q - y) ** 2)
        multi_brier.append(w * sum((projected[k] - (1.0 if k == label else 0.0)) ** 2 for k in range(K)))
        correct.append(w if guess == label else 0.0)

    (tn, fp), (fn, tp) = binary
    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    binary_mcc = (tp * tn - fp * fn) / denominator if denominator else 0.0
    total = sum(sum(row) for row in multi)
    trace = sum(multi[k][k] for k in range(K))
    true_counts = [sum(multi[k]) for k in range(K)]
    guessed = [sum(multi[i][k] for i in range(K)) for k in range(K)]
    numerator = total * trace - sum(t * p for t, p in zip(true_counts, guessed))
    denominator = math.sqrt((total ** 2 - sum(p * p for p in guessed)) * (total ** 2 - sum(t * t for t in true_counts)))
    gorodkin = numerator / denominator if denominator else 0.0

    def sn34(mcc: float, brier: float, baseline: float) -> float:
        m = min(1.0, max(0.0, (mcc + 1.0) / 2.0)) ** 1.2
        b = max(0.0, (baseline - brier) / baseline) ** 1.8
        return min(1.0, max(0.0, math.sqrt(max(1e-12, m * b))))

    b_brier = math.fsum(binary_brier) / total_weight
    m_brier = math.fsum(multi_brier) / total_weight
    return {
        "binary_mcc": binary_mcc,
        "binary_brier": b_brier,
        "binary_sn34_score": sn34(binary_mcc, b_brier, 0.25),
        "gorodkin_mcc": gorodkin,
        "multiclass_brier": m_brier,
        "multiclass_sn34_score": sn34(gorodkin, m_brier, (K - 1) / K),
        "accuracy": math.fsum(correct) / total_weight,
    }


def kit_scores(logit_rows: np.ndarray, names: list[str], labels: list[int], shares: dict[str, float]) -> dict:
    """The bench's own path: score_row per float32 output row, then score_rows over the records."""
    options = ScoringOptions(scoring="multiclass", shares=shares, num_classes=K)
    state = SimpleNamespace(profile=get_profile("current"), scoring=options)
    records = []
    for name, label, row in zip(names, labels, logit_rows):
        records.append({"dataset": name, "sample": str(len(records)), "label": 0 if label == 0 else 1,
                        "class_label": label, **score_row(row, state, 0 if label == 0 else 1, label)})
    return score_rows(records, options)


@pytest.mark.parametrize("width", [1, 2, 3, 4])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("shares", [{}, SHARES], ids=["unweighted", "provenance-weighted"])
def test_scores_equal_a_float64_reference(width: int, seed: int, shares: dict[str, float]) -> None:
    rng = np.random.default_rng(seed * 10 + width)
    n = 300
    # Logits of a confident-ish model, so p(AI) sits near 0 and 1 where float32 loses the most digits.
    logit_rows = (rng.normal(0.0, 4.0, size=(n, width))).astype(np.float32)
    labels = rng.integers(0, K, size=n).tolist()
    names = [DATASETS[i] for i in rng.integers(0, len(DATASETS), size=n)]
    kit = kit_scores(logit_rows, names, labels, shares)
    reference = reference_scores(
        [(name, label, evaluator_probabilities(row)) for name, label, row in zip(names, labels, logit_rows)], shares)
    for key, expected in reference.items():
        assert abs(kit[key] - expected) <= TOLERANCE, (key, kit[key], expected)


def test_p_ai_is_formed_in_float64_not_float32() -> None:
    """p[0] = 0.5 − 2⁻²⁵ in float32: 1 − p[0] rounds to exactly 0.5 in float32 (not AI), but exceeds it in float64."""
    p0 = np.float32(0.5) - np.float32(2.0 ** -25)
    assert np.float32(1.0) - p0 == np.float32(0.5)
    logit_real = np.float32(math.log(float(p0)))
    # Logits [log p0, log(1 − p0)] give p[0] = p0 up to float32 rounding; search a row whose softmax gives exactly p0.
    for step in range(-64, 65):
        row = np.array([logit_real, np.float32(math.log(1.0 - float(p0))) + np.float32(step * 2.0 ** -26)], dtype=np.float32)
        shifted = np.exp(row - row.max())
        if (shifted / shifted.sum())[0] == p0:
            break
    else:
        pytest.skip("no float32 row gives p[0] = 0.5 − 2⁻²⁵ exactly on this platform")
    state = SimpleNamespace(profile=get_profile("current"), scoring=ScoringOptions(num_classes=K))
    scored = score_row(row, state, 1, 1)
    assert scored["p_ai"] == 1.0 - float(p0) > 0.5
    assert scored["predicted"] == 1
