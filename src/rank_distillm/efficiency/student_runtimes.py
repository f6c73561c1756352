"""The student's runtimes: PyTorch (``CrossEncoder.predict``), its graph exported to ONNX and run by
ONNX Runtime or OpenVINO (fp32, bf16, int8), or its joint layers alone on precomputed passage states.

``student_scorer(spec, backend)`` gives ``predict(pairs) -> scores`` for a benchmark spec
(:mod:`.specs`) and a backend of :data:`STUDENT_BACKENDS`:

========================  =====================================================================
``torch``                 ``CrossEncoder.predict`` in float32 (the reference)
``onnx``                  ONNX Runtime, float32, the graph fused by its transformer optimizer
``onnx-int8``             ONNX Runtime, int8 weights quantised per tensor, activations on the fly
                          (``quantize_dynamic``)
``onnx-int8-static``      ONNX Runtime, int8 weights per output channel and int8 activations
                          calibrated on training-year pairs (``quantize_static``, QDQ)
``openvino``              OpenVINO, float32 (``INFERENCE_PRECISION_HINT=f32``)
``openvino-bf16``         OpenVINO, bfloat16 (its default on CPUs with AMX or AVX512-BF16)
``openvino-int8``         OpenVINO, int8 by NNCF's post-training quantisation for transformers,
                          calibrated on training-year pairs
``precomputed``           the split student's joint layers on stored passage states
                          (:mod:`.precomputed`)
========================  =====================================================================

A backend name ending in ``-noarena`` runs the same ONNX Runtime graph with its CPU memory
arena off (a memory figure without the arena's cached blocks; see :class:`OnnxStudent`).
The graphs are made once per model, into the cache (:func:`onnx_folder`), in a child process,
so that the process whose memory is measured never holds the PyTorch weights; the quantised
ones by :mod:`.quantize`. Every graph runtime scores pairs sorted by length, each batch padded
to its own longest pair, as ``CrossEncoder.predict`` does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Sequence

from ..data import cache_dir
from .specs import spec_device, use_config

NOARENA = "-noarena"
# backend -> (graph file, runtime, precision the runtime computes its matrix products in)
GRAPHS = {
    "onnx": ("model_optimized.onnx", "onnxruntime", "float32"),
    "onnx-int8": ("model_int8.onnx", "onnxruntime", "int8"),
    "onnx-int8-static": ("model_int8_static.onnx", "onnxruntime", "int8"),
    "openvino": ("model.onnx", "openvino", "float32"),
    "openvino-bf16": ("model.onnx", "openvino", "bfloat16"),
    "openvino-int8": ("model_int8_nncf.xml", "openvino", "int8"),
}
STUDENT_BACKENDS = ("torch", *GRAPHS, "onnx" + NOARENA, "onnx-int8" + NOARENA, "precomputed")
OPENVINO_HINT = {"float32": "f32", "bfloat16": "bf16", "int8": "f32"}  # int8: what is not quantised stays fp32


def split_backend(backend: str) -> tuple[str, bool]:
    """``(runtime, arena)`` of a student backend: ``onnx-int8-noarena`` -> ``("onnx-int8", False)``."""
    if backend.endswith(NOARENA) and backend[: -len(NOARENA)] in ("onnx", "onnx-int8"):
        return backend[: -len(NOARENA)], False
    if backend not in STUDENT_BACKENDS:
        raise ValueError(f"unknown student backend {backend!r}: use one of {STUDENT_BACKENDS}")
    return backend, True


def compute_dtype(backend: str) -> str:
    """The precision a backend's matrix products run in: ``float32``, ``bfloat16`` or ``int8``."""
    runtime = split_backend(backend)[0]
    return GRAPHS[runtime][2] if runtime in GRAPHS else "float32"


# --------------------------------------------------------------------------- PyTorch


def student_path(spec: dict) -> str:
    """The student's folder or hub id; a random-weight folder of its ``from_config`` architecture when offline."""
    from ..models import random_model, resolve_model

    return random_model(spec["from_config"]) if use_config(spec) else resolve_model(spec["model"])


def load_cross_encoder(spec: dict):
    """A ``CrossEncoder`` for the spec (``model``, ``max_length``, ``device``, ``dtype``, ``from_config``).

    A trained student of the book (a folder with ``modules.json``) is loaded with
    :func:`rank_distillm.student.load_student`, whatever its head; a backbone gets a new,
    seeded scoring head.
    """
    import torch
    from sentence_transformers import CrossEncoder

    from ..student import load_student

    path = student_path(spec)
    torch.manual_seed(spec.get("seed", 0))  # an untrained head starts from the same random weights
    kwargs = {}
    if spec.get("dtype") and spec["dtype"] != "float32":
        kwargs["model_kwargs"] = {"dtype": getattr(torch, spec["dtype"])}
    if Path(path).is_dir() and (Path(path) / "modules.json").is_file() and not kwargs:
        model = load_student(path, device=spec_device(spec), max_length=spec.get("max_length", 256))
    else:
        model = CrossEncoder(path, num_labels=1, max_length=spec.get("max_length", 256), device=spec_device(spec), **kwargs)
    model.eval()
    return model


def count_parameters(model) -> int:
    """Parameters of a ``CrossEncoder`` (or any module), or the count an :class:`OnnxStudent` read beside its graph."""
    if isinstance(getattr(model, "params", None), int):
        return model.params
    inner = getattr(model, "model", model)
    return int(sum(p.numel() for p in inner.parameters()))


# --------------------------------------------------------------------------- exported graphs


class OnnxStudent:
    """A cross-encoder exported to ONNX (:func:`export_graph`), run by ONNX Runtime or OpenVINO.

    ``backend``: one of :data:`GRAPHS` (see the module docstring), from the graphs in
    ``folder``; only the tokenizer is needed beside them, never the PyTorch weights.
    ``predict`` returns raw logits, like ``CrossEncoder.predict(..., activation_fn=Identity())``,
    and like it tokenises all pairs first, sorts them by length and pads each batch to its own
    longest pair (batches of random lengths would pad most pairs to a long one's length).

    OpenVINO computes in bfloat16 by default on CPUs that can (AMX, AVX512-BF16); the
    precision is set explicitly here (:data:`OPENVINO_HINT`), so ``openvino`` is float32 and
    ``openvino-bf16`` says what it is.

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

    def __init__(self, tokenizer, max_length: int, backend: str, folder: str | os.PathLike, arena: bool = True):
        folder = Path(folder)
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
        self.graph_bytes = sum(p.stat().st_size for p in (path, path.with_suffix(".bin")) if p.exists())
        _, runtime, precision = GRAPHS[backend]
        if runtime == "openvino":
            try:
                import openvino as ov
            except ImportError:
                raise ImportError("the openvino backends need OpenVINO: pip install openvino") from None
            compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": OPENVINO_HINT[precision]})
            self._run = lambda feeds: compiled(feeds)[0]
        else:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.enable_cpu_mem_arena = arena
            session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
            self.session_options = options
            self._run = lambda feeds: session.run(None, feeds)[0]

    def batches(self, pairs, batch_size: int = 32) -> tuple[list[dict], "np.ndarray"]:  # noqa: F821
        """``(feeds, order)`` of :func:`length_sorted_batches` for this graph's inputs."""
        return length_sorted_batches(self.tokenizer, pairs, self.max_length, self.passage_prefix, self.input_names,
                                     batch_size)

    def predict(self, pairs, batch_size: int = 32, **_) -> "np.ndarray":  # noqa: F821
        import numpy as np

        if not len(pairs):
            return np.zeros(0, dtype=np.float32)
        feeds, order = self.batches(pairs, batch_size)
        sorted_scores = np.concatenate([np.asarray(self._run(f)).reshape(len(f["input_ids"]), -1)[:, 0] for f in feeds])
        scores = np.empty_like(sorted_scores)
        scores[order] = sorted_scores
        return scores


def length_sorted_batches(tokenizer, pairs, max_length: int, passage_prefix: str, input_names: Sequence[str],
                          batch_size: int = 32) -> tuple[list[dict], "np.ndarray"]:  # noqa: F821
    """``(feeds, order)``: the pairs tokenised, sorted longest first, in batches padded to their own longest pair.

    ``order[i]`` is the input position of the ``i``-th sorted pair.
    """
    import numpy as np

    enc = tokenizer([p[0] for p in pairs], [passage_prefix + p[1] for p in pairs], truncation="longest_first",
                    max_length=max_length)
    order = np.argsort([-len(ids) for ids in enc["input_ids"]], kind="stable")
    feeds = []
    for i in range(0, len(pairs), batch_size):
        rows = [{k: enc[k][j] for k in input_names} for j in order[i : i + batch_size]]
        padded = tokenizer.pad(rows, padding=True, return_tensors="np")
        feeds.append({k: padded[k].astype(np.int64) for k in input_names})
    return feeds, order


def _input_names(tokenizer) -> list[str]:
    """The graph's inputs: the tokenizer's model inputs among ``input_ids``, ``attention_mask``, ``token_type_ids``."""
    return [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names]


def graph_path(folder: str | os.PathLike, backend: str) -> Path:
    """The graph a backend runs (:data:`GRAPHS`): ``model.onnx`` (onnx, openvino, openvino-bf16), ``model_int8.onnx``, ..."""
    backend = split_backend(backend)[0]
    if backend not in GRAPHS:
        raise ValueError(f"{backend!r} runs no exported graph: the graph backends are {', '.join(GRAPHS)}"
                         f" (and the {NOARENA} variants of onnx and onnx-int8)")
    return Path(folder) / GRAPHS[backend][0]


def export_graph(cross_encoder, backend: str, folder: str | os.PathLike, calibration: dict | None = None) -> Path:
    """Make (once) the graph ``backend`` runs, and write the parameter count and passage prefix beside it; its path.

    ``calibration``: the student spec's ``calibration`` section, for the statically quantised
    graphs (:func:`.quantize.calibration_pairs`).
    """
    from ..student import passage_prefix
    from . import quantize

    folder = Path(folder)
    runtime = split_backend(backend)[0]
    fp32 = export_onnx(cross_encoder, folder / "model.onnx", _input_names(cross_encoder.tokenizer))
    info = folder / "params.json"
    if not info.exists():
        info.write_text(json.dumps({"params": count_parameters(cross_encoder), "passage_prefix": passage_prefix(cross_encoder)}))
    path = graph_path(folder, runtime)
    if path.exists():
        return path
    if runtime == "onnx":
        config = cross_encoder.model.config
        return optimize_onnx(fp32, path, config.num_attention_heads, config.hidden_size)
    if runtime == "onnx-int8":
        return quantize.dynamic_int8(fp32, path)
    if runtime in ("onnx-int8-static", "openvino-int8"):
        if not calibration:
            raise ValueError(f"the {runtime} student needs calibration pairs: the spec's calibration section "
                             "(dataset, first_stage, pairs) is missing")
        tokenizer = cross_encoder.tokenizer
        feeds, _ = length_sorted_batches(tokenizer, quantize.calibration_pairs(calibration), cross_encoder.max_length,
                                         passage_prefix(cross_encoder), _input_names(tokenizer),
                                         calibration.get("batch_size", 16))
        make = quantize.static_int8 if runtime == "onnx-int8-static" else quantize.nncf_int8
        return make(fp32, path, feeds, exclude=calibration.get("exclude", ()))
    return fp32


def optimize_onnx(fp32: Path, path: Path, heads: int, hidden: int) -> Path:
    """ONNX Runtime's transformer optimizer on a BERT-like graph: layer normalisation fused with the residual
    addition, GELU with its bias (attention is fused only where the graph's mask has the standard pattern)."""
    from onnxruntime.transformers.optimizer import optimize_model

    from .quantize import _atomic

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    model = optimize_model(str(fp32), model_type="bert", num_heads=heads, hidden_size=hidden)
    return _atomic(path, lambda tmp: model.save_model_to_file(str(tmp)))


def _export_for_spec(spec: dict, backend: str, folder: str) -> None:
    """Make a student's graph in ``folder``, in a process of its own (its PyTorch weights stay there)."""
    export_graph(load_cross_encoder(spec), backend, folder, spec.get("calibration"))


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


def _forget_stale_calibration(folder: Path, runtime: str, calibration: dict | None) -> None:
    """Remove a calibrated graph made with other calibration settings (it is made again), and note the current ones."""
    if runtime not in ("onnx-int8-static", "openvino-int8") or not calibration:
        return
    note = folder / f"calibration-{runtime}.json"
    current = json.dumps(calibration, sort_keys=True)
    if note.is_file() and note.read_text() == current:
        return
    path = graph_path(folder, runtime)
    for stale in (path, path.with_suffix(".bin")):
        stale.unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    note.write_text(current)


def onnx_folder(model_path: str) -> Path:
    """Where the exported graphs of a model live (in the cache, keyed by the model's path)."""
    key = hashlib.sha1(str(Path(model_path).resolve()).encode()).hexdigest()[:12]
    return cache_dir() / "efficiency" / "onnx" / f"{Path(model_path).name}-{key}"


# --------------------------------------------------------------------------- one scorer per backend


def student_scorer(spec: dict, backend: str = "torch"):
    """``(predict(pairs) -> scores, model)`` for a student spec and a backend of :data:`STUDENT_BACKENDS`."""
    import torch

    batch_size = spec.get("batch_size", 32)
    runtime, arena = split_backend(backend)
    if runtime == "torch":
        model = load_cross_encoder(spec)
        identity = torch.nn.Identity()

        def predict(pairs):
            return model.predict(pairs, batch_size=batch_size, show_progress_bar=False, activation_fn=identity)

        return predict, model
    if runtime == "precomputed":
        from .precomputed import PrecomputedStudent

        model = PrecomputedStudent(load_cross_encoder(spec), spec.get("states_dtype", "float16"), batch_size)
        return model.predict, model
    # The graph is exported in a child process, so that this process (whose memory is measured)
    # holds only the tokenizer and the runtime's graph, never the PyTorch weights.
    import multiprocessing

    from transformers import AutoTokenizer

    folder = onnx_folder(student_path(spec))
    _forget_stale_calibration(folder, runtime, spec.get("calibration"))
    if not graph_path(folder, backend).exists() or not (folder / "params.json").exists():
        child = multiprocessing.get_context("spawn").Process(target=_export_for_spec, args=(spec, runtime, str(folder)))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise RuntimeError(f"exporting the {backend} graph of {spec.get('model')} failed (exit code {child.exitcode})")
    tokenizer = AutoTokenizer.from_pretrained(student_path(spec))
    onnx = OnnxStudent(tokenizer, spec.get("max_length", 256), runtime, folder, arena)
    return (lambda pairs: onnx.predict(pairs, batch_size=batch_size)), onnx
