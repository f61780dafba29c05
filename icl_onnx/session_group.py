"""Several ONNX Runtime sessions that read one in-memory copy of the tensors they share.

``icl-onnx optimize A.onnx B.onnx --out-dir D`` writes models whose initializers point at the
same offsets of one data file. ``SessionGroup`` maps each such tensor that two or more models
reference once (copy-on-write: its pages are read on first use and shared with the page
cache, so processes that open the same files share them too), wraps it in an ``OrtValue``
without copying, and hands that one ``OrtValue`` to every session through
``SessionOptions.add_initializer``: ONNX Runtime uses user-provided initializers in place, so
all sessions read the same bytes. The data file must not change while a group is open.
Tensors only one model references are left to ONNX Runtime (it may prepack and free them as
usual). ``InferenceSession.run`` is thread-safe, so several threads may run the sessions at
once.

With ``share_buffers`` (the default) the sessions also take their working memory (activations,
outputs, the tensors only one model holds) from one arena registered with the ONNX Runtime
environment (``session.use_env_allocators``), so K sessions that run one at a time need one
session's working memory rather than K. Sessions that run at the same time grow the arena to
their sum; it keeps what it grew to.

Limit: the shared ``OrtValue``s live in CPU memory. With ``CUDAExecutionProvider`` ONNX Runtime
copies a CPU initializer to the device for each session, so the host holds one copy but the GPU
one per session; placing device ``OrtValue``s once is not done yet.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from icl_onnx._runtime import session_options

__all__ = ["SessionGroup"]

#: The environment's CPU arena is registered once per process (``_register_env_arena``).
_env_arena_registered = False

_ITEMSIZE = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.FLOAT16: np.uint16,
    onnx.TensorProto.BFLOAT16: np.uint16,
    onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.INT8: np.int8,
    onnx.TensorProto.UINT8: np.uint8,
    onnx.TensorProto.BOOL: np.bool_,
}

#: Element types of less than a byte (packed two or more to a byte) and strings: left to ORT.
_NOT_MAPPED = {
    getattr(onnx.TensorProto, name)
    for name in ("STRING", "INT4", "UINT4", "FLOAT4E2M1", "INT2", "UINT2")
    if hasattr(onnx.TensorProto, name)
}

_Key = tuple[str, int, int]  # (data file, offset, length)


def _storage_dtype(data_type: int) -> np.dtype | None:
    """The numpy type that holds one element of ``data_type``, or None to leave it to ORT.

    For the types numpy lacks it is an unsigned integer of the element's size: the
    ``OrtValue`` is told the ONNX type.
    """
    if data_type in _ITEMSIZE:
        return np.dtype(_ITEMSIZE[data_type])
    if data_type in _NOT_MAPPED:
        return None
    try:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(data_type).itemsize
    except (KeyError, ValueError, TypeError):
        return None
    return np.dtype(f"u{itemsize}") if itemsize in (1, 2, 4, 8) else None


def _external_refs(path: Path) -> list[tuple[str, _Key, onnx.TensorProto]]:
    """Returns (initializer name, data key, proto) for each external initializer of a model."""
    model = onnx.load(path, load_external_data=False)
    refs = []
    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in tensor.external_data}
        data = str((path.parent / info["location"]).resolve())
        offset = int(info.get("offset", 0))
        length = int(info["length"]) if "length" in info else os.path.getsize(data) - offset
        refs.append((tensor.name, (data, offset, length), tensor))
    return refs


def _map(key: _Key, tensor: onnx.TensorProto) -> np.ndarray | None:
    """Maps a tensor of the data file copy-on-write, or returns None to leave it to ORT.

    Its pages are read when first used and, until written, shared with the page cache (and so
    with other processes mapping the file).
    """
    data, offset, length = key
    dtype = _storage_dtype(tensor.data_type)
    if dtype is None:
        return None
    shape = tuple(tensor.dims)
    if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != length:
        raise ValueError(f"{tensor.name}: {length} bytes in {data} do not hold shape {shape}")
    if length == 0:
        return np.zeros(shape, dtype)
    return np.memmap(data, dtype=dtype, mode="c", offset=offset, shape=shape)


def _register_env_arena(ort: Any) -> None:
    """Registers one CPU arena with the ONNX Runtime environment of this process, once.

    It grows by what is requested (``arena_extend_strategy`` 1), not by powers of two, so it
    holds about the largest working set the sessions need at once.
    """
    global _env_arena_registered
    if _env_arena_registered:
        return
    info = ort.OrtMemoryInfo(
        "Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT
    )
    ort.create_and_register_allocator(info, ort.OrtArenaCfg({"arena_extend_strategy": 1}))
    _env_arena_registered = True


class SessionGroup:
    """One ``InferenceSession`` per model, all reading one copy of their common tensors.

    Attributes:
        sessions: the sessions, in the order of ``paths``.
        shared: the arrays held once for all sessions, by (data file, offset, length).
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        providers: Sequence[str] | None = None,
        options: Any = None,
        *,
        share_buffers: bool = True,
        share_across_processes: bool = False,
    ) -> None:
        """Opens the sessions.

        Args:
            paths: model files (e.g. written by ``icl-onnx optimize ... --out-dir``).
            providers: execution providers; ``["CPUExecutionProvider"]`` if None.
            options: a callable returning a fresh ``SessionOptions`` per session, or None;
                the ICL op library is registered into each (``icl_onnx.session_options``).
            share_buffers: take every session's working memory from one arena of the ONNX
                Runtime environment (see the module docstring).
            share_across_processes: open each session as ``icl_onnx.create_session`` does
                with it (prepacking off), so that the tensors only one model holds are read in
                place from its mapped data file too, and other processes share them.
        """
        import onnxruntime as ort

        providers = list(providers) if providers else ["CPUExecutionProvider"]
        refs = [_external_refs(Path(p)) for p in paths]
        uses = Counter(key for model in refs for key in {k for _, k, _ in model})
        self.shared: dict[_Key, np.ndarray] = {}
        values: dict[_Key, Any] = {}
        for model in refs:
            for _, key, tensor in model:
                if uses[key] < 2 or key in values:
                    continue
                array = _map(key, tensor)
                if array is None:
                    continue
                self.shared[key] = array
                values[key] = ort.OrtValue.ortvalue_from_numpy_with_onnx_type(
                    array, tensor.data_type
                )
        self._values = values  # kept alive as long as the sessions
        if share_buffers:
            _register_env_arena(ort)
        self.sessions = []
        for path, model in zip(paths, refs, strict=True):
            opts = session_options(
                options() if options else None, share_across_processes=share_across_processes
            )
            if share_buffers:
                opts.add_session_config_entry("session.use_env_allocators", "1")
            for name, key, _ in model:
                if key in values:
                    opts.add_initializer(name, values[key])
            session = ort.InferenceSession(os.fspath(path), sess_options=opts, providers=providers)
            session._icl_shared = (values, self.shared)  # the sessions keep the memory alive
            self.sessions.append(session)

    @property
    def shared_bytes(self) -> int:
        """Bytes held once for all sessions."""
        return sum(a.nbytes for a in self.shared.values())

    def __len__(self) -> int:
        return len(self.sessions)
