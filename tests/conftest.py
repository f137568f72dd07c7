"""Shared test set-up: every test session gets its own pixel cache, so no test reads or fills the user's."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def private_pixel_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["KIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("kit-cache"))
