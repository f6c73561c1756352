"""benchmarks/gpu_check.py: the one prepared GPU script runs on the CPU with tiny configs and prints its figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .conftest import REPO

SCRIPT = REPO / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def tiny_run():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--tiny"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    return lines, json.loads(lines[-1])


def test_prints_the_figures_of_each_part(tiny_run):
    lines, _ = tiny_run
    text = "\n".join(lines)
    student = [line for line in lines if line.startswith("(a) student")]
    assert len(student) == 2 and all("pairs/s" in line and "peak memory" in line for line in student)
    (teacher,) = [line for line in lines if line.startswith("(b) teacher TransformersBackend")]
    assert "windows/s" in teacher and "tokens/s" in teacher
    assert "(c)" not in text  # the efficiency harness is skipped with --tiny


def test_json_summary_holds_positive_figures(tiny_run):
    _, summary = tiny_run
    assert summary["device"] == "cpu" and summary["tiny"] and summary["dtype"] == "float32"
    batches = summary["student"]["batches"]
    assert [(b["queries"], b["passages"]) for b in batches] == [(1, 4), (2, 4)]
    for b in batches:
        assert b["pairs"] == b["steps"] * b["queries"] * b["passages"]
        assert b["pairs_per_s"] > 0 and b["peak_memory_mb"] > 0 and b["seconds"] > 0
        assert b["last_loss"] > 0  # RankNet on 4 ordered passages: every pair counts
    t = summary["teacher"]
    assert t["windows"] == t["queries"] == 2  # 20 passages, window 20: one window a query
    for key in ("windows_per_s", "tokens_per_s", "generated_tokens_per_s", "prompt_tokens_per_window", "peak_memory_mb"):
        assert t[key] > 0, key
    assert summary["efficiency"] == {"skipped": True}


def test_cuda_without_a_gpu_is_a_clear_error():
    import torch

    if torch.cuda.is_available():  # pragma: no cover - on a GPU machine
        pytest.skip("a GPU is present")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cuda", "--tiny"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "--device cuda, but torch sees no CUDA device" in proc.stderr
