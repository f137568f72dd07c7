"""What the processes of a sharded `kit bench` pass between them (the pipeline is `validator_sim.run`, the
processes and their talk `validator_sim.shards`).

A `Shard` names one process's part of the frozen sample plan; it benches its batches
and sends rank 0 a `ShardReport`: one `BatchOutcome` per batch (which samples decoded,
and the model's raw outputs or failure), for rank 0 to replay in plan order. A
`ShardLink` is how the pipeline reaches the other processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from discriminator.errors import UsageError


@dataclass(frozen=True)
class Shard:
    """This process's part of a sharded bench: the batches numbered `index` modulo `count` of the plan."""

    index: int
    count: int
    #: Processes of the run on this machine (they share its cores).
    local_count: int = 1

    def __post_init__(self) -> None:
        if not (self.count >= 1 and 0 <= self.index < self.count and 1 <= self.local_count <= self.count):
            raise UsageError(f"shard {self.index} of {self.count} ({self.local_count} on this machine) is not a shard",
                             "pass --shards N with N ≥ 1, or run under torchrun")

    def owns(self, batch_number: int) -> bool:
        return batch_number % self.count == self.index

    def label(self) -> str:
        """`shard 2/4` (counted from 1)."""
        return f"shard {self.index + 1}/{self.count}"


@dataclass(frozen=True)
class Inference:
    """One session.run: the [B, K] logits or the one-line failure, and its seconds."""

    logits: np.ndarray | None
    failure: str | None
    elapsed_s: float


@dataclass(frozen=True)
class BatchOutcome:
    """What happened to one numbered batch of the plan in a shard, for rank 0 to replay in plan order.

    `marks` holds every sample handed to the batch: (key, None) when it decoded, else (key, the
    DecodeError's reason, decord's frame shape when it was a DecordChannelClip). `inference` is None
    when nothing of the batch reached the model; `dataset_error` marks a source that stopped being
    readable just before batch `number` (then the batch fields are empty).
    """

    number: int
    plan_index: int
    marks: tuple[tuple[str, str | None, tuple[int, ...] | None], ...] = ()
    inference: Inference | None = None
    dataset_error: str | None = None


@dataclass
class ShardReport:
    """One process's share of a sharded run, sent to rank 0."""

    shard: Shard
    outcomes: list[BatchOutcome]
    #: The first batch number of its own that it did not finish (None: it finished its share).
    frontier: int | None
    #: (dataset, samples available, samples chosen, a digest of the choice) per plan: every rank must agree.
    plan_digest: tuple[tuple[str, int, int, int], ...]
    timings: dict[str, Any]
    wall_s: float
    samples: int


class ShardLink(Protocol):
    """How a sharded run talks to its other processes (`validator_sim.shards` implements it)."""

    def progress(self, done: int, total: int) -> int:
        """Called after each batch with this process's count; returns the run's count so far. Raises
        KeyboardInterrupt when the run is being interrupted elsewhere, or an error when another shard failed."""
        ...

    def gather(self, report: ShardReport) -> list[ShardReport] | None:
        """Every shard's report in rank order on rank 0, None on the others; raises when a shard failed."""
        ...
