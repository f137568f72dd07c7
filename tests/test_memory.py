"""`keep_freed_memory`: torch's large buffers stop page-faulting, and no number changes."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Three forwards of a conv whose output is ~100 MiB, after a warm-up of the same shape: the page faults they cost and their bytes.
PROBE = """
import hashlib, json, resource, torch
from validator_sim.bundle_runtime import keep_freed_memory
kept = keep_freed_memory()
torch.manual_seed(0)
torch.set_num_threads(1)
conv = torch.nn.Conv2d(3, 32, 3, padding=1)
x = torch.rand(64, 3, 112, 112)
digest = hashlib.sha256()
with torch.no_grad():
    for _ in range(2):  # warm-ups shaped like a timed forward (output + its bytes): the heap reaches its peak here,
        conv(x).numpy().tobytes()  # whichever free chunks the imports happened to leave (one warm-up was not always enough)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        digest.update(conv(x).numpy().tobytes())
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"kept": kept, "faults": faults, "sha256": digest.hexdigest()}))
"""

glibc_only = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="the tuning is glibc's mallopt")


def _probe(keep: str) -> dict:
    env = {**os.environ, "KIT_KEEP_FREED_MEMORY": keep}
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@glibc_only
def test_kept_memory_stops_the_page_faults_and_changes_no_number() -> None:
    plain, kept = _probe("0"), _probe("1")
    assert plain["kept"] is False and kept["kept"] is True
    assert plain["faults"] > 20_000  # each 100 MiB output is faulted in afresh: ~25,000 pages a forward
    assert kept["faults"] < plain["faults"] / 20
    assert kept["sha256"] == plain["sha256"]
