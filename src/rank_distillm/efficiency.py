"""Efficiency: latency, throughput and peak memory of a cross-encoder student and an LLM teacher.

The harness times the re-ranking of one query's top-``k`` (``k`` in the profile's depths):

- **student**: a ``CrossEncoder`` scoring the ``k`` query-passage pairs in batches, with
  PyTorch (``CrossEncoder.predict``) or an exported ONNX graph run by ONNX Runtime (fp32 or
  int8 dynamic quantisation) or by OpenVINO;
- **teacher**: the sliding-window listwise re-ranker of :mod:`rank_distillm.teacher`
  (window 20, stride 10, RankZephyr's prompt) on a ``transformers`` causal LM. With
  ``force_full_ranking`` the LLM writes exactly as many tokens as a complete ranking of
  the window's ids takes (``[1] > [2] > ...``), which is what RankZephyr produces; that
  makes the timing independent of whether the weights are any good (a random 7B model,
  or SmolLM2, which tends to answer in prose).

Each model is measured in its **own subprocess** (:func:`measure_in_subprocess`), so that
its memory is its own: on the CPU the peak resident set size (``VmHWM``, reset after the
model is loaded so that loading transients do not count; the runtime's own footprint
before loading is reported as ``baseline_mb`` and subtracted for ``model_mb``); on a GPU
``torch.cuda.max_memory_allocated``. Results are plain rows (dicts) that
:func:`summarise` turns into a table and :func:`ratios` into teacher/student ratios.

When a profile names a hub model that cannot be loaded (offline), ``from_config`` builds
the same architecture with random weights (``electra-base``: ELECTRA-base discriminator
sizes; ``mistral-7b``: ``transformers.MistralConfig()`` defaults, RankZephyr's
architecture): timing and memory do not depend on the weights' values.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from .data import Candidates, DataError, cache_dir
from .teacher.backends import TransformersBackend

# The paper's claim (abstract of Schlatt et al., ECIR 2025): the distilled cross-encoder
# is up to 173x faster and 24x more memory efficient than the LLM re-ranker.
PAPER_SPEEDUP = 173.0
PAPER_MEMORY_RATIO = 24.0

STUDENT_BACKENDS = ("torch", "onnx", "onnx-int8", "openvino")


# --------------------------------------------------------------------------- memory


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_mb() -> float:
    """The current resident set size of this process, in MiB."""
    kb = _status_kb("VmRSS")
    if kb is None:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    return kb / 1024


def peak_rss_mb() -> float:
    """The peak resident set size since the process started or :func:`reset_peak_rss`, in MiB."""
    kb = _status_kb("VmHWM")
    if kb is None:  # not Linux: the lifetime peak (ru_maxrss is in KiB on Linux, bytes on macOS)
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024
    return kb / 1024


def reset_peak_rss() -> bool:
    """Reset the peak RSS (Linux ``/proc/self/clear_refs``); whether it worked."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class MemoryMeter:
    """Peak memory of what runs between :meth:`start` and :meth:`stop`, on CPU or CUDA."""

    def __init__(self, device: str):
        self.device = device

    def start(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            self.reset = reset_peak_rss()

    def stop(self) -> float:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() / 2**20
        return peak_rss_mb()

    def current(self) -> float:
        if self.device.startswith("cuda"):
            import torch

            return torch.cuda.memory_allocated() / 2**20
        return rss_mb()


# --------------------------------------------------------------------------- models


def _device(spec: dict) -> str:
    device = spec.get("device")
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _hub_available() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("1", "true", "True", "yes")


ELECTRA_BASE = dict(vocab_size=30522, embedding_size=768, hidden_size=768, num_hidden_layers=12,
                    num_attention_heads=12, intermediate_size=3072)


def build_from_config(name: str, kind: str):
    """A model of a named architecture with random weights: ``electra-base`` or ``mistral-7b``."""
    import torch
    from transformers import ElectraConfig, ElectraForSequenceClassification, MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    if name == "electra-base" and kind == "student":
        return ElectraForSequenceClassification(ElectraConfig(**ELECTRA_BASE, num_labels=1))
    if name == "mistral-7b" and kind == "teacher":
        return MistralForCausalLM(MistralConfig())
    raise ValueError(f"from_config: unknown architecture {name!r} for the {kind} (known: electra-base, mistral-7b)")


def _use_config(spec: dict) -> bool:
    """Build from the config when the profile allows it and the named hub model is out of reach (offline)."""
    if not spec.get("from_config"):
        return False
    model = spec["model"]
    return not model.startswith("pkg:") and not Path(model).exists() and not _hub_available()


def _tmp_student_folder(spec: dict) -> str:
    """A CrossEncoder folder with the from-config architecture and a BERT-vocabulary tokenizer."""
    from transformers import AutoTokenizer

    from .models import MINILM, resolve_model

    folder = cache_dir() / "efficiency" / f"from-config-{spec['from_config']}"
    if not (folder / "config.json").exists():
        model = build_from_config(spec["from_config"], "student")
        model.save_pretrained(folder)
        # ELECTRA uses BERT's uncased WordPiece vocabulary (30,522 tokens), as MiniLM does
        AutoTokenizer.from_pretrained(resolve_model(spec.get("tokenizer") or MINILM)).save_pretrained(folder)
    return str(folder)


def _student_path(spec: dict) -> str:
    from .models import resolve_model

    return _tmp_student_folder(spec) if _use_config(spec) else resolve_model(spec["model"])


def load_student(spec: dict):
    """A ``CrossEncoder`` for the spec (``model``, ``max_length``, ``device``, ``dtype``, ``from_config``)."""
    import torch
    from sentence_transformers import CrossEncoder

    path = _student_path(spec)
    torch.manual_seed(spec.get("seed", 0))  # an untrained head starts from the same random weights
    kwargs = {}
    if spec.get("dtype") and spec["dtype"] != "float32":
        kwargs["model_kwargs"] = {"dtype": getattr(torch, spec["dtype"])}
    model = CrossEncoder(path, num_labels=1, max_length=spec.get("max_length", 256), device=_device(spec), **kwargs)
    model.model.eval()
    return model


class OnnxStudent:
    """A cross-encoder exported to ONNX (``torch.onnx.export``), run by ONNX Runtime or OpenVINO.

    ``backend``: ``onnx`` (fp32), ``onnx-int8`` (ONNX Runtime dynamic int8 quantisation of
    the weights: ``onnxruntime.quantization.quantize_dynamic``) or ``openvino`` (the same
    ONNX graph compiled by OpenVINO for the CPU). ``predict`` returns raw logits, like
    ``CrossEncoder.predict(..., activation_fn=Identity())``.

    sentence-transformers' own ``backend="onnx"`` / ``"openvino"`` path goes through
    ``optimum-onnx`` / ``optimum-intel``; their releases on PyPI pin ``transformers<4.58``
    (or another ``torch``), so the graph is exported here with ``torch.onnx`` instead.
    """

    def __init__(self, cross_encoder, backend: str, folder: str | os.PathLike):
        export_graph(cross_encoder, backend, folder)
        self._load(cross_encoder.tokenizer, cross_encoder.max_length, backend, Path(folder))

    @classmethod
    def from_exported(cls, tokenizer, max_length: int, backend: str, folder: str | os.PathLike) -> "OnnxStudent":
        """The student from a graph that :func:`export_graph` wrote, without loading PyTorch weights."""
        self = cls.__new__(cls)
        self._load(tokenizer, max_length, backend, Path(folder))
        return self

    def _load(self, tokenizer, max_length: int, backend: str, folder: Path) -> None:
        self.backend = backend
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.input_names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names]
        path = graph_path(folder, backend)
        if not path.exists():
            raise FileNotFoundError(f"{path}: the {backend} graph has not been exported (export_graph)")
        if backend == "openvino":
            try:
                import openvino as ov
            except ImportError:
                raise ImportError("the openvino backend needs OpenVINO: pip install openvino") from None
            compiled = ov.Core().compile_model(str(path), "CPU")
            self._run = lambda feeds: compiled(feeds)[0]
        else:
            import onnxruntime as ort

            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            self._run = lambda feeds: session.run(None, feeds)[0]

    def predict(self, pairs, batch_size: int = 32, **_) -> "np.ndarray":  # noqa: F821
        import numpy as np

        out = []
        for i in range(0, len(pairs), batch_size):
            chunk = pairs[i : i + batch_size]
            enc = self.tokenizer([p[0] for p in chunk], [p[1] for p in chunk], padding=True, truncation="longest_first",
                                 max_length=self.max_length, return_tensors="np")
            feeds = {k: enc[k].astype(np.int64) for k in self.input_names}
            out.append(np.asarray(self._run(feeds)).reshape(len(chunk), -1)[:, 0])
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def graph_path(folder: str | os.PathLike, backend: str) -> Path:
    """The graph a backend runs: ``model.onnx`` (onnx, openvino) or ``model_int8.onnx`` (onnx-int8)."""
    if backend not in ("onnx", "onnx-int8", "openvino"):
        raise ValueError(f"unknown student backend {backend!r}: use one of {STUDENT_BACKENDS}")
    return Path(folder) / ("model_int8.onnx" if backend == "onnx-int8" else "model.onnx")


def export_graph(cross_encoder, backend: str, folder: str | os.PathLike) -> Path:
    """Export (once) the graph ``backend`` runs, and the parameter count beside it; its path."""
    folder = Path(folder)
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in cross_encoder.tokenizer.model_input_names]
    path = export_onnx(cross_encoder, folder / "model.onnx", names)
    if backend == "onnx-int8":
        path = quantize_int8(path, folder / "model_int8.onnx")
    info = folder / "params.json"
    if not info.exists():
        info.write_text(json.dumps({"params": count_parameters(cross_encoder)}))
    return path


def _export_for_spec(spec: dict, backend: str, folder: str) -> None:
    """Export a student's graph into ``folder``, in a process of its own (its PyTorch weights stay there)."""
    export_graph(load_student(spec), backend, folder)


def export_onnx(cross_encoder, path: Path, input_names: Sequence[str]) -> Path:
    """Export a CrossEncoder's model to ONNX (dynamic batch and sequence axes), once; the path."""
    path = Path(path)
    if path.exists():
        return path
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ImportError("the onnx backends need onnx and onnxruntime: pip install 'rank-distillm[fast]'") from None
    import torch

    model = cross_encoder.model.float().to("cpu").eval()

    class Logits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *inputs):
            return self.inner(**dict(zip(input_names, inputs))).logits

    enc = cross_encoder.tokenizer(["a query"] * 2, ["a passage to score", "another one"], padding=True, return_tensors="pt")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.onnx")
    with torch.no_grad():
        torch.onnx.export(
            Logits(model), tuple(enc[n] for n in input_names), str(tmp), input_names=list(input_names),
            output_names=["logits"], dynamic_axes={n: {0: "batch", 1: "sequence"} for n in input_names},
            opset_version=17, dynamo=False,
        )
    os.replace(tmp, path)
    return path


def quantize_int8(fp32: Path, path: Path) -> Path:
    """ONNX Runtime's dynamic int8 quantisation of the weights (activations quantised on the fly)."""
    if not path.exists():
        import logging

        from onnxruntime.quantization import QuantType, quantize_dynamic

        logging.getLogger().setLevel(logging.ERROR)  # "consider pre-processing" warning
        tmp = path.with_suffix(f".tmp{os.getpid()}.onnx")
        quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8)
        os.replace(tmp, path)
    return path


def onnx_folder(model_path: str) -> Path:
    """Where the exported graphs of a model live (in the cache, keyed by the model's path)."""
    key = hashlib.sha1(str(Path(model_path).resolve()).encode()).hexdigest()[:12]
    return cache_dir() / "efficiency" / "onnx" / f"{Path(model_path).name}-{key}"


def student_scorer(spec: dict, backend: str = "torch"):
    """``(predict(pairs) -> scores, cross_encoder)`` for a student spec and a backend."""
    import torch

    batch_size = spec.get("batch_size", 32)
    if backend == "torch":
        model = load_student(spec)
        identity = torch.nn.Identity()

        def predict(pairs):
            return model.predict(pairs, batch_size=batch_size, show_progress_bar=False, activation_fn=identity)

        return predict, model
    # The graph is exported in a child process, so that this process (whose memory is measured)
    # holds only the tokenizer and the runtime's graph, never the PyTorch weights.
    import multiprocessing

    from transformers import AutoTokenizer

    folder = onnx_folder(_student_path(spec))
    if not graph_path(folder, backend).exists() or not (folder / "params.json").exists():
        child = multiprocessing.get_context("spawn").Process(target=_export_for_spec, args=(spec, backend, str(folder)))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise RuntimeError(f"exporting the {backend} graph of {spec.get('model')} failed (exit code {child.exitcode})")
    tokenizer = AutoTokenizer.from_pretrained(_student_path(spec))
    onnx = OnnxStudent.from_exported(tokenizer, spec.get("max_length", 256), backend, folder)
    onnx.params = json.loads((folder / "params.json").read_text())["params"]
    return (lambda pairs: onnx.predict(pairs, batch_size=batch_size)), onnx


class ForcedLengthBackend:
    """A teacher backend (``generate(requests) -> answers``) on a loaded causal LM.

    ``force_tokens``: a function ``window size -> tokens`` to generate exactly (EOS
    suppressed), or ``None`` to stop at EOS or ``max_new_tokens`` like the teacher's
    ``TransformersBackend``. Prompt ids beyond the model's vocabulary (a stand-in tokenizer
    for a random-weight model) are folded into it.
    """

    name = "transformers"

    def __init__(self, model, tokenizer, device: str, max_new_tokens: int = 120, force_tokens=None):
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.max_new_tokens = max_new_tokens
        self.force_tokens = force_tokens
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    render = TransformersBackend.render  # the teacher's own: fixed text, or the tokenizer's chat template

    def generate(self, requests):
        import torch

        from .teacher.backends import Answer

        answers = []
        vocab = self.model.config.vocab_size
        for r in requests:  # one window at a time: one query's windows are sequential anyway
            text = self.render(r)
            ids = self.tokenizer(text, add_special_tokens=r.text is not None)["input_ids"]
            ids = torch.tensor([[i % vocab for i in ids]], device=self.device)
            n = self.force_tokens(len(r.docids)) if self.force_tokens else self.max_new_tokens
            kwargs = dict(max_new_tokens=n, do_sample=False, pad_token_id=self.tokenizer.pad_token_id % vocab,
                          temperature=None, top_p=None, top_k=None)
            if self.force_tokens:
                kwargs.update(min_new_tokens=n, eos_token_id=None)
            _sync(self.device)
            t0 = time.perf_counter()
            with torch.inference_mode():
                out = self.model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
            _sync(self.device)
            seconds = time.perf_counter() - t0
            new = out[0, ids.shape[1]:].tolist()
            if not self.force_tokens:
                eos = self.tokenizer.eos_token_id
                new = new[: next((i + 1 for i, t in enumerate(new) if t == eos), len(new))]
            response = self.tokenizer.decode([t for t in new if t < len(self.tokenizer)], skip_special_tokens=True)
            answers.append(Answer(response, text, ids.shape[1], len(new), seconds))
        return answers


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def ranking_tokens(tokenizer, n: int) -> int:
    """Tokens of a complete ranking of ``n`` ids, ``[1] > [2] > ... > [n]``, as the LLM writes it."""
    return len(tokenizer(" > ".join(f"[{i}]" for i in range(1, n + 1)), add_special_tokens=False)["input_ids"]) + 1


def load_teacher(spec: dict) -> ForcedLengthBackend:
    """The teacher's LLM as a backend: a ``pkg:``/GGUF/hub model, or ``from_config`` with random weights."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .models import SMOLLM2_GGUF, gguf_parts

    device = _device(spec)
    dtype = getattr(torch, spec.get("dtype") or ("bfloat16" if device.startswith("cuda") else "float32"))
    if _use_config(spec):
        # a stand-in tokenizer with a chat template; ids are folded into the model's vocabulary
        folder, gguf = gguf_parts(spec.get("tokenizer") or SMOLLM2_GGUF)
        tokenizer = AutoTokenizer.from_pretrained(folder, **({"gguf_file": gguf} if gguf else {}))
        with torch.device(device):
            torch.set_default_dtype(dtype)
            try:
                model = build_from_config(spec["from_config"], "teacher")
            finally:
                torch.set_default_dtype(torch.float32)
    else:
        folder, gguf = gguf_parts(spec["model"])
        kw = {"gguf_file": gguf} if gguf else {}
        tokenizer = AutoTokenizer.from_pretrained(folder, **kw)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **kw).to(device)
    model.eval()
    force = None
    if spec.get("force_full_ranking", True):
        cache: dict[int, int] = {}
        force = lambda n: cache.setdefault(n, ranking_tokens(tokenizer, n))  # noqa: E731
    return ForcedLengthBackend(model, tokenizer, device, spec.get("max_new_tokens", 120), force)


def count_parameters(model) -> int:
    if isinstance(getattr(model, "params", None), int):
        return model.params
    inner = getattr(model, "model", model)
    return int(sum(p.numel() for p in inner.parameters()))


# --------------------------------------------------------------------------- measuring


def _time_student(predict, cand: Candidates, depth: int) -> dict:
    pairs = [(cand.query, t) for t in cand.texts[:depth]]
    t0 = time.perf_counter()
    predict(pairs)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "pairs": len(pairs)}


def _time_teacher(backend, cand: Candidates, depth: int, spec: dict) -> dict:
    from .teacher import sliding_window_rerank

    t0 = time.perf_counter()
    result = sliding_window_rerank(
        [cand], backend, prompt=spec.get("prompt", "rankzephyr"), window=spec.get("window", 20),
        stride=spec.get("stride", 10), depth=depth, max_words=spec.get("max_words"), batch_size=1, progress=False,
    )
    _sync(backend.device)
    seconds = time.perf_counter() - t0
    w = result.windows
    return {
        "seconds": seconds, "pairs": min(depth, len(cand)), "windows": len(w),
        "prompt_tokens": sum(r["prompt_tokens"] or 0 for r in w),
        "generated_tokens": sum(r["generated_tokens"] or 0 for r in w),
        "generate_seconds": sum(r["seconds"] or 0 for r in w),
    }


def _import_runtime(kind: str, backend: str) -> None:
    import importlib

    names = ["torch", "transformers", "sentence_transformers"] if kind == "student" else ["torch", "transformers", "rank_distillm.teacher"]
    names += {"onnx": ["onnx", "onnxruntime"], "onnx-int8": ["onnx", "onnxruntime", "onnxruntime.quantization"],
              "openvino": ["onnx", "openvino"]}.get(backend, [])
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # reported where it is needed


def measure(kind: str, spec: dict, candidates: Sequence[Candidates], depths: Sequence[int], repeats: int = 1,
            warmup: int = 1, backend: str = "torch") -> dict:
    """Time one re-ranker in this process: ``{"model": {...}, "rows": [...]}``.

    ``kind``: ``student`` or ``teacher``. Each row is one timed re-ranking of one query's
    top-``depth``: ``seconds``, ``pairs`` and for the teacher ``windows``,
    ``prompt_tokens`` and ``generated_tokens``. ``warmup`` untimed runs (at the smallest
    depth) come first. The model's memory: ``baseline_mb`` (the process before loading),
    ``loaded_mb`` (after loading), ``peak_mb`` (the peak while re-ranking) and
    ``model_mb = peak_mb - baseline_mb``.
    """
    if kind not in ("student", "teacher"):
        raise ValueError(f"kind must be 'student' or 'teacher', not {kind!r}")
    if not candidates:
        raise DataError("no candidates to time")
    import torch

    device = _device(spec)
    _import_runtime(kind, backend)  # the libraries count as the runtime's baseline, not the model's
    meter = MemoryMeter(device)
    baseline = meter.current() if device.startswith("cuda") else rss_mb()
    t0 = time.perf_counter()
    if kind == "student":
        predict, loaded = student_scorer(spec, backend)
        run = lambda cand, depth: _time_student(predict, cand, depth)  # noqa: E731
        name = spec.get("name") or Path(spec["model"]).name
    else:
        loaded = load_teacher(spec)
        run = lambda cand, depth: _time_teacher(loaded, cand, depth, spec)  # noqa: E731
        name = spec.get("name") or Path(spec["model"]).name
        backend = "transformers"
    load_seconds = time.perf_counter() - t0
    params = count_parameters(loaded)
    loaded_mb = meter.current()
    meter.start()
    for _ in range(warmup):
        run(candidates[0], min(depths))
    rows = []
    for depth in depths:
        for cand in candidates:
            for r in range(repeats):
                rows.append({"depth": depth, "qid": cand.qid, "repeat": r, **run(cand, depth)})
    peak = meter.stop()
    if not device.startswith("cuda"):
        peak = max(peak, loaded_mb)
    model = {
        "name": name, "kind": kind, "backend": backend, "device": device, "params": params,
        "dtype": str(getattr(getattr(loaded, "model", loaded), "dtype", "int8" if backend == "onnx-int8" else "float32")),
        "from_config": spec.get("from_config") if _use_config(spec) else None,
        "load_seconds": load_seconds, "baseline_mb": baseline, "loaded_mb": loaded_mb, "peak_mb": peak,
        "model_mb": peak - (0.0 if device.startswith("cuda") else baseline),
        "memory": "torch.cuda.max_memory_allocated" if device.startswith("cuda") else "peak RSS (VmHWM)",
        "threads": torch.get_num_threads(),
    }
    return {"model": model, "rows": [{**r, "name": name, "kind": kind, "backend": backend} for r in rows]}


def _candidates_to_json(candidates: Sequence[Candidates]) -> list[dict]:
    return [asdict(c) for c in candidates]


def measure_in_subprocess(kind: str, spec: dict, candidates: Sequence[Candidates], depths: Sequence[int],
                          repeats: int = 1, warmup: int = 1, backend: str = "torch", timeout: float | None = None) -> dict:
    """:func:`measure` in a fresh Python process, so that its peak memory is this model's alone."""
    with tempfile.TemporaryDirectory(prefix="rank-distillm-bench-") as tmp:
        job, out = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job.write_text(json.dumps({
            "kind": kind, "spec": spec, "candidates": _candidates_to_json(candidates), "depths": list(depths),
            "repeats": repeats, "warmup": warmup, "backend": backend,
        }))
        proc = subprocess.run([sys.executable, "-m", "rank_distillm.efficiency", str(job), str(out)],
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not out.exists():
            tail = "\n".join((proc.stderr or "").strip().splitlines()[-15:])
            raise RuntimeError(f"benchmark of the {kind} ({spec.get('model')}, {backend}) failed:\n{tail}")
        return json.loads(out.read_text())


def _worker(job_path: str, out_path: str) -> int:
    job = json.loads(Path(job_path).read_text())
    cands = [Candidates(**c) for c in job["candidates"]]
    result = measure(job["kind"], job["spec"], cands, job["depths"], job["repeats"], job["warmup"], job["backend"])
    tmp = Path(out_path).with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, out_path)
    return 0


# --------------------------------------------------------------------------- tables


def summarise(rows: Sequence[dict], models: Sequence[dict] = ()) -> "pd.DataFrame":  # noqa: F821
    """One row per (model, backend, depth): median latency, spread, throughput, tokens, memory."""
    import pandas as pd

    df = pd.DataFrame(list(rows))
    keys = ["name", "kind", "backend", "depth"]
    g = df.groupby(keys, sort=False)
    out = g["seconds"].agg(median_s="median", min_s="min", max_s="max", runs="count")
    out["p25_s"] = g["seconds"].quantile(0.25)
    out["p75_s"] = g["seconds"].quantile(0.75)
    out["pairs_per_s"] = g["pairs"].sum() / g["seconds"].sum()
    for col in ("windows", "prompt_tokens", "generated_tokens"):
        if col in df:
            out[col] = g[col].mean()
    out = out.reset_index()
    if models:
        mem = pd.DataFrame(list(models))[["name", "backend", "params", "peak_mb", "model_mb"]]
        out = out.merge(mem, on=["name", "backend"], how="left")
    return out


def ratios(summary: "pd.DataFrame", student: str | None = None, teacher: str | None = None,  # noqa: F821
           student_backend: str = "torch") -> "pd.DataFrame":  # noqa: F821
    """Teacher/student ratios per depth both were timed at: latency, throughput, memory."""
    import pandas as pd

    s = summary[(summary["kind"] == "student") & (summary["backend"] == student_backend)]
    t = summary[summary["kind"] == "teacher"]
    if student:
        s = s[s["name"] == student]
    if teacher:
        t = t[t["name"] == teacher]
    m = s.merge(t, on="depth", suffixes=("_student", "_teacher"))
    out = pd.DataFrame({
        "depth": m["depth"], "student": m["name_student"], "teacher": m["name_teacher"],
        "student_s": m["median_s_student"], "teacher_s": m["median_s_teacher"],
        "speedup": m["median_s_teacher"] / m["median_s_student"],
        "throughput_ratio": m["pairs_per_s_student"] / m["pairs_per_s_teacher"],
    })
    if "model_mb_student" in m:
        out["student_mb"] = m["model_mb_student"]
        out["teacher_mb"] = m["model_mb_teacher"]
        out["memory_ratio"] = m["model_mb_teacher"] / m["model_mb_student"]
        out["peak_ratio"] = m["peak_mb_teacher"] / m["peak_mb_student"]
    return out


# --------------------------------------------------------------------------- the benchmark


def bench_candidates(P: dict) -> list[Candidates]:
    """The queries and passages every model is timed on (the same for all)."""
    from .data import load_candidates

    return load_candidates(P["dataset"], P["first_stage"], depth=max(P["student_depths"] + P["teacher_depths"]),
                           max_queries=P["queries"])


def run_bench(P: dict, depths: Sequence[int] | None = None, log=print) -> dict:
    """The profile's benchmark: the student (each backend) and the teacher, each in its own process.

    ``P`` is ``load_profile(name)["efficiency"]``; ``depths`` replaces both depth lists.
    Returns ``{"models": [...], "rows": [...], "summary": [...], "ratios": [...]}`` (plain
    lists of dicts, JSON-ready).
    """
    student_depths = list(depths or P["student_depths"])
    teacher_depths = list(depths or P["teacher_depths"])
    cands = bench_candidates({**P, "student_depths": student_depths, "teacher_depths": teacher_depths})
    models, rows = [], []
    jobs = [("student", P["student"], student_depths, b, cands, P["repeats"]) for b in P["student_backends"]]
    jobs.append(("teacher", P["teacher"], teacher_depths, "transformers", cands[: P["teacher_queries"]], P["teacher_repeats"]))
    for kind, spec, ds, backend, qs, repeats in jobs:
        if not ds:
            continue
        log(f"[bench] {kind} {spec['model']} ({backend}) at depths {ds}, {len(qs)} queries x {repeats} ...")
        try:
            result = measure_in_subprocess(kind, spec, qs, ds, repeats, P["warmup"], backend)
        except (RuntimeError, ImportError) as error:
            if kind == "student" and backend != "torch":
                log(f"[bench] skipped {backend}: {error}")
                continue
            raise
        models.append(result["model"])
        rows.extend(result["rows"])
    summary = summarise(rows, models)
    rat = ratios(summary)
    return {
        "models": models, "rows": rows, "summary": summary.to_dict("records"), "ratios": rat.to_dict("records"),
        "paper": {"speedup": PAPER_SPEEDUP, "memory_ratio": PAPER_MEMORY_RATIO,
                  "source": "Schlatt et al., ECIR 2025, abstract (the paper's numbers, not measured here)"},
    }


def backend_quality(P: dict, model: str | None = None, log=print) -> "pd.DataFrame":  # noqa: F821
    """nDCG@10 on DL19 of re-ranking with each student backend, and the scores' agreement.

    Re-ranks the first ``quality_queries`` queries' top-``quality_depth`` with the torch
    model and with every other backend; reports nDCG@10, its change against torch, the
    largest absolute score difference and the Kendall tau of the scores.
    """
    import numpy as np
    import pandas as pd
    from scipy.stats import kendalltau

    from .data import load_candidates
    from .evaluation import evaluate_run
    from .data import Run

    spec = {**P["student"], **({"model": model} if model else {})}
    cands = load_candidates(P["dataset"], P["first_stage"], depth=P["quality_depth"], max_queries=P["quality_queries"])
    pairs = [(c.query, t) for c in cands for t in c.texts]
    scores = {}
    for backend in P["student_backends"]:
        try:
            predict, _ = student_scorer(spec, backend)
        except ImportError as error:
            log(f"[quality] skipped {backend}: {error}")
            continue
        scores[backend] = np.asarray(predict(pairs), dtype=np.float64)
    rows = []
    for backend, s in scores.items():
        run, k = Run(), 0
        for c in cands:
            own = s[k : k + len(c)]
            k += len(c)
            run[c.qid] = {d: float(v) for d, v in zip(c.docids, own)}
        ndcg = evaluate_run(run, P["dataset"], ["nDCG@10"])["nDCG@10"]
        ref = scores["torch"]
        rows.append({"backend": backend, "nDCG@10": ndcg, "max_abs_diff": float(np.abs(s - ref).max()),
                     "kendall_tau": float(kendalltau(s, ref).statistic)})
    df = pd.DataFrame(rows)
    df["nDCG@10 change"] = df["nDCG@10"] - df.loc[df["backend"] == "torch", "nDCG@10"].iloc[0]
    return df


# --------------------------------------------------------------------------- CLI


def add_bench_arguments(parser) -> None:
    parser.add_argument("--profile", default="cpu", help="smoke | cpu | gpu, or the path of a YAML profile")
    parser.add_argument("--depth", type=int, nargs="+", default=None, help="depths to time (replaces the profile's)")
    parser.add_argument("--json", action="store_true", help="print one JSON object (models, rows, summary, ratios)")


def bench_command(args) -> int:
    from .profiles import load_profile

    P = load_profile(args.profile)["efficiency"]
    if args.depth and min(args.depth) < 1:
        raise ValueError(f"--depth: depths must be positive, not {args.depth}")
    result = run_bench(P, args.depth, log=lambda m: print(m, file=sys.stderr))
    if args.json:
        print(json.dumps(result, default=float))
        return 0
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(pd.DataFrame(result["summary"]).round(4).to_string(index=False))
        print()
        print(pd.DataFrame(result["ratios"]).round(2).to_string(index=False))
    print(f"\nthe paper's (not measured here): up to {PAPER_SPEEDUP:.0f}x faster, {PAPER_MEMORY_RATIO:.0f}x less memory")
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1], sys.argv[2]))
