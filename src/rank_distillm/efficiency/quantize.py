"""int8 students: the float32 graph quantised by the ecosystem's post-training quantisers.

Quantisation maps a float tensor ``x`` to 8-bit integers ``q = round(x / scale) + zero``;
a matrix product of int8 operands accumulates in int32 and is scaled back. Three recipes,
from the least to the most informed:

- :func:`dynamic_int8` (ONNX Runtime ``quantize_dynamic``): weights int8 with one scale per
  tensor; each activation is quantised on the fly with a scale from its own range. Nothing
  to calibrate, but one scale per weight matrix is coarse: a column with large weights
  sets the step for all.
- :func:`static_int8` (ONNX Runtime ``quantize_static``, QDQ format): weights int8 with one
  scale per output channel, activations ``uint8`` with scales fixed beforehand from the
  ranges they take on **calibration pairs** (:func:`calibration_pairs`: query-passage pairs
  of the training year, never the test year). Only matrix products with a weight operand
  are quantised (attention's activation-by-activation products stay float32).
- :func:`nncf_int8` (NNCF's ``nncf.quantize`` for OpenVINO, ``ModelType.TRANSFORMER``):
  the same calibration, plus what NNCF does for transformers: SmoothQuant (outliers of the
  activations moved into the weights, where per-channel scales absorb them), and softmax,
  layer normalisation and GELU kept in floating point. This is what sentence-transformers'
  ``export_static_quantized_openvino_model`` runs (through optimum-intel).

``exclude``: regular expressions for the names of graph nodes kept in float32 (e.g.
``"layer\\.5/"``: the last layer; ``"layer\\.\\d+/output/dense"``: every feed-forward output
projection, whose inputs, after GELU, hold the largest outliers), the sensitive layers a recipe
leaves alone (the profile's ``student.calibration.exclude``). On the MiniLM student, NNCF's
graph with the feed-forward output projections in float32 kept the scores closest to float32's
of the recipes tried (chapter 7; ``benchmarks/bench_rerankers.py`` times and measures the others).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

from ..data import load_candidates


def calibration_pairs(calibration: dict) -> list[tuple[str, str]]:
    """``pairs`` query-passage pairs of the profile's ``calibration`` set, spread over its queries.

    ``calibration``: ``dataset`` and ``first_stage`` (the training year, e.g. DL20 for a student
    tested on DL19), ``pairs`` and ``seed``. The pairs are drawn without replacement from the
    first stage's top-``depth`` (default 100) of every query.
    """
    import numpy as np

    cands = load_candidates(calibration["dataset"], calibration["first_stage"], depth=calibration.get("depth", 100))
    pool = [(c.query, t) for c in cands for t in c.texts]
    n = int(calibration["pairs"])
    if not 0 < n <= len(pool):
        raise ValueError(f"calibration.pairs: {n} is not between 1 and the {len(pool)} pairs of {calibration['dataset']}")
    rng = np.random.default_rng(int(calibration.get("seed", 0)))
    return [pool[i] for i in sorted(rng.choice(len(pool), n, replace=False))]


def _nodes(graph: Path, exclude: Sequence[str], op_types: Sequence[str] = ("MatMul",)) -> list[str]:
    """The names of ``op_types`` nodes of ``graph`` that one of the ``exclude`` regular expressions finds."""
    import re

    import onnx

    model = onnx.load(str(graph), load_external_data=False)
    return [n.name for n in model.graph.node if n.op_type in op_types and any(re.search(f, n.name) for f in exclude)]


def _atomic(path: Path, write) -> Path:
    path = Path(path)
    tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}{path.suffix}")
    write(tmp)
    if tmp.suffix == ".xml":  # OpenVINO: the graph and its weights (.bin) beside it
        os.replace(tmp.with_suffix(".bin"), path.with_suffix(".bin"))
    os.replace(tmp, path)
    return path


def dynamic_int8(fp32: Path, path: Path, exclude: Sequence[str] = (), per_channel: bool = False) -> Path:
    """ONNX Runtime's dynamic quantisation: int8 weights, activations quantised on the fly."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # "consider pre-processing" warning
    return _atomic(path, lambda tmp: quantize_dynamic(
        str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=per_channel,
        nodes_to_exclude=_nodes(fp32, exclude) if exclude else None))


def static_int8(fp32: Path, path: Path, feeds: Sequence[dict], exclude: Sequence[str] = ()) -> Path:
    """ONNX Runtime's static quantisation (QDQ): per-channel int8 weights, uint8 activations calibrated on ``feeds``.

    ``feeds``: the graph's inputs for the calibration pairs, batch by batch
    (:meth:`.student_runtimes.OnnxStudent.batches`). ``uint8`` activations with ``int8``
    weights is the combination ONNX Runtime's fast x86 kernels (VNNI, AMX) take.
    """
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    class Feeds(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(feeds)

        def get_next(self):
            return next(self.batches, None)

    logging.getLogger().setLevel(logging.ERROR)
    return _atomic(path, lambda tmp: quantize_static(
        str(fp32), str(tmp), Feeds(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
        nodes_to_exclude=_nodes(fp32, exclude) or None, calibrate_method=CalibrationMethod.MinMax,
        extra_options={"MatMulConstBOnly": True, "WeightSymmetric": True, "ActivationSymmetric": False}))


def nncf_int8(fp32: Path, path: Path, feeds: Sequence[dict], exclude: Sequence[str] = ()) -> Path:
    """NNCF's post-training quantisation of the OpenVINO model for transformers, calibrated on ``feeds``; an ``.xml``."""
    try:
        import nncf
        import openvino as ov
    except ImportError:
        raise ImportError("the openvino-int8 student needs NNCF and OpenVINO: pip install nncf openvino") from None

    logging.getLogger("nncf").setLevel(logging.ERROR)
    model = ov.Core().read_model(str(fp32))
    names = _nodes(fp32, exclude)
    ignored = nncf.IgnoredScope(names=names, validate=False) if names else None
    quantized = nncf.quantize(model, nncf.Dataset(list(feeds)), subset_size=len(feeds),
                              model_type=nncf.ModelType.TRANSFORMER, preset=nncf.QuantizationPreset.MIXED,
                              **({"ignored_scope": ignored} if ignored else {}))
    return _atomic(path, lambda tmp: ov.save_model(quantized, str(tmp), compress_to_fp16=False))
