"""Every chapter: committed clean, parameterised, and runs top to bottom with profile=smoke."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

from .conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]


def test_the_chapters_are_numbered_and_in_the_table_of_contents():
    """Chapters 01, 02, ... without a gap, each one in ``_toc.yml`` and in the README's table."""
    import yaml

    assert [p.stem[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(1, len(NOTEBOOKS) + 1)] and len(NOTEBOOKS) >= 8
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert [f for f in files if f.startswith("notebooks/")] == [f"notebooks/{p.stem}" for p in NOTEBOOKS]
    readme = (REPO / "README.md").read_text()
    missing = [p.name for p in NOTEBOOKS if f"`notebooks/{p.name}`" not in readme]
    assert not missing, f"README.md's chapter table lacks {missing}"


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
