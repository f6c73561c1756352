"""Devices: which accelerator runs a job, in which floating-point type, and how much memory it holds.

The one home of everything that asks the hardware (a leaf module: it imports nothing from
the package, and ``torch`` only inside its functions):

* :func:`detect_devices`, :func:`default_device`: the CUDA devices torch sees, and the
  device a job runs on when its settings name none (``cuda`` when there is one);
* :func:`choose_dtype` (a profile's ``dtype: auto``), :func:`default_dtype` (a model's
  dtype on a device) and :func:`use_bf16` (a profile's ``bf16: auto``): bfloat16 where the
  hardware computes in it natively, float16 on older GPUs, float32 elsewhere;
* :func:`synchronize`: wait for queued GPU work, so that a timer stops when the work is done;
* memory: :func:`rss_mb`, :func:`peak_rss_mb` and :func:`reset_peak_rss` (this process's
  resident set, Linux ``/proc``), :class:`MemoryMeter` (the peak between two points, CPU
  or CUDA) and :func:`gpu_used_mb` (what the whole GPU holds, other processes included).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


# --------------------------------------------------------------------------- devices


def detect_devices() -> list[dict]:
    """The CUDA devices torch sees: name, memory (GiB), compute capability, native bf16.

    An empty list on a machine without a GPU (or without a CUDA build of torch). ``bf16``
    is compute capability 8.0 and newer (Ampere: A100, L4, H100); torch's own
    ``is_bf16_supported`` also counts the emulated bf16 of a T4, which is slow.
    """
    import torch

    if not torch.cuda.is_available():
        return []
    devices = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        devices.append({
            "index": i,
            "name": props.name,
            "memory_gib": round(props.total_memory / 2**30, 1),
            "capability": f"{props.major}.{props.minor}",
            "bf16": props.major >= 8,
        })
    return devices


def default_device() -> str:
    """``cuda`` when torch sees a GPU, else ``cpu``: the device of a job whose settings name none."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def choose_dtype(setting: str = "auto", devices: list[dict] | None = None) -> str:
    """The floating-point type to compute in on the GPUs: ``bfloat16``, ``float16`` or ``float32``.

    ``auto`` picks bf16 on GPUs that support it natively (:func:`detect_devices`), fp16 on
    older GPUs (T4, V100) and fp32 without a GPU. Any other setting (``bf16``, ``fp16``,
    ``fp32`` or the full names) is returned by its full name, after a check of its spelling.
    """
    setting = DTYPES.get(setting, setting)
    if setting in DTYPES.values():
        return setting
    if setting != "auto":
        raise ValueError(f"dtype {setting!r}: use auto, bfloat16 (bf16), float16 (fp16) or float32 (fp32)")
    devices = detect_devices() if devices is None else devices
    if not devices:
        return "float32"
    return "bfloat16" if all(d["bf16"] for d in devices) else "float16"


def default_dtype(device: str) -> str:
    """A model's dtype on ``device`` when its settings name none: ``choose_dtype("auto")`` on a GPU, float32 on the CPU."""
    return choose_dtype("auto") if device.startswith("cuda") else "float32"


def use_bf16(setting) -> bool:
    """The profile's ``bf16`` (true, false or ``auto``) for this machine.

    ``auto``: bfloat16 autocast where the hardware computes in it natively: an Ampere or
    newer GPU (:func:`choose_dtype`), or a CPU with AVX512-BF16 or AMX (oneDNN's check);
    float32 elsewhere, where emulated bfloat16 would be slower, not faster.
    """
    if setting == "auto":
        devices = detect_devices()
        if devices:
            return choose_dtype("auto", devices) == "bfloat16"
        import torch

        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if not isinstance(setting, bool):
        raise ValueError(f"training.bf16: expected true, false or auto, got {setting!r}")
    return setting


def synchronize(device: str) -> None:
    """Wait until the GPU has finished the work queued on ``device`` (nothing to wait for on the CPU)."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


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
    """Peak memory of what runs between :meth:`start` and :meth:`stop`, in MiB.

    On CUDA ``torch.cuda.max_memory_allocated`` (what tensors hold; :attr:`what` says so),
    elsewhere this process's peak resident set size (``VmHWM``, reset at :meth:`start`).
    """

    def __init__(self, device: str):
        self.device = str(device)
        self.cuda = self.device.startswith("cuda")
        self.what = "torch.cuda.max_memory_allocated" if self.cuda else "peak RSS (VmHWM)"

    def start(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            reset_peak_rss()

    def stop(self) -> float:
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return peak_rss_mb()

    def current(self) -> float:
        if self.cuda:
            import torch

            return torch.cuda.memory_allocated(self.device) / 2**20
        return rss_mb()


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
