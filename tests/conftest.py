"""Shared test set-up: every test session gets its own pixel cache, so no test reads or fills the user's."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def private_pixel_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["KIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("kit-cache"))


@pytest.fixture(autouse=True)
def no_python_left_selected(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test's `--python` (kept in the environment for the processes a bench starts) never reaches the next test."""
    monkeypatch.delenv("KIT_BUNDLE_PYTHON", raising=False)


@pytest.fixture(scope="session")
def evaluator_runtime():
    """The evaluator's runtime (gasbench 0.11.1's pinned versions), made by `make test` before pytest starts."""
    from validator_sim.runtime import installed_evaluator_runtime, runtime_home

    runtime = installed_evaluator_runtime()
    if runtime is None:
        pytest.fail(f"the evaluator's runtime is not at {runtime_home()}: run the suite with `make test`, which makes "
                    "it, or run `kit runtime install` first")
    return runtime


@pytest.fixture
def without_evaluator_runtime(tmp_path, monkeypatch):
    """Bundles run under the kit's own Python, as on a machine where `kit runtime install` was never run."""
    monkeypatch.setenv("KIT_RUNTIME_DIR", str(tmp_path / "no-runtimes"))
