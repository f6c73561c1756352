"""Efficiency: latency, throughput and peak memory of a cross-encoder student and an LLM teacher.

The harness times the re-ranking of one query's top-``k`` (``k`` in the profile's depths):

- **student**: a ``CrossEncoder`` scoring the ``k`` query-passage pairs in batches, with
  PyTorch (``CrossEncoder.predict``) or an exported ONNX graph run by ONNX Runtime (fp32 or
  int8 dynamic quantisation; ``-noarena``: with its CPU memory arena off) or by OpenVINO;
- **teacher**: the sliding-window listwise re-ranker of :mod:`rank_distillm.teacher`
  (window 20, stride 10, RankZephyr's prompt) on a causal LM run by ``transformers`` or by
  vLLM (the profile's ``teacher.backend``: ``auto`` takes vLLM when it is installed and the
  device is a GPU). With ``force_full_ranking`` the LLM writes exactly as many tokens as a
  complete ranking of the window's ids takes (``[1] > [2] > ...``), which is what RankZephyr
  produces; that makes the timing independent of whether the weights are any good (a
  random 7B model, or SmolLM2, which tends to answer in prose).

Each model is measured in its **own subprocess** (:func:`measure_in_subprocess`), so that
its memory is its own: on the CPU the peak resident set size (``VmHWM``, reset after the
model is loaded so that loading transients do not count; the runtime's own footprint
before loading is reported as ``baseline_mb`` and subtracted for ``model_mb``); on a GPU
``torch.cuda.max_memory_allocated``; on vLLM, which reserves most of the GPU up front for
its KV-cache pool, the weights plus the KV cache the longest window used (computed from
the model's config), with the device memory the engine holds beside it (``engine_mb``).
Results are plain rows (dicts) that :func:`summarise` turns into a table and
:func:`ratios` into teacher/student ratios.

Each finished depth of each model is one row of the benchmark's JSONL file
(``run_bench(out=...)``, ``rank-distillm bench --out FILE``), written as it finishes; a
rerun skips the rows already there, so an interrupted benchmark resumes.

When a profile names a hub model that cannot be loaded (offline), ``from_config`` builds
the same architecture with random weights (``electra-base``: ELECTRA-base discriminator
sizes; ``mistral-7b``: ``transformers.MistralConfig()`` defaults, RankZephyr's
architecture; on vLLM ``load_format="dummy"``): timing and memory do not depend on the
weights' values.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from .cost_model import shape_from_config
from .data import Candidates, DataError, cache_dir
from .teacher.backends import TransformersBackend, VLLMBackend, _default_dtype

# The paper's claim (abstract of Schlatt et al., ECIR 2025): the distilled cross-encoder
# is up to 173x faster and 24x more memory efficient than the LLM re-ranker.
PAPER_SPEEDUP = 173.0
PAPER_MEMORY_RATIO = 24.0

# "-noarena": the same ONNX Runtime graph with the CPU memory arena off (a memory figure
# without the arena's cached blocks; see OnnxStudent)
NOARENA = "-noarena"
STUDENT_BACKENDS = ("torch", "onnx", "onnx-int8", "openvino", "onnx" + NOARENA, "onnx-int8" + NOARENA)
TEACHER_BACKENDS = ("auto", "transformers", "vllm")


def split_backend(backend: str) -> tuple[str, bool]:
    """``(runtime, arena)`` of a student backend: ``onnx-int8-noarena`` -> ``("onnx-int8", False)``."""
    if backend.endswith(NOARENA) and backend[: -len(NOARENA)] in ("onnx", "onnx-int8"):
        return backend[: -len(NOARENA)], False
    if backend not in STUDENT_BACKENDS:
        raise ValueError(f"unknown student backend {backend!r}: use one of {STUDENT_BACKENDS}")
    return backend, True


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


def config_for(name: str, kind: str):
    """The ``transformers`` config of a named architecture: ``electra-base`` (student) or ``mistral-7b`` (teacher)."""
    from transformers import ElectraConfig, MistralConfig

    if name == "electra-base" and kind == "student":
        return ElectraConfig(**ELECTRA_BASE, num_labels=1)
    if name == "mistral-7b" and kind == "teacher":
        return MistralConfig()
    raise ValueError(f"from_config: unknown architecture {name!r} for the {kind} (known: electra-base, mistral-7b)")


def build_from_config(name: str, kind: str):
    """A model of a named architecture with random weights: ``electra-base`` or ``mistral-7b``."""
    import torch
    from transformers import ElectraForSequenceClassification, MistralForCausalLM

    config = config_for(name, kind)
    torch.manual_seed(0)
    return (ElectraForSequenceClassification if kind == "student" else MistralForCausalLM)(config)


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
    if Path(path).is_dir() and (Path(path) / "modules.json").is_file() and not kwargs:
        from .student import load_student as load_saved  # a trained student, whatever its head

        model = load_saved(path, device=_device(spec), max_length=spec.get("max_length", 256))
    else:
        model = CrossEncoder(path, num_labels=1, max_length=spec.get("max_length", 256), device=_device(spec), **kwargs)
    model.eval()
    return model


class OnnxStudent:
    """A cross-encoder exported to ONNX (``torch.onnx.export``), run by ONNX Runtime or OpenVINO.

    ``backend``: ``onnx`` (fp32), ``onnx-int8`` (ONNX Runtime dynamic int8 quantisation of
    the weights: ``onnxruntime.quantization.quantize_dynamic``) or ``openvino`` (the same
    ONNX graph compiled by OpenVINO for the CPU). ``predict`` returns raw logits, like
    ``CrossEncoder.predict(..., activation_fn=Identity())``.

    ``arena=False`` (the backends ``onnx-noarena``, ``onnx-int8-noarena``) builds the ONNX
    Runtime session with ``SessionOptions.enable_cpu_mem_arena = False``: intermediate
    tensors are then allocated with ``malloc`` and freed after each run, instead of being
    carved from ONNX Runtime's CPU arena, which grows in large chunks and keeps them. Through
    sentence-transformers' own ONNX backend the same option would be
    ``model_kwargs={"provider": "CPUExecutionProvider", "session_options": options}``
    (passed on to optimum's ``ORTModel.from_pretrained``).

    sentence-transformers' own ``backend="onnx"`` / ``"openvino"`` path goes through
    ``optimum-onnx`` / ``optimum-intel``; their releases on PyPI pin ``transformers<4.58``
    (or another ``torch``), so the graph is exported here with ``torch.onnx`` instead.
    """

    def __init__(self, cross_encoder, backend: str, folder: str | os.PathLike, arena: bool = True):
        export_graph(cross_encoder, backend, folder)
        self._load(cross_encoder.tokenizer, cross_encoder.max_length, backend, Path(folder), arena)

    @classmethod
    def from_exported(cls, tokenizer, max_length: int, backend: str, folder: str | os.PathLike,
                      arena: bool = True) -> "OnnxStudent":
        """The student from a graph that :func:`export_graph` wrote, without loading PyTorch weights."""
        self = cls.__new__(cls)
        self._load(tokenizer, max_length, backend, Path(folder), arena)
        return self

    def _load(self, tokenizer, max_length: int, backend: str, folder: Path, arena: bool = True) -> None:
        self.backend = backend
        self.arena = arena
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.input_names = _input_names(tokenizer)
        # written beside the graph by export_graph: the parameter count, and what the student's own
        # preprocessing puts before a passage (student.passage_prefix)
        info_path = folder / "params.json"
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        self.params = info.get("params")
        self.passage_prefix = info.get("passage_prefix", "")
        path = graph_path(folder, backend)
        if not path.exists():
            raise FileNotFoundError(f"{path}: the {backend} graph has not been exported (export_graph)")
        self.graph_bytes = path.stat().st_size  # the weights, as stored (int8: about a quarter of fp32)
        if backend == "openvino":
            try:
                import openvino as ov
            except ImportError:
                raise ImportError("the openvino backend needs OpenVINO: pip install openvino") from None
            compiled = ov.Core().compile_model(str(path), "CPU")
            self._run = lambda feeds: compiled(feeds)[0]
        else:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.enable_cpu_mem_arena = arena
            session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
            self.session_options = options
            self._run = lambda feeds: session.run(None, feeds)[0]

    def predict(self, pairs, batch_size: int = 32, **_) -> "np.ndarray":  # noqa: F821
        import numpy as np

        out = []
        for i in range(0, len(pairs), batch_size):
            chunk = pairs[i : i + batch_size]
            enc = self.tokenizer([p[0] for p in chunk], [self.passage_prefix + p[1] for p in chunk], padding=True, truncation="longest_first",
                                 max_length=self.max_length, return_tensors="np")
            feeds = {k: enc[k].astype(np.int64) for k in self.input_names}
            out.append(np.asarray(self._run(feeds)).reshape(len(chunk), -1)[:, 0])
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def _input_names(tokenizer) -> list[str]:
    """The graph's inputs: the tokenizer's model inputs among ``input_ids``, ``attention_mask``, ``token_type_ids``."""
    return [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names]


def graph_path(folder: str | os.PathLike, backend: str) -> Path:
    """The graph a backend runs: ``model.onnx`` (onnx, openvino) or ``model_int8.onnx`` (onnx-int8)."""
    backend = split_backend(backend)[0]
    if backend not in ("onnx", "onnx-int8", "openvino"):
        raise ValueError(f"{backend!r} runs no exported graph: the graph backends are onnx, onnx-int8, openvino"
                         f" (and the {NOARENA} variants of the onnx ones)")
    return Path(folder) / ("model_int8.onnx" if backend == "onnx-int8" else "model.onnx")


def export_graph(cross_encoder, backend: str, folder: str | os.PathLike) -> Path:
    """Export (once) the graph ``backend`` runs, and the parameter count beside it; its path."""
    folder = Path(folder)
    path = export_onnx(cross_encoder, folder / "model.onnx", _input_names(cross_encoder.tokenizer))
    if split_backend(backend)[0] == "onnx-int8":
        path = quantize_int8(path, folder / "model_int8.onnx")
    info = folder / "params.json"
    if not info.exists():
        from .student import passage_prefix

        info.write_text(json.dumps({"params": count_parameters(cross_encoder), "passage_prefix": passage_prefix(cross_encoder)}))
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

    cross_encoder = cross_encoder.float().to("cpu").eval()

    class Logits(torch.nn.Module):
        """The whole scoring path (backbone and head, whichever head): features -> scores."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *inputs):
            return self.inner(dict(zip(input_names, inputs)))["scores"]

    enc = cross_encoder.tokenizer(["a query"] * 2, ["a passage to score", "another one"], padding=True, return_tensors="pt")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.onnx")
    with torch.no_grad():
        torch.onnx.export(
            Logits(cross_encoder), tuple(enc[n] for n in input_names), str(tmp), input_names=list(input_names),
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
    runtime, arena = split_backend(backend)
    if runtime == "torch":
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
        child = multiprocessing.get_context("spawn").Process(target=_export_for_spec, args=(spec, runtime, str(folder)))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise RuntimeError(f"exporting the {backend} graph of {spec.get('model')} failed (exit code {child.exitcode})")
    tokenizer = AutoTokenizer.from_pretrained(_student_path(spec))
    onnx = OnnxStudent.from_exported(tokenizer, spec.get("max_length", 256), runtime, folder, arena)
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


def teacher_backend(spec: dict, device: str | None = None) -> str:
    """The engine that times the teacher: the spec's ``backend`` (``auto``, ``transformers`` or ``vllm``).

    ``auto``: vLLM when it is importable and the device is a GPU, else ``transformers``.
    """
    import importlib.util

    choice = spec.get("backend") or "auto"
    if choice not in TEACHER_BACKENDS:
        raise ValueError(f"teacher.backend: {choice!r} is none of {TEACHER_BACKENDS}")
    if choice != "auto":
        return choice
    device = device or _device(spec)
    try:
        installed = importlib.util.find_spec("vllm") is not None
    except ValueError:  # a module without a spec already imported under that name
        installed = True
    return "vllm" if device.startswith("cuda") and installed else "transformers"


def _teacher_tokenizer(spec: dict):
    """The teacher's tokenizer, or for a ``from_config`` model a stand-in with a chat template."""
    from transformers import AutoTokenizer

    from .models import SMOLLM2_GGUF, gguf_parts

    # a stand-in tokenizer's ids are folded into the model's vocabulary by the backends
    name = (spec.get("tokenizer") or SMOLLM2_GGUF) if _use_config(spec) else spec["model"]
    folder, gguf = gguf_parts(name)
    return AutoTokenizer.from_pretrained(folder, **({"gguf_file": gguf} if gguf else {}))


def _forcing(spec: dict, tokenizer):
    """``window size -> tokens of a full ranking`` when the spec forces full rankings, else ``None``."""
    if not spec.get("force_full_ranking", True):
        return None
    cache: dict[int, int] = {}
    return lambda n: cache.setdefault(n, ranking_tokens(tokenizer, n))


def load_teacher(spec: dict, backend: str = "transformers", engine=None):
    """The teacher's LLM as a backend: a ``pkg:``/GGUF/hub model, or ``from_config`` with random weights.

    ``backend``: ``transformers`` (:class:`ForcedLengthBackend`) or ``vllm``
    (:class:`ForcedLengthVLLM`; ``engine``: an engine built elsewhere, or a test double with
    vLLM's ``LLM.generate(prompts, sampling_params)``); ``auto`` picks by :func:`teacher_backend`.
    """
    if backend == "auto":
        backend = teacher_backend(spec)
    if backend == "vllm":
        return load_vllm_teacher(spec, engine)
    if backend != "transformers":
        raise ValueError(f"teacher backend {backend!r} is none of {TEACHER_BACKENDS}")
    import torch
    from transformers import AutoModelForCausalLM

    from .models import gguf_parts

    device = _device(spec)
    dtype = getattr(torch, _teacher_dtype(spec))
    tokenizer = _teacher_tokenizer(spec)
    if _use_config(spec):
        with torch.device(device):
            torch.set_default_dtype(dtype)
            try:
                model = build_from_config(spec["from_config"], "teacher")
            finally:
                torch.set_default_dtype(torch.float32)
    else:
        folder, gguf = gguf_parts(spec["model"])
        kw = {"gguf_file": gguf} if gguf else {}
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **kw).to(device)
    model.eval()
    return ForcedLengthBackend(model, tokenizer, device, spec.get("max_new_tokens", 120), _forcing(spec, tokenizer))


# --------------------------------------------------------------------------- the teacher on vLLM


@dataclass
class ForcedSampling:
    """Stand-in for ``vllm.SamplingParams`` (same field names) when an engine is injected without vLLM."""

    temperature: float = 0.0
    max_tokens: int = 120
    min_tokens: int = 0
    ignore_eos: bool = False
    detokenize: bool = False


class ForcedLengthVLLM(VLLMBackend):
    """The teacher on a vLLM engine: ``generate(requests) -> answers``, one window per engine call.

    The teacher's :class:`~rank_distillm.teacher.backends.VLLMBackend` (it builds the
    ``vllm.LLM`` from ``model`` and ``engine_kwargs``, or takes ``llm``: an engine built
    elsewhere, or a test double with vLLM's ``LLM.generate(prompts, sampling_params)``), with
    the timing harness's ``generate``.

    Prompts are rendered and tokenised here as :class:`ForcedLengthBackend` does (the same
    chat template and ids, folded into the model's vocabulary for a stand-in tokenizer) and
    handed to ``LLM.generate`` as token ids (``{"prompt_token_ids": ids}``), so both engines
    time the same prompts. With ``force_tokens`` every window's answer is exactly as long as
    a full ranking (``min_tokens = max_tokens``, ``ignore_eos``); decoding is greedy; the
    answer is detokenised here, after the timing.

    Memory (see :func:`measure`): vLLM reserves ``gpu_memory_utilization`` of the GPU up
    front for its KV-cache pool, so the process's allocator peak says nothing about what the
    model needs. ``weights_bytes`` (parameters x bytes per parameter) and
    ``kv_bytes_per_token`` (``2 x layers x kv heads x head dim x bytes``) give the memory a
    re-ranking actually uses; the device memory the engine holds is reported beside it.
    """

    def __init__(self, tokenizer, config, device: str, dtype: str = "bfloat16", max_new_tokens: int = 120,
                 force_tokens=None, model: str | None = None, llm=None, engine_kwargs: dict | None = None):
        import inspect

        import torch

        super().__init__(model, max_new_tokens=max_new_tokens, llm=llm, **(engine_kwargs or {}))
        llm = self.llm
        self.tokenizer, self.config, self.device = tokenizer, config, device
        self.max_new_tokens, self.force_tokens = max_new_tokens, force_tokens
        self.vocab = int(config.vocab_size)
        self.dtype = f"torch.{dtype}"
        itemsize = getattr(torch, dtype).itemsize
        with torch.device("meta"):
            from transformers import AutoModelForCausalLM

            self.params = int(sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters()))
        self.weights_bytes = self.params * itemsize
        self.kv_bytes_per_token = shape_from_config(config, bytes_per_param=itemsize).kv_bytes_per_token
        try:
            self._quiet = {"use_tqdm": False} if "use_tqdm" in inspect.signature(llm.generate).parameters else {}
        except (TypeError, ValueError):
            self._quiet = {}
        self._sampling: dict[int, object] = {}

    render = TransformersBackend.render

    def forced_sampling(self, n: int):
        """Greedy decoding of ``n`` tokens (exactly ``n`` when forced), as ``vllm.SamplingParams``."""
        if n not in self._sampling:
            kw = dict(temperature=0.0, max_tokens=n)
            if self.force_tokens:
                kw.update(min_tokens=n, ignore_eos=True)
            try:
                from vllm import SamplingParams

                self._sampling[n] = SamplingParams(**kw, detokenize=False)
            except ImportError:
                self._sampling[n] = ForcedSampling(**kw)
        return self._sampling[n]

    def generate(self, requests):
        from .teacher.backends import Answer

        answers = []
        for r in requests:  # one window at a time: one query's windows are sequential anyway
            text = self.render(r)
            ids = [i % self.vocab for i in self.tokenizer(text, add_special_tokens=r.text is not None)["input_ids"]]
            n = self.force_tokens(len(r.docids)) if self.force_tokens else self.max_new_tokens
            t0 = time.perf_counter()
            (out,) = self.llm.generate([{"prompt_token_ids": ids}], self.forced_sampling(n), **self._quiet)
            seconds = time.perf_counter() - t0
            new = list(out.outputs[0].token_ids)
            response = self.tokenizer.decode([t for t in new if t < len(self.tokenizer)], skip_special_tokens=True)
            answers.append(Answer(response, text, len(ids), len(new), seconds))
        return answers


def _vllm_config_folder(spec: dict) -> str:
    """A folder holding only the ``config.json`` of a ``from_config`` teacher, for vLLM's dummy weights."""
    folder = cache_dir() / "efficiency" / f"from-config-{spec['from_config']}-vllm"
    if not (folder / "config.json").exists():
        config = config_for(spec["from_config"], "teacher")
        config.architectures = [{"mistral-7b": "MistralForCausalLM"}[spec["from_config"]]]
        config.save_pretrained(folder)
    return str(folder)


def _teacher_dtype(spec: dict) -> str:
    """The teacher's dtype name: the spec's, else the teacher backend's default for the device
    (bfloat16 on GPUs that compute in it natively, float16 on older ones, float32 on the CPU)."""
    return spec.get("dtype") or str(_default_dtype(_device(spec))).removeprefix("torch.")


def vllm_engine_args(spec: dict) -> tuple[str, dict]:
    """``(model, engine_kwargs)`` of ``vllm.LLM`` for a teacher spec.

    A ``from_config`` teacher gets random weights (``load_format="dummy"``) from a folder that
    holds only its ``config.json``.
    """
    from .models import gguf_parts

    # no prefix caching: a repeated run (or the warm-up) of the same query would reuse its prompts' KV cache
    kw = dict(dtype=_teacher_dtype(spec), gpu_memory_utilization=float(spec.get("gpu_memory_utilization") or 0.9),
              seed=int(spec.get("seed", 0)), enable_prefix_caching=False)
    if spec.get("max_model_len"):
        kw["max_model_len"] = int(spec["max_model_len"])
    if _use_config(spec):
        # random weights of the named architecture; prompts arrive as token ids, so no tokenizer is needed
        return _vllm_config_folder(spec), {**kw, "load_format": "dummy", "skip_tokenizer_init": True}
    folder, gguf = gguf_parts(spec["model"])
    return spec["model"], ({**kw, "tokenizer": folder} if gguf else kw)


def load_vllm_teacher(spec: dict, engine=None) -> ForcedLengthVLLM:
    """The teacher on vLLM: ``engine`` (a ``vllm.LLM`` or a test double), or one built from the spec."""
    from transformers import AutoConfig

    from .models import gguf_parts

    tokenizer = _teacher_tokenizer(spec)
    if _use_config(spec):
        config = config_for(spec["from_config"], "teacher")
    else:
        folder, gguf = gguf_parts(spec["model"])
        config = AutoConfig.from_pretrained(folder, **({"gguf_file": gguf} if gguf else {}))
    model, kwargs = vllm_engine_args(spec) if engine is None else (spec["model"], {})
    return ForcedLengthVLLM(tokenizer, config, _device(spec), _teacher_dtype(spec), spec.get("max_new_tokens", 120),
                            _forcing(spec, tokenizer), model=model, llm=engine, engine_kwargs=kwargs)


def gpu_used_mb(device: str) -> float | None:
    """Memory in use on the whole GPU, in MiB (NVML, else ``torch.cuda.mem_get_info``); ``None`` off a GPU.

    Unlike ``torch.cuda.max_memory_allocated`` it sees memory that other processes hold, such
    as the engine process of vLLM, and what an engine reserves without using.
    """
    if not device.startswith("cuda"):
        return None
    index = int(device.split(":")[1]) if ":" in device else 0
    try:
        import pynvml

        pynvml.nvmlInit()
        visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
        physical = visible[index] if index < len(visible) else str(index)
        if physical.isdigit():
            handle = pynvml.nvmlDeviceGetHandleByIndex(int(physical))
        else:  # CUDA_VISIBLE_DEVICES may name GPUs by UUID
            handle = pynvml.nvmlDeviceGetHandleByUUID(physical)
        return pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20
    except Exception:  # no NVML: ask the CUDA driver through torch (this creates a CUDA context here)
        try:
            import torch

            free, total = torch.cuda.mem_get_info(index)
            return (total - free) / 2**20
        except Exception:
            return None


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
        # the longest window (prompt + answer): what one sequence's KV cache holds at its end
        "max_window_tokens": max(((r["prompt_tokens"] or 0) + (r["generated_tokens"] or 0) for r in w), default=0),
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


VLLM_MEMORY = ("weights + KV cache of the longest window (computed from the config; vLLM reserves "
               "gpu_memory_utilization of the GPU up front: engine_mb)")
KV_BLOCK = 16  # vLLM's default KV-cache block size (tokens): a sequence holds whole blocks


def model_name(spec: dict) -> str:
    return spec.get("name") or Path(spec["model"]).name


def measure(kind: str, spec: dict, candidates: Sequence[Candidates], depths: Sequence[int], repeats: int = 1,
            warmup: int = 1, backend: str | None = None, on_record=None, engine=None) -> dict:
    """Time one re-ranker in this process: ``{"model": {...}, "rows": [...], "records": [...]}``.

    ``kind``: ``student`` or ``teacher``. ``backend``: for the student one of
    :data:`STUDENT_BACKENDS` (default ``torch``); for the teacher ``transformers``, ``vllm`` or
    ``auto`` (default: the spec's ``backend``, see :func:`teacher_backend`); ``engine`` is
    handed to :func:`load_vllm_teacher`. Each row is one timed re-ranking of one query's
    top-``depth``: ``seconds``, ``pairs`` and for the teacher ``windows``,
    ``prompt_tokens`` and ``generated_tokens``. ``warmup`` untimed runs (at the smallest
    depth) come first.

    Memory is measured per depth (the peak is reset before each depth; the warm-up counts
    with the first): ``baseline_mb`` (the process before loading), ``loaded_mb`` (after
    loading), ``peak_mb`` (the peak while re-ranking) and ``model_mb = peak_mb -
    baseline_mb`` on the CPU; on a GPU ``torch.cuda.max_memory_allocated``; on vLLM the
    weights plus the KV cache of the longest window (``weights_mb``, ``kv_cache_mb``), with
    the GPU memory the engine holds, its reserved pool included, as ``engine_mb`` (NVML).

    Each finished depth is one **record** (``name``, ``kind``, ``backend``, ``device``,
    ``depth``, ``model``: the figures above for that depth, ``rows``), passed to
    ``on_record`` as soon as it is complete; ``model`` and ``rows`` combine the records
    (:func:`combine_records`).
    """
    if kind not in ("student", "teacher"):
        raise ValueError(f"kind must be 'student' or 'teacher', not {kind!r}")
    if not candidates:
        raise DataError("no candidates to time")
    import torch

    device = _device(spec)
    if kind == "teacher":
        backend = teacher_backend(spec, device) if backend in (None, "auto") else backend
        if backend not in TEACHER_BACKENDS:
            raise ValueError(f"teacher backend {backend!r} is none of {TEACHER_BACKENDS}")
    else:
        backend = backend or "torch"
        split_backend(backend)  # an unknown backend fails here, before anything loads
    cuda = device.startswith("cuda")
    on_vllm = backend == "vllm"
    _import_runtime(kind, split_backend(backend)[0] if kind == "student" else backend)  # the runtime's baseline
    meter = MemoryMeter(device)
    baseline = gpu_used_mb(device) if on_vllm else (meter.current() if cuda else rss_mb())
    name = model_name(spec)
    t0 = time.perf_counter()
    if kind == "student":
        predict, loaded = student_scorer(spec, backend)
        run = lambda cand, depth: _time_student(predict, cand, depth)  # noqa: E731
    else:
        loaded = load_teacher(spec, backend, engine)
        run = lambda cand, depth: _time_teacher(loaded, cand, depth, spec)  # noqa: E731
    load_seconds = time.perf_counter() - t0
    params = count_parameters(loaded)
    loaded_mb = gpu_used_mb(device) if on_vllm else meter.current()
    info = {
        "name": name, "kind": kind, "backend": backend, "device": device, "params": params,
        "dtype": str(getattr(getattr(loaded, "model", loaded), "dtype",
                             "int8" if backend.startswith("onnx-int8") else "float32")),
        "from_config": spec.get("from_config") if _use_config(spec) else None,
        "load_seconds": load_seconds, "baseline_mb": baseline, "loaded_mb": loaded_mb,
        "threads": torch.get_num_threads(),
    }
    if kind == "student" and split_backend(backend)[0].startswith("onnx"):
        info["onnx_cpu_mem_arena"] = split_backend(backend)[1]
    if getattr(loaded, "graph_bytes", None):
        info["graph_mb"] = loaded.graph_bytes / 2**20

    def memory(rows: list[dict]) -> dict:
        if on_vllm:
            tokens = max(r.get("max_window_tokens", 0) for r in rows)
            kv = -(-tokens // KV_BLOCK) * KV_BLOCK * loaded.kv_bytes_per_token / 2**20
            weights = loaded.weights_bytes / 2**20
            used = gpu_used_mb(device)
            held = None if used is None or baseline is None else max(used, loaded_mb or 0.0) - baseline
            return {"peak_mb": weights + kv, "model_mb": weights + kv, "weights_mb": weights, "kv_cache_mb": kv,
                    "engine_mb": held, "gpu_memory_utilization": spec.get("gpu_memory_utilization"),
                    "memory": VLLM_MEMORY}
        peak = meter.stop()
        if not cuda:
            peak = max(peak, loaded_mb)
        return {"peak_mb": peak, "model_mb": peak - (0.0 if cuda else baseline),
                "memory": "torch.cuda.max_memory_allocated" if cuda else "peak RSS (VmHWM)"}

    # vLLM's memory is read from the device; torch's counters (and a CUDA context) stay out of this process
    reset = (lambda: None) if on_vllm else meter.start
    reset()
    for _ in range(warmup):
        run(candidates[0], min(depths))
    records = []
    for depth in depths:
        rows = []
        for cand in candidates:
            for r in range(repeats):
                rows.append({"depth": depth, "qid": cand.qid, "repeat": r, **run(cand, depth),
                             "name": name, "kind": kind, "backend": backend})
        record = {"name": name, "kind": kind, "backend": backend, "device": device, "depth": depth,
                  "model": {**info, **memory(rows)}, "rows": rows}
        if on_record is not None:
            on_record(record)
        records.append(record)
        reset()  # the next depth's peak is its own
    (model,), rows = combine_records(records)
    return {"model": model, "rows": rows, "records": records}


def combine_records(records: Sequence[dict]) -> tuple[list[dict], list[dict]]:
    """``(models, rows)`` of per-depth records: one model per (name, backend, device), its memory the largest."""
    models: dict[tuple, dict] = {}
    rows: list[dict] = []
    for rec in records:
        key = (rec["name"], rec["backend"], rec["device"])
        m = rec["model"]
        if key not in models:
            models[key] = {**m, "depths": [rec["depth"]]}
        else:
            cur = models[key]
            cur["depths"].append(rec["depth"])
            for field in ("peak_mb", "model_mb", "kv_cache_mb", "engine_mb"):
                if m.get(field) is not None and (cur.get(field) is None or m[field] > cur[field]):
                    cur[field] = m[field]
        rows.extend(rec["rows"])
    return list(models.values()), rows


# --------------------------------------------------------------------------- resumable rows

BENCH_ROW_FIELDS = ("name", "kind", "backend", "device", "depth", "model", "rows")


def bench_key(record: dict) -> tuple[str, str, int, str]:
    """What a benchmark row is keyed by: ``(model name, backend, depth, device)``."""
    return (str(record["name"]), str(record["backend"]), int(record["depth"]), str(record["device"]))


def read_bench_rows(path: str | os.PathLike, repair_tail: bool = True) -> list[dict]:
    """The rows of a benchmark's JSONL file (one per model, backend, depth and device), in file order.

    A half-written last line (an interrupted write) is dropped, and with ``repair_tail`` cut
    off the file so that the next row starts on a line of its own; any other malformed line,
    or a key that occurs twice, is a :class:`DataError` naming the file and the line.
    """
    from .teacher.log import read_log

    records = read_log(path, repair_tail=repair_tail, required=BENCH_ROW_FIELDS, what="benchmark")
    seen: dict[tuple, int] = {}
    for rec in records:
        key = bench_key(rec)
        if key in seen:
            raise DataError(f"{path} line {rec['_line']}: {key} is there twice (first on line {seen[key]})")
        seen[key] = rec.pop("_line")
    return records


def append_bench_row(path: str | os.PathLike, record: dict) -> None:
    """Append one row to a benchmark's JSONL file and make it durable (flush + fsync) before returning."""
    clean = {k: v for k, v in record.items() if not k.startswith("_")}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(clean, default=float) + "\n")
        f.flush()
        os.fsync(f.fileno())


# --------------------------------------------------------------------------- subprocesses


def _candidates_to_json(candidates: Sequence[Candidates]) -> list[dict]:
    return [asdict(c) for c in candidates]


def measure_in_subprocess(kind: str, spec: dict, candidates: Sequence[Candidates], depths: Sequence[int],
                          repeats: int = 1, warmup: int = 1, backend: str | None = None, timeout: float | None = None,
                          out: str | os.PathLike | None = None) -> dict:
    """:func:`measure` in a fresh Python process, so that its peak memory is this model's alone.

    ``out``: a JSONL file the process appends each finished row (depth) to, as it finishes
    (:func:`append_bench_row`), so that a process killed halfway leaves its finished rows.
    """
    with tempfile.TemporaryDirectory(prefix="rank-distillm-bench-") as tmp:
        job, result = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job.write_text(json.dumps({
            "kind": kind, "spec": spec, "candidates": _candidates_to_json(candidates), "depths": list(depths),
            "repeats": repeats, "warmup": warmup, "backend": backend,
            "out": str(Path(out).resolve()) if out is not None else None,
        }))
        proc = subprocess.run([sys.executable, "-m", "rank_distillm.efficiency", str(job), str(result)],
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not result.exists():
            tail = "\n".join((proc.stderr or "").strip().splitlines()[-15:])
            raise RuntimeError(f"benchmark of the {kind} ({spec.get('model')}, {backend}) failed:\n{tail}")
        return json.loads(result.read_text())


def _worker(job_path: str, out_path: str) -> int:
    job = json.loads(Path(job_path).read_text())
    cands = [Candidates(**c) for c in job["candidates"]]
    rows_file = job.get("out")
    on_record = (lambda rec: append_bench_row(rows_file, rec)) if rows_file else None
    result = measure(job["kind"], job["spec"], cands, job["depths"], job["repeats"], job["warmup"], job["backend"],
                     on_record=on_record)
    tmp = Path(out_path).with_suffix(".tmp")
    tmp.write_text(json.dumps(result, default=float))
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


def run_bench(P: dict, depths: Sequence[int] | None = None, log=print, out: str | os.PathLike | None = None) -> dict:
    """The profile's benchmark: the student (each backend) and the teacher, each in its own process.

    ``P`` is ``load_profile(name)["efficiency"]``; ``depths`` replaces both depth lists. The
    teacher runs on the engine its ``backend`` field picks (:func:`teacher_backend`).

    ``out``: a JSONL file of measured rows, one line per (model, backend, depth, device),
    each written and flushed as soon as it is measured. Rows already in the file are not
    measured again, so a benchmark that was interrupted resumes where it stopped (a
    half-written last line is dropped; a malformed line elsewhere is an error naming file and
    line). The result holds this benchmark's rows, from the file; rows of other settings
    in the same file stay there but are left out.

    Returns ``{"models": [...], "rows": [...], "summary": [...], "ratios": [...]}`` (plain
    lists of dicts, JSON-ready).
    """
    student_depths = list(depths or P["student_depths"])
    teacher_depths = list(depths or P["teacher_depths"])
    cands = bench_candidates({**P, "student_depths": student_depths, "teacher_depths": teacher_depths})
    jobs = [("student", P["student"], student_depths, b, cands, P["repeats"]) for b in P["student_backends"]]
    jobs.append(("teacher", P["teacher"], teacher_depths, teacher_backend(P["teacher"]), cands[: P["teacher_queries"]],
                 P["teacher_repeats"]))
    done: set[tuple] = set()
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        done = {bench_key(r) for r in read_bench_rows(out)}
        if done:
            log(f"[bench] {out}: {len(done)} row(s) already measured, not measured again")
    planned: list[tuple] = []
    records = []
    for kind, spec, ds, backend, qs, repeats in jobs:
        if not ds:
            continue
        name, device = model_name(spec), _device(spec)
        keys = [(name, backend, int(d), device) for d in ds]
        planned.extend(keys)
        todo = [d for d, key in zip(ds, keys) if key not in done]
        if not todo:
            log(f"[bench] {kind} {spec['model']} ({backend}): depths {ds} already in {out}")
            continue
        log(f"[bench] {kind} {spec['model']} ({backend}) at depths {todo}, {len(qs)} queries x {repeats} ...")
        try:
            result = measure_in_subprocess(kind, spec, qs, todo, repeats, P["warmup"], backend, out=out)
        except (RuntimeError, ImportError) as error:
            if kind == "student" and backend != "torch":
                log(f"[bench] skipped {backend}: {error}")
                continue
            raise
        records.extend(result["records"])
    if out is not None:
        order = {key: i for i, key in enumerate(planned)}
        records = sorted((r for r in read_bench_rows(out) if bench_key(r) in order), key=lambda r: order[bench_key(r)])
    models, rows = combine_records(records)
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
        runtime, _ = split_backend(backend)
        if runtime != backend and runtime in scores:  # the same graph without the memory arena: the same scores
            scores[backend] = scores[runtime]
            continue
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
    parser.add_argument("--out", default=None, metavar="FILE",
                        help="a JSONL file: each measured row (model, backend, depth, device) is appended as it "
                             "finishes; run again with the same file to resume, skipping the rows already there")


def bench_command(args) -> int:
    from .profiles import load_profile

    P = load_profile(args.profile)["efficiency"]
    if args.depth and min(args.depth) < 1:
        raise ValueError(f"--depth: depths must be positive, not {args.depth}")
    result = run_bench(P, args.depth, log=lambda m: print(m, file=sys.stderr), out=args.out)
    if args.json:
        from .cli import print_json  # strict JSON: null where a field does not apply, never NaN
        print_json(result)
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
