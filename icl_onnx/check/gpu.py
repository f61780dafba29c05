"""GPU memory in use on one device, through ``cudaMemGetInfo`` (libcudart) or NVML, via ctypes.

Used by the check worker around session creation and runs. Both sources report device-wide
memory, so other processes on the same GPU add noise.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys

__all__ = ["GpuMemoryProbe"]

_CUDART_NAMES = ["libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0"]


def _site_cudart() -> list[str]:
    """Returns libcudart copies shipped in pip packages (``nvidia/cuda_runtime/lib``)."""
    found = []
    for entry in sys.path:
        found += sorted(glob.glob(os.path.join(entry, "nvidia", "cu*", "lib", "libcudart.so*")))
        found += sorted(
            glob.glob(os.path.join(entry, "nvidia", "cuda_runtime", "lib", "libcudart.so*"))
        )
    return found


class GpuMemoryProbe:
    """Reads GPU memory in use on ``device_id``; ``used()`` returns bytes or None if unavailable.

    Args:
        device_id: the CUDA device ORT uses.
    """

    def __init__(self, device_id: int = 0):
        self.device_id = device_id
        self.source = "none"
        self._cudart = self._open_cudart()
        self._nvml = None if self._cudart else self._open_nvml()

    def _open_cudart(self):
        for name in _CUDART_NAMES + _site_cudart():
            try:
                lib = ctypes.CDLL(name)
            except OSError:
                continue
            if lib.cudaSetDevice(ctypes.c_int(self.device_id)) != 0:
                continue
            lib.cudaFree(ctypes.c_void_p(0))  # creates the primary context
            self.source = "cudaMemGetInfo"
            return lib
        return None

    def _open_nvml(self):
        for name in ("libnvidia-ml.so.1", "libnvidia-ml.so"):
            try:
                lib = ctypes.CDLL(name)
            except OSError:
                continue
            if lib.nvmlInit_v2() != 0:
                continue
            handle = ctypes.c_void_p()
            if lib.nvmlDeviceGetHandleByIndex_v2(self.device_id, ctypes.byref(handle)) != 0:
                continue
            self._handle = handle
            self.source = "nvml"
            return lib
        return None

    def used(self) -> int | None:
        """Returns the bytes in use on the device, or None when neither source is available."""
        if self._cudart is not None:
            free, total = ctypes.c_size_t(), ctypes.c_size_t()
            if self._cudart.cudaMemGetInfo(ctypes.byref(free), ctypes.byref(total)) != 0:
                return None
            return int(total.value - free.value)
        if self._nvml is not None:

            class _Memory(ctypes.Structure):
                _fields_ = [
                    ("total", ctypes.c_ulonglong),
                    ("free", ctypes.c_ulonglong),
                    ("used", ctypes.c_ulonglong),
                ]

            info = _Memory()
            if self._nvml.nvmlDeviceGetMemoryInfo(self._handle, ctypes.byref(info)) != 0:
                return None
            return int(info.used)
        return None
