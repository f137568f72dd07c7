"""Sharded `kit bench`: one frozen sample plan benched by several processes, one report.

`bench` is what the command line calls. Without sharding it is `run_request`. With
`--shards N` this process becomes rank 0 and starts N − 1 more on this machine
(`python -m validator_sim.shards`); under `torchrun` every process is already one rank
(RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE come from the environment), across
GPUs or machines. Every rank then runs the same `run_request` with its `Shard` in the
request: it decodes and infers the batches numbered rank mod WORLD_SIZE of the plan on
its own device (the LOCAL_RANK-th GPU when there are GPUs; onnxruntime or torch sees
only that one) with cores ÷ LOCAL_WORLD_SIZE threads, and rank 0 gathers every rank's
batch outcomes and scores them once, in plan order (see `validator_sim.run`).

The ranks talk over torch.distributed with gloo, on GPUs too: what travels is Python
records, which NCCL would only copy to a GPU and back, and gloo's failures surface as
errors rather than hangs. Beside the process group's store every rank keeps a
heartbeat (samples done). A rank that raises posts its one line under `failed`; the
others stop at their next batch, and rank 0 raises `shard k/N failed: …` — no report is
written. Rank 0 also notices a local rank that died without a word (its exit code),
and a rank whose heartbeat has not moved for `STALL_S` seconds while the others wait;
a remote rank that dies ends the job through torchrun, which stops every rank. Ctrl-C
stops every rank at its next batch; rank 0 scores the batches finished before the
first unfinished one and writes the report marked incomplete, as one process would.
"""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from discriminator.errors import KitError, UsageError, first_line
from validator_sim.pixel_cache import PixelCache
from validator_sim.run import BenchRequest, BenchResult, run_request
from validator_sim.shard_plan import Shard, ShardReport

#: A rank whose heartbeat has not moved for this long, while another waits for it, is declared stalled.
STALL_S = float(os.environ.get("KIT_SHARD_STALL_S", "900"))
#: How often a waiting rank looks at the others.
POLL_S = 0.2
#: How long a failing rank waits for rank 0 to take its message before it exits (torchrun then stops the rest).
ACK_WAIT_S = 30.0
#: The folder holding the kit's packages, for the processes `--shards N` starts.
KIT_ROOT = Path(__file__).resolve().parents[1]
#: torch.distributed's own limit on one collective: the ranks reach each one together (they wait for each other
#: beforehand, watching for failures), so this only bounds the transfer of the records.
COLLECTIVE_TIMEOUT = timedelta(minutes=10)
#: How long rank 0 of `--shards N` waits for the processes it started to join.
JOIN_TIMEOUT_S = 300.0


class ShardFailed(KitError):
    """Another rank of the run failed (or stopped answering); carries its one line."""


@dataclass
class _Rank:
    """This process's place in the run."""

    rank: int
    size: int
    local_rank: int
    local_size: int
    #: Rank 0 of a `--shards N` run: the local processes it started.
    children: list[subprocess.Popen] = field(default_factory=list)
    #: Their stderr, for the last line of one that died without a word.
    child_logs: list[Path] = field(default_factory=list)

    def label(self, rank: int | None = None) -> str:
        return Shard(self.rank if rank is None else rank, self.size).label()


def bench(request: BenchRequest, on_progress: Callable[[int, int], None] | None = None,
          shards: int | None = None) -> BenchResult | None:
    """Bench `request` in one process, in `shards` processes on this machine, or as this torchrun rank.

    Returns the result on rank 0 (or in a single process) and None on the other ranks.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size > 1:
        if shards is not None:
            raise UsageError("--shards starts processes on one machine, and torchrun has already started them",
                             "drop --shards under torchrun (its --nproc_per_node sets the count)")
        rank = int(os.environ["RANK"])
        world = _Rank(rank, size, int(os.environ.get("LOCAL_RANK", rank)), int(os.environ.get("LOCAL_WORLD_SIZE", size)))
        return _run_rank(request, on_progress, world, None)
    if shards is None or shards == 1:
        return run_request(request, on_progress)
    if shards < 1:
        raise UsageError(f"--shards must be at least 1, got {shards}", "pass the number of processes, e.g. --shards 2")
    return _launch(request, on_progress, shards)


def _launch(request: BenchRequest, on_progress: Callable[[int, int], None] | None, shards: int) -> BenchResult | None:
    """Rank 0 of `shards` local processes: start the other ranks, bench beside them, then see them out."""
    port = _free_port()
    world = _Rank(0, shards, 0, shards)
    with tempfile.TemporaryDirectory(prefix="kit-shards-") as scratch:
        request_file = Path(scratch) / "request.pickle"
        cache = request.pixel_cache
        cache_args = (cache.root, cache.limit_bytes) if cache is not None else None
        request_file.write_bytes(pickle.dumps((replace(request, pixel_cache=None), cache_args)))
        try:
            for rank in range(1, shards):
                log = Path(scratch) / f"rank{rank}.log"
                env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "LOCAL_RANK": str(rank), "WORLD_SIZE": str(shards), "LOCAL_WORLD_SIZE": str(shards),
                       "PYTHONPATH": os.pathsep.join(filter(None, (str(KIT_ROOT), os.environ.get("PYTHONPATH"))))}
                with log.open("wb") as stderr:
                    world.children.append(subprocess.Popen(
                        [sys.executable, "-m", "validator_sim.shards", str(request_file)], env=env,
                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr))
                world.child_logs.append(log)
            return _run_rank(request, on_progress, world, _local_store(world, "127.0.0.1", port))
        finally:
            for child in world.children:  # they leave once their records are gathered, or once the run failed
                try:
                    child.wait(timeout=ACK_WAIT_S)
                except subprocess.TimeoutExpired:
                    pass
                if child.poll() is None:
                    child.terminate()
                    try:
                        child.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        child.kill()
                        child.wait()


def _local_store(world: _Rank, host: str, port: int) -> Any:
    """The store of a `--shards N` run, once every rank has joined it; rank 0 hosts it and watches its children
    while they start, so one that cannot start ends the run with its own last line."""
    import torch.distributed as dist

    store = dist.TCPStore(host, port, world.size, is_master=world.rank == 0, timeout=COLLECTIVE_TIMEOUT,
                          wait_for_workers=False)
    store.set(f"joined/{world.rank}", "1")
    if world.rank != 0:
        return store
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    for rank, child in enumerate(world.children, start=1):
        while not store.check([f"joined/{rank}"]):
            if child.poll() is not None:
                raise ShardFailed(f"{world.label(rank)} failed: {_last_line(world.child_logs[rank - 1], child)}")
            if time.monotonic() > deadline:
                raise ShardFailed(f"{world.label(rank)} did not start within {JOIN_TIMEOUT_S:.0f} s")
            time.sleep(POLL_S)
    return store


def _run_rank(request: BenchRequest, on_progress: Callable[[int, int], None] | None, world: _Rank,
              store: Any) -> BenchResult | None:
    """Join the process group (over `store`, else torchrun's environment), bench this rank's shard, and leave; a
    failure here is posted for the others."""
    import torch.distributed as dist

    _pin_device(world.local_rank)
    if store is None:
        dist.init_process_group("gloo", init_method="env://", timeout=COLLECTIVE_TIMEOUT)
        store = dist.distributed_c10d._get_default_store()
    else:
        dist.init_process_group("gloo", store=dist.PrefixStore("group/", store), rank=world.rank,
                                world_size=world.size, timeout=COLLECTIVE_TIMEOUT)
    link = _Link(world, dist.PrefixStore("kit-bench/", store))
    try:
        return run_request(replace(request, shard=Shard(world.rank, world.size, world.local_size)),
                           on_progress if world.rank == 0 else None, link)
    except ShardFailed:
        raise
    except BaseException as exc:
        link.post_failure(exc)
        raise
    finally:
        dist.destroy_process_group()


class _Link:
    """`validator_sim.run.ShardLink` over torch.distributed: heartbeats, the stop and failure flags, the gather."""

    def __init__(self, world: _Rank, store: Any):
        import torch.distributed as dist

        self.world, self.store = world, store
        self.phase = 0  # one per sharded pass (the base model, then a --compare model)
        self._beat(0)
        dist.barrier()  # every heartbeat exists before anyone reads one

    def _key(self, name: str, rank: int | None = None) -> str:
        return f"{self.phase}/{name}" + ("" if rank is None else f"/{rank}")

    def _beat(self, done: int) -> None:
        self.store.set(self._key("beat", self.world.rank), str(done))

    def progress(self, done: int, total: int) -> int:
        self._beat(done)
        self._raise_if_failed()
        if self.store.check([self._key("stop")]):
            raise KeyboardInterrupt
        if self.world.rank != 0:
            return done
        self._check_children()
        keys = [self._key("beat", rank) for rank in range(self.world.size)]
        return min(total, sum(int(value) for value in self.store.multi_get(keys)))

    def gather(self, report: ShardReport) -> list[ShardReport] | None:
        import torch.distributed as dist

        if report.frontier is not None:  # interrupted here: the others stop at their next batch
            self.store.set(self._key("stop"), "1")
        self.store.set(self._key("ready", self.world.rank), "1")
        self._wait_for_everyone()
        self.phase += 1
        self._beat(0)  # the next pass's heartbeat, in place before rank 0 can read it
        gathered: list[ShardReport] | None = [None] * self.world.size if self.world.rank == 0 else None  # type: ignore[list-item]
        dist.gather_object(report, gathered, dst=0)
        return gathered

    def _wait_for_everyone(self) -> None:
        """Until every rank is ready to send; raises when one fails, dies or stalls meanwhile."""
        others = [rank for rank in range(self.world.size) if rank != self.world.rank]
        seen: dict[int, tuple[str, float]] = {}
        while True:
            self._raise_if_failed()
            self._check_children()
            waiting = [rank for rank in others if not self.store.check([self._key("ready", rank)])]
            if not waiting:
                return
            now = time.monotonic()
            for rank in waiting:
                beat = self.store.get(self._key("beat", rank)).decode()
                if rank not in seen or seen[rank][0] != beat:
                    seen[rank] = (beat, now)
                elif now - seen[rank][1] > STALL_S:
                    self._fail(f"{self.world.label(rank)} stalled: no batch finished in {STALL_S:.0f} s "
                               f"(after {beat} samples)")
            time.sleep(POLL_S)

    def _raise_if_failed(self) -> None:
        if self.store.check(["failed"]):
            code, message = self.store.get("failed").decode().split("\n", 1)
            if self.world.rank == 0:
                self.store.set("ack", "1")
                raise ShardFailed(message, "no report was written", exit_code=int(code))
            raise ShardFailed(f"stopped: {message}", exit_code=int(code))

    def _check_children(self) -> None:
        """Rank 0 of `--shards N`: a local rank that exited without posting a failure (killed, crashed)."""
        for rank, child in enumerate(self.world.children, start=1):
            code = child.poll()
            if code is not None and code != 0 and not self.store.check(["failed"]):
                self._fail(f"{self.world.label(rank)} failed: {_last_line(self.world.child_logs[rank - 1], child)}")

    def _fail(self, message: str) -> None:
        """Rank 0: end the run for every rank with `message`."""
        self.store.compare_set("failed", "", f"1\n{message}")
        self._raise_if_failed()

    def post_failure(self, exc: BaseException) -> None:
        """This rank failed: tell the others, and give rank 0 a moment to take the message before exiting."""
        try:
            code = 130 if isinstance(exc, KeyboardInterrupt) else getattr(exc, "exit_code", 1)
            self.store.compare_set("failed", "", f"{code}\n{self.world.label()} failed: {_one_line(exc)}")
            if self.world.rank == 0:
                return
            deadline = time.monotonic() + ACK_WAIT_S
            while time.monotonic() < deadline and not self.store.check(["ack"]):
                time.sleep(POLL_S)
        except Exception:  # the store went with rank 0: nobody is left to tell
            pass


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, KitError):
        return exc.one_line()
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return f"{type(exc).__name__}: {first_line(exc)}" if first_line(exc) else type(exc).__name__


def _last_line(log: Path, child: subprocess.Popen) -> str:
    """Why a local rank ended: the last line it wrote to stderr, and its exit code."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()] if log.exists() else []
    how = f"exit code {child.returncode}" if child.returncode >= 0 else f"killed by signal {-child.returncode}"
    return f"{lines[-1]} ({how})" if lines else f"the process ended without a word ({how})"


def _pin_device(local_rank: int) -> None:
    """Let onnxruntime and torch see only this rank's GPU (the LOCAL_RANK-th visible one), before either opens CUDA."""
    import torch

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d.strip() for d in visible.split(",") if d.strip()] if visible is not None else \
        [str(i) for i in range(torch.cuda.device_count())]
    if ids:
        os.environ["CUDA_VISIBLE_DEVICES"] = ids[local_rank % len(ids)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _child_main(request_file: str) -> int:
    """A rank that `--shards N` started: bench its shard; a failure is one line on stderr and a non-zero exit."""
    request, cache_args = pickle.loads(Path(request_file).read_bytes())
    if cache_args is not None:
        request = replace(request, pixel_cache=PixelCache(*cache_args))
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    world = _Rank(rank, size, int(os.environ["LOCAL_RANK"]), int(os.environ["LOCAL_WORLD_SIZE"]))
    try:
        _run_rank(request, None, world, _local_store(world, os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])))
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:
        print(_one_line(exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1]))
