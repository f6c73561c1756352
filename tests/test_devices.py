"""Devices: the dtype a setting resolves to on given GPUs, bf16 'auto', synchronisation on the CPU."""

from __future__ import annotations

import pytest

from rank_distillm import devices

T4 = {"name": "Tesla T4", "memory_gib": 15.0, "capability": "7.5", "bf16": False}
A100 = {"name": "NVIDIA A100-SXM4-80GB", "memory_gib": 79.3, "capability": "8.0", "bf16": True}


def test_dtype_choice():
    assert devices.choose_dtype("auto", [A100]) == "bfloat16"
    assert devices.choose_dtype("auto", [T4]) == "float16"
    assert devices.choose_dtype("auto", [A100, T4]) == "float16"  # the slowest GPU decides
    assert devices.choose_dtype("auto", []) == "float32"
    assert devices.choose_dtype("bf16", [T4]) == "bfloat16" and devices.choose_dtype("float16") == "float16"
    with pytest.raises(ValueError, match="dtype 'half'"):
        devices.choose_dtype("half")


def test_default_dtype_of_a_device(monkeypatch):
    monkeypatch.setattr(devices, "detect_devices", lambda: [T4])
    assert devices.default_dtype("cuda") == "float16" and devices.default_dtype("cuda:0") == "float16"
    monkeypatch.setattr(devices, "detect_devices", lambda: [A100])
    assert devices.default_dtype("cuda") == "bfloat16"
    assert devices.default_dtype("cpu") == "float32"


@pytest.mark.parametrize("gpus, cpu_bf16, expected", [
    ([A100], False, True),   # native bf16 on the GPU
    ([T4], True, False),     # a T4 emulates bf16: off, whatever the CPU has
    ([], True, True),        # no GPU: the CPU's own (AVX512-BF16 / AMX)
    ([], False, False),
])
def test_bf16_auto_follows_the_hardware(monkeypatch, gpus, cpu_bf16, expected):
    import torch

    monkeypatch.setattr(devices, "detect_devices", lambda: gpus)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: cpu_bf16)
    assert devices.use_bf16("auto") is expected


def test_bf16_explicit_settings():
    assert devices.use_bf16(True) is True and devices.use_bf16(False) is False
    with pytest.raises(ValueError, match="training.bf16"):
        devices.use_bf16("yes")


def test_cpu_needs_no_synchronisation_and_no_gpu_reading():
    devices.synchronize("cpu")  # nothing queued: returns at once
    assert devices.gpu_used_mb("cpu") is None
    assert devices.MemoryMeter("cpu").what == "peak RSS (VmHWM)"
    assert devices.MemoryMeter("cuda:1").what == "torch.cuda.max_memory_allocated"
