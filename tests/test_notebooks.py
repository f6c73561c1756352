"""Every chapter: committed clean, parameterised, and runs top to bottom with profile=smoke."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

from .conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]


def test_there_are_chapters():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_has_parameters_and_colab_cells(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
    assert 'profile = "cpu"' in params[0].source, f"{path.name}: the default profile must be cpu"
    assert "google.colab" in code[0].source, f"{path.name}: the first code cell must be the Colab set-up"


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_runs_with_smoke_profile(path, tmp_path):
    import papermill

    out_dir = Path(os.environ.get("NOTEBOOK_OUTPUT_DIR", tmp_path))
    out_dir.mkdir(parents=True, exist_ok=True)
    env_before = dict(os.environ)
    try:
        papermill.execute_notebook(
            str(path), str(out_dir / path.name), parameters={"profile": "smoke"},
            cwd=str(path.parent), kernel_name="python3", progress_bar=False,
        )
    finally:
        os.environ.clear()
        os.environ.update(env_before)
