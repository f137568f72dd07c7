"""Stage timings of one bench run, under the names gasbench 0.11 reports in `metrics.performance`.

Each stage keeps its number of calls, total seconds and longest call. `prepare` is
measured in the decode workers (decoding, the evaluator's image re-save, preprocessing,
or a pixel-cache read) and summed over them, so with several workers it can exceed the
wall time; the main thread's stages (`model_load_wait`, `input_wait`, `batch_assembly`,
`inference`, `scoring`) run one after another and add up to at most `wall`.

`model_load_wait` is the kit's own: the time the main thread waited for a bundle's worker to finish
loading after decoding had started (the evaluator loads before it decodes, so it has none). It is
measured only for a model that loads in the background; a model loaded before the run (onnxruntime,
a bundle in the kit's own Python) records no call, and the summary leaves the stage out.

In a sharded run each stage is summed over the processes (see `validator_sim.shards`), so the
main-thread stages can add up to more than `wall`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: Stages the main thread spends its time in, in pipeline order; their sum never exceeds `wall`.
MAIN_THREAD_STAGES = ("model_load_wait", "input_wait", "batch_assembly", "inference", "scoring")
#: Every stage a run reports, in the order the summary prints them.
STAGES = ("wall", *MAIN_THREAD_STAGES, "prepare")


class StageTimings:
    """Thread-safe totals per stage: calls, seconds, max_seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stages: dict[str, dict[str, float]] = {}

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        """Time the block (also when it raises) and add it to `stage`."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.observe(stage, time.perf_counter() - started)

    def observe(self, stage: str, seconds: float) -> None:
        with self._lock:
            entry = self._stages.setdefault(stage, {"calls": 0, "seconds": 0.0, "max_seconds": 0.0})
            entry["calls"] += 1
            entry["seconds"] += seconds
            entry["max_seconds"] = max(entry["max_seconds"], seconds)

    def absorb(self, snapshot: dict[str, Any], skip: tuple[str, ...] = ()) -> None:
        """Add another run's `snapshot()` (another process's share of a sharded run), but for the stages in `skip`."""
        with self._lock:
            for name, other in snapshot["stages"].items():
                if name in skip or not other["calls"]:
                    continue
                entry = self._stages.setdefault(name, {"calls": 0, "seconds": 0.0, "max_seconds": 0.0})
                entry["calls"] += other["calls"]
                entry["seconds"] += other["seconds"]
                entry["max_seconds"] = max(entry["max_seconds"], other["max_seconds"])

    def seconds(self, stage: str) -> float:
        with self._lock:
            return self._stages.get(stage, {}).get("seconds", 0.0)

    def snapshot(self) -> dict[str, Any]:
        """`{"stages": {name: {calls, seconds, max_seconds}}}` for every stage, zeros for those never entered."""
        with self._lock:
            return {"stages": {name: dict(self._stages.get(name, {"calls": 0, "seconds": 0.0, "max_seconds": 0.0}))
                               for name in STAGES}}


def performance_line(performance: dict[str, Any], decode_workers: int | None, processes: int = 1) -> str:
    """One line of seconds per stage for the bench summary (a stage never entered, such as the wait for a model
    that was loaded before the run, is left out)."""
    stages = performance["stages"]
    main = " · ".join(f"{name.replace('_', ' ')} {stages[name]['seconds']:.2f}" for name in MAIN_THREAD_STAGES
                      if name != "model_load_wait" or stages[name]["calls"])
    per = " each" if processes > 1 else ""
    workers = f"summed over {decode_workers} decode worker(s){per}, " if decode_workers else ""
    title = f"stages (s), summed over {processes} processes" if processes > 1 else "stages (s)"
    slowest = " (the slowest process's)" if processes > 1 else ""
    return (f"{title}: wall {stages['wall']['seconds']:.2f}{slowest} · {main} · prepare "
            f"{stages['prepare']['seconds']:.2f} ({workers}beside inference)")
