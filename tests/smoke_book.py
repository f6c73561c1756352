"""Stage the smoke-profile book: the chapters as executed by the notebook tests, not re-run.

``python -m tests.smoke_book OUT`` copies the book's sources into ``OUT`` with the
executed notebooks that ``NOTEBOOK_OUTPUT_DIR=OUT/notebooks pytest -m notebook`` left
there, and a ``_config.yml`` that does not execute again. ``jupyter-book build OUT``
then renders what CI ran, for the browser test.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def stage(out: Path) -> None:
    notebooks = out / "notebooks"
    expected = sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb"))
    missing = [n for n in expected if not (notebooks / n).exists()]
    if missing:
        raise SystemExit(f"{notebooks}: executed notebooks missing: {missing} (run the notebook tests first)")
    shutil.copytree(REPO / "book", out / "book", dirs_exist_ok=True)
    shutil.copy(REPO / "_toc.yml", out / "_toc.yml")
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    config["title"] = f"{config['title']} (smoke profile)"
    (out / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))


if __name__ == "__main__":
    stage(Path(sys.argv[1]))
