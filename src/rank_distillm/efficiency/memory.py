"""Memory figures of a timed model: what the ``peak_mb`` and ``model_mb`` of a benchmark row mean.

Each model is measured in its own process (:func:`.harness.measure_in_subprocess`), so that
its memory is its own; the meters are :mod:`rank_distillm.devices`'. Per depth (the peak is
reset before each depth; the warm-up counts with the first):

* on the CPU, the peak resident set size while re-ranking (``VmHWM``, reset after the model
  is loaded so that loading transients do not count); ``model_mb = peak_mb - baseline_mb``,
  the runtime's own footprint before loading;
* on a GPU, ``torch.cuda.max_memory_allocated``;
* on vLLM, which reserves most of the GPU up front for its KV-cache pool: the weights plus
  the KV cache the longest window used (whole blocks of :data:`KV_BLOCK` tokens), computed
  from the model's config, with the device memory the engine holds beside it (``engine_mb``).
"""

from __future__ import annotations

from ..devices import MemoryMeter, gpu_used_mb

VLLM_MEMORY = ("weights + KV cache of the longest window (computed from the config; vLLM reserves "
               "gpu_memory_utilization of the GPU up front: engine_mb)")
KV_BLOCK = 16  # vLLM's default KV-cache block size (tokens): a sequence holds whole blocks
PEAK_FIELDS = ("peak_mb", "model_mb", "kv_cache_mb", "engine_mb")  # a model's figure over depths: the largest


class ModelMemory:
    """The memory figures of one model in this process: :meth:`baseline`, :meth:`loaded`, then per depth
    :meth:`start` and :meth:`figures`."""

    def __init__(self, device: str, vllm: bool = False):
        self.device, self.vllm = device, vllm
        self.cuda = device.startswith("cuda")
        self.meter = MemoryMeter(device)
        self.baseline_mb = self.loaded_mb = None

    def _now(self) -> float | None:
        return gpu_used_mb(self.device) if self.vllm else self.meter.current()

    def baseline(self) -> float | None:
        """The runtime's footprint before the model is loaded."""
        self.baseline_mb = self._now()
        return self.baseline_mb

    def loaded(self) -> float | None:
        self.loaded_mb = self._now()
        return self.loaded_mb

    def start(self) -> None:
        """Reset the peak (not on vLLM: its memory is read from the device; torch's counters and a CUDA
        context stay out of this process)."""
        if not self.vllm:
            self.meter.start()

    def figures(self, rows: list[dict], teacher=None, gpu_memory_utilization=None) -> dict:
        """``peak_mb``, ``model_mb`` and what they measure, for the rows since :meth:`start`.

        ``teacher``: the :class:`.teacher_engines.LoadedTeacher` on vLLM (its weights and KV bytes per token).
        """
        if self.vllm:
            tokens = max(r.get("max_window_tokens", 0) for r in rows)
            kv = -(-tokens // KV_BLOCK) * KV_BLOCK * teacher.kv_bytes_per_token / 2**20
            weights = teacher.weights_bytes / 2**20
            used = gpu_used_mb(self.device)
            held = None if used is None or self.baseline_mb is None else max(used, self.loaded_mb or 0.0) - self.baseline_mb
            return {"peak_mb": weights + kv, "model_mb": weights + kv, "weights_mb": weights, "kv_cache_mb": kv,
                    "engine_mb": held, "gpu_memory_utilization": gpu_memory_utilization, "memory": VLLM_MEMORY}
        peak = self.meter.stop()
        if not self.cuda:
            peak = max(peak, self.loaded_mb)
        return {"peak_mb": peak, "model_mb": peak - (0.0 if self.cuda else self.baseline_mb), "memory": self.meter.what}
