"""The decode side of `kit bench`'s pipeline: the pixel cache in front of decoding, and how many workers decode.

The model keeps every core (onnxruntime's intra-op threads, or torch's for a bundle, sleep
while it waits for a batch).
The decode pool has one thread per core, but only `active` of them decode at a time,
and `active` is chosen from the work itself: after every batch the feed compares the
running mean of the wall time one worker spends per sample (decoding, or reading the
cache) with the inference time per sample, and lets ceil(1.25 × decode / inference)
workers run — as many as it takes for decoding to stay a quarter ahead of inference,
and no more, so extra decoders do not take cores from the model while it has a batch.
Cached samples cost almost nothing to "decode", so a cached run drops to one worker
and gives inference the machine. `--decode-workers N` fixes the count instead.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from validator_sim.decode import MediaSource
from validator_sim.pixel_cache import PixelCache, PixelRecipe, Prepared, PrepareFn
from validator_sim.timing import StageTimings

#: Weight of the newest sample in the running means (about the last 10 samples count).
SMOOTHING = 0.1
#: Decoding is provisioned this much faster than inference: costs vary from sample to sample, and a
#: decoder running at 80 % of inference speed keeps the model waiting whenever a slow clip comes up.
HEADROOM = 1.25


class SampleFeed:
    """`prepare` for the decode pool: cached when a cache is given, gated to the chosen number of workers."""

    def __init__(self, prepare: PrepareFn, *, cores: int, decode_workers: int | None = None,
                 cache: PixelCache | None = None, recipe: PixelRecipe | None = None,
                 timings: StageTimings | None = None):
        if cache is not None and recipe is None:
            raise ValueError("a pixel cache needs the recipe of the pixels it holds")
        self._prepare = cache.cached(prepare, recipe) if cache is not None and recipe is not None else prepare
        self.cache = cache
        #: Where each sample's decode (or cache read) time is added, as the `prepare` stage.
        self.timings = timings
        self.fixed = decode_workers is not None
        #: Threads in the decode pool.
        self.max_workers = decode_workers or max(1, cores)
        #: How many of them may decode at once; starts wide so the first batch arrives soonest.
        self.active = self.max_workers
        self.decode_s_per_sample: float | None = None
        self.inference_s_per_sample: float | None = None
        self._used = {self.active}
        self._inference_batches = 0
        self._cond = threading.Condition()
        self._running = 0
        self._next_ticket = 0
        self._turn = 0

    def prepare(self, payload: MediaSource) -> Prepared:
        """One sample's pixels or DecodeError; waits (first come, first served) while `active` workers are busy."""
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            while ticket != self._turn or self._running >= self.active:
                self._cond.wait()
            self._turn += 1
            self._running += 1
            self._cond.notify_all()
        started = time.perf_counter()
        try:
            return self._prepare(payload)
        finally:
            elapsed = time.perf_counter() - started
            if self.timings is not None:
                self.timings.observe("prepare", elapsed)
            with self._cond:
                self._running -= 1
                self.decode_s_per_sample = _running_mean(self.decode_s_per_sample, elapsed)
                self._cond.notify_all()

    def observe_inference(self, seconds: float, samples: int) -> None:
        """Record one batch's inference time and re-balance the decode workers (the first batch is a warm-up)."""
        self._inference_batches += 1
        if samples < 1 or seconds <= 0 or self._inference_batches == 1:
            return
        with self._cond:
            self.inference_s_per_sample = _running_mean(self.inference_s_per_sample, seconds / samples)
            if self.fixed or self.decode_s_per_sample is None:
                return
            wanted = math.ceil(HEADROOM * self.decode_s_per_sample / self.inference_s_per_sample)
            self.active = min(self.max_workers, max(1, wanted))
            self._used.add(self.active)
            self._cond.notify_all()

    def report(self) -> dict[str, Any]:
        """The split and the cache's work, for the run's results under `kit`."""
        def ms(value: float | None) -> float | None:
            return None if value is None else value * 1000

        return {
            "decode_workers": self.active,
            "core_split": {
                "decode_workers": self.active,
                "chosen_by": "--decode-workers" if self.fixed else "measurement",
                "decode_pool_threads": self.max_workers,
                "decode_workers_used": sorted(self._used),
                "decode_ms_per_sample": ms(self.decode_s_per_sample),
                "inference_ms_per_sample": ms(self.inference_s_per_sample),
            },
            "pixel_cache": None if self.cache is None else {"location": str(self.cache.root), **self.cache.stats.to_dict()},
        }


def _running_mean(previous: float | None, value: float) -> float:
    return value if previous is None else previous + SMOOTHING * (value - previous)


def feed_summary(kit: dict[str, Any]) -> list[str]:
    """The lines `kit bench` prints about the decode split and the cache, from a run's results["kit"]."""
    split = kit.get("core_split")
    if not split:
        return []
    lines = [f"decode workers: {split['decode_workers']} of {split['decode_pool_threads']} beside "
             f"{kit['threads']} inference thread(s), chosen by {split['chosen_by']}"
             + (f" (running means it chose by: decode {split['decode_ms_per_sample']:.1f} ms/sample, inference "
                f"{split['inference_ms_per_sample']:.1f} ms/sample, the first batch left out)"
                if split["decode_ms_per_sample"] is not None and split["inference_ms_per_sample"] is not None else "")]
    cache = kit.get("pixel_cache")
    if cache is None:
        lines.append("pixel cache: off")
    else:
        errors = f", {cache['error_hits']} of them cached decode errors" if cache["error_hits"] else ""
        failure = f"; writing stopped: {cache['write_failure']}" if cache["write_failure"] else ""
        lines.append(f"pixel cache: {cache['hits']} sample(s) read from {cache['location']}{errors}, "
                     f"{cache['misses']} decoded and stored{failure}")
    return lines
