"""Direct access to the CUDA kernels of the op library, for tests and benchmarks.

``libicl_cuda_harness.so`` (a build target that is not installed) is built from the same
launchers as the CUDA kernels of ``libicl_ops.so`` and exposes them through a plain C API on
raw device pointers. This module drives it with ctypes on torch CUDA tensors, so the kernels
can be checked and timed where onnxruntime-gpu is not installed. Of ``icl_onnx`` it imports
only the view attributes (``icl_onnx.views``, standard library only), and torch only when a
kernel is called.

The harness loads without a GPU or a CUDA driver (cudart is linked statically and cuBLAS is
opened on the first GEMM), so the build facts (:meth:`CudaHarness.arch_list`) can be read
anywhere.
"""

from __future__ import annotations

import ctypes
import functools
import os
import struct
from pathlib import Path
from typing import Any

from icl_onnx.views import ViewAttrs

__all__ = [
    "CudaHarness",
    "HarnessError",
    "HarnessNotFoundError",
    "harness_path",
    "load",
    "materialize_view",
]

ROOT = Path(__file__).resolve().parents[2]

_LIB_NAME = "libicl_cuda_harness.so"
_ENV_HARNESS = "ICL_ONNX_CUDA_HARNESS"
_ENV_LIBRARY = "ICL_ONNX_LIBRARY"

# ONNX TensorProto element types, the codes the C API takes.
_FLOAT, _FLOAT16, _BFLOAT16, _INT32, _INT64 = 1, 10, 16, 6, 7


class HarnessNotFoundError(RuntimeError):
    """The CUDA harness library was not built (no nvcc at build time)."""


class HarnessError(RuntimeError):
    """A harness call failed; the message is the C side's."""


class _View(ctypes.Structure):
    """IclHarnessView of harness_api.cc: the view attributes in ViewAttrs' order."""

    _fields_ = [
        ("transpose", ctypes.c_int64),
        ("slice_axis", ctypes.c_int64),
        ("slice_start", ctypes.c_int64),
        ("slice_size", ctypes.c_int64),
        ("scale", ctypes.c_float),
    ]


def _candidates() -> list[Path]:
    out = []
    if os.environ.get(_ENV_HARNESS):
        out.append(Path(os.environ[_ENV_HARNESS]))
    if os.environ.get(_ENV_LIBRARY):
        out.append(Path(os.environ[_ENV_LIBRARY]).parent / _LIB_NAME)
    # Newest first: a build folder left from an older wheel tag keeps an outdated harness.
    # build/wheel/ is `make wheel`'s, not the editable build's: tests/test_wheel.py names it.
    builds = [p for p in ROOT.glob(f"build/*/{_LIB_NAME}") if p.parent.name != "wheel"]
    out.extend(sorted(builds, key=lambda p: p.stat().st_mtime, reverse=True))
    return out


def harness_path() -> str:
    """Returns the path of ``libicl_cuda_harness.so``.

    Looked up in ``$ICL_ONNX_CUDA_HARNESS``, beside ``$ICL_ONNX_LIBRARY``, then in the
    repository's build folders (``build/<wheel tag>/``, where ``make build`` leaves it; not
    ``build/wheel/``, ``make wheel``'s).

    Raises:
        HarnessNotFoundError: no harness library; build the package where nvcc is available.
    """
    for path in _candidates():
        if path.is_file():
            return str(path)
    raise HarnessNotFoundError(
        f"{_LIB_NAME} not found (looked in {', '.join(str(p) for p in _candidates())}); it is "
        "built with the op library when nvcc is found"
    )


@functools.cache
def load() -> CudaHarness:
    """Returns the harness loaded from :func:`harness_path` (once per process)."""
    return CudaHarness(harness_path())


def _view_struct(view: dict[str, Any]) -> _View:
    v = ViewAttrs.from_attrs(view, allow_output_dtype=False)
    return _View(*(getattr(v, name) for name, _ in _View._fields_))


def _dtype_code(dtype: Any) -> int:
    import torch

    codes = {torch.float32: _FLOAT, torch.float16: _FLOAT16, torch.bfloat16: _BFLOAT16}
    if dtype not in codes:
        raise TypeError(f"unsupported dtype {dtype}; use float32, float16 or bfloat16")
    return codes[dtype]


def _torch_dtype(code: int) -> Any:
    import torch

    dtypes = {_FLOAT: torch.float32, _FLOAT16: torch.float16, _BFLOAT16: torch.bfloat16}
    if code not in dtypes:
        raise TypeError(f"unsupported ONNX element type {code}")
    return dtypes[code]


def materialize_view(w: Any, dtype: Any = None, **view: Any) -> Any:
    """Returns ``view(w)`` (docs/operators.md) as a new contiguous tensor.

    This is the copy the ICL operators avoid: the baseline of the benchmarks and, with
    ``dtype=torch.float64``, the exact input of the tests' reference.

    Args:
        w: the stored 2-D weight.
        dtype: the result's dtype, ``w``'s when None. The scale, a float32 as the attribute
            is (and as the kernels and ``icl_onnx.reference`` read it), is applied in float64
            and the result rounded once.
        **view: the view attributes.
    """
    v = ViewAttrs.from_attrs(view, allow_output_dtype=False)
    out_dtype = w.dtype if dtype is None else dtype
    selected = v.select(w)
    if v.scale != 1.0:
        scale = struct.unpack("f", struct.pack("f", v.scale))[0]
        return (selected.double() * scale).to(out_dtype).contiguous()
    return selected.to(out_dtype).contiguous()


class CudaHarness:
    """The CUDA launchers of the op library, called on torch CUDA tensors.

    Every call enqueues its work on torch's current stream of the inputs' device and returns
    without synchronising, as the ORT kernels do.
    """

    def __init__(self, path: str) -> None:
        """Loads the harness library at ``path``."""
        self.path = path
        lib = ctypes.CDLL(path)
        i64, i32, ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p
        view_p = ctypes.POINTER(_View)
        lib.icl_harness_last_error.restype = ctypes.c_char_p
        lib.icl_harness_arch_list.restype = ctypes.c_char_p
        lib.icl_harness_cuda_version.restype = i32
        lib.icl_harness_loaded_kernel_versions.argtypes = [ctypes.POINTER(i32)] * 2
        lib.icl_harness_view_shape.argtypes = [view_p, i64, i64, ctypes.POINTER(i64)] + [
            ctypes.POINTER(i64)
        ]
        lib.icl_harness_matmul_workspace_bytes.argtypes = [i32, i32, i64, i64, i64]
        lib.icl_harness_matmul_workspace_bytes.restype = i64
        lib.icl_harness_matmul.argtypes = [
            ptr,
            i32,
            i64,
            i64,
            ptr,
            i32,
            i64,
            i64,
            view_p,
            ptr,
            ptr,
            ptr,
            i64,
            ptr,
        ]
        lib.icl_harness_gather.argtypes = [ptr, i32, i64, i64, view_p, ptr, i32, i64, ptr, i32, ptr]
        self._lib = lib

    def _check(self, rc: int) -> None:
        if rc != 0:
            raise HarnessError(self._lib.icl_harness_last_error().decode())

    def arch_list(self) -> list[int]:
        """The virtual architectures the kernels were compiled for, e.g. ``[800, 900]``."""
        text = self._lib.icl_harness_arch_list().decode()
        return [int(a) for a in text.split(",") if a.strip()]

    def cuda_version(self) -> int:
        """The CUDA runtime version the kernels were built with, e.g. ``13000``."""
        return int(self._lib.icl_harness_cuda_version())

    def loaded_kernel_versions(self) -> tuple[int, int]:
        """``(binary, ptx)`` versions of the kernel image loaded for the current device.

        ``(90, 90)`` on an H200 means its own SASS runs. Needs a GPU.
        """
        binary, ptx = ctypes.c_int(), ctypes.c_int()
        self._check(self._lib.icl_harness_loaded_kernel_versions(binary, ptx))
        return binary.value, ptx.value

    def view_shape(self, w_shape: tuple[int, int], **view: Any) -> tuple[int, int]:
        """Shape of ``view(W)`` for a stored ``W`` of ``w_shape``, resolved by the C++ code."""
        rows, cols = ctypes.c_int64(), ctypes.c_int64()
        self._check(
            self._lib.icl_harness_view_shape(
                ctypes.byref(_view_struct(view)), w_shape[0], w_shape[1], rows, cols
            )
        )
        return rows.value, cols.value

    def matmul(self, a: Any, w: Any, bias: Any = None, **view: Any) -> Any:
        """Returns ``a @ view(w) + bias`` computed by the IclMatMul launcher.

        Args:
            a: ``[..., K]`` CUDA tensor, float32, float16 or bfloat16.
            w: the stored 2-D weight on the same device, any of those dtypes.
            bias: ``[N]`` with ``a``'s dtype, or None.
            **view: the view attributes (transpose, slice_axis, slice_start, slice_size,
                scale).
        """
        import torch

        v = _view_struct(view)
        k, n = self.view_shape(tuple(w.shape), **view)
        a2 = a.contiguous().reshape(-1, a.shape[-1])
        w = w.contiguous()
        if a.shape[-1] != k:
            raise ValueError(f"view(W) has {k} rows but A's last dimension is {a.shape[-1]}")
        if bias is not None and (bias.shape != (n,) or bias.dtype != a.dtype):
            raise ValueError(f"bias must be [{n}] of {a.dtype}")
        a_code, w_code = _dtype_code(a.dtype), _dtype_code(w.dtype)
        y = torch.empty((a2.shape[0], n), dtype=a.dtype, device=a.device)
        ws_bytes = self._lib.icl_harness_matmul_workspace_bytes(a_code, w_code, a2.shape[0], k, n)
        workspace = torch.empty(ws_bytes, dtype=torch.uint8, device=a.device) if ws_bytes else None
        with torch.cuda.device(a.device):
            stream = torch.cuda.current_stream().cuda_stream
            self._check(
                self._lib.icl_harness_matmul(
                    a2.data_ptr(), a_code, a2.shape[0], k,
                    w.data_ptr(), w_code, w.shape[0], w.shape[1], ctypes.byref(v),
                    None if bias is None else bias.contiguous().data_ptr(), y.data_ptr(),
                    None if workspace is None else workspace.data_ptr(), ws_bytes, stream,
                )
            )  # fmt: skip
        return y.reshape(*a.shape[:-1], n)

    def gather(self, w: Any, indices: Any, output_dtype: int = 0, **view: Any) -> Any:
        """Returns ``view(w)[indices]`` computed by the IclGather launcher.

        Args:
            w: the stored 2-D weight, a CUDA tensor of float32, float16 or bfloat16.
            indices: int32 or int64 CUDA tensor of any shape; negative values count from
                the end, and an index out of range gives a row of zeros.
            output_dtype: ONNX element type of the result, 0 for ``w``'s dtype.
            **view: the view attributes.
        """
        import torch

        v = _view_struct(view)
        _, h = self.view_shape(tuple(w.shape), **view)
        index_codes = {torch.int32: _INT32, torch.int64: _INT64}
        if indices.dtype not in index_codes:
            raise TypeError("indices must be int32 or int64")
        w_code = _dtype_code(w.dtype)
        y_code = output_dtype or w_code
        w, idx = w.contiguous(), indices.contiguous()
        y = torch.empty((*indices.shape, h), dtype=_torch_dtype(y_code), device=w.device)
        with torch.cuda.device(w.device):
            stream = torch.cuda.current_stream().cuda_stream
            self._check(
                self._lib.icl_harness_gather(
                    w.data_ptr(), w_code, w.shape[0], w.shape[1], ctypes.byref(v),
                    idx.data_ptr(), index_codes[indices.dtype], idx.numel(),
                    y.data_ptr(), y_code, stream,
                )
            )  # fmt: skip
        return y
