"""How many weight bytes an ONNX file holds inline, read from its protobuf without onnx.

``create_session(..., share_across_processes=True)`` warns when a model keeps its weights
inside the ``.onnx`` file: ONNX Runtime copies those into each process's private memory, so
only external data can be shared. The session helpers import nothing but onnxruntime, so this
walks the protobuf wire format itself: ModelProto field 7 (graph), GraphProto field 5
(initializer), and the data fields of each TensorProto. The file is memory-mapped and only
field headers are read, so an inline model of any size costs a few page reads.
"""

from __future__ import annotations

import mmap
import os

__all__ = ["inline_weight_bytes"]

_MODEL_GRAPH = 7
_GRAPH_INITIALIZER = 5
#: TensorProto fields that hold values: float, int32, string, int64, raw, double, uint64 data.
_TENSOR_DATA = frozenset({4, 5, 6, 7, 9, 10, 11})
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


def _varint(buf: mmap.mmap, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf: mmap.mmap, start: int, end: int):
    """Yields ``(field number, wire type, payload start, payload end)`` of one message."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            _, stop = _varint(buf, pos)
        elif wire == _I64:
            stop = pos + 8
        elif wire == _LEN:
            size, pos = _varint(buf, pos)
            stop = pos + size
        elif wire == _I32:
            stop = pos + 4
        else:  # groups (3, 4) do not occur in ONNX files
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, pos, stop
        pos = stop


def inline_weight_bytes(path: str | os.PathLike) -> int:
    """Returns the bytes of initializer values stored inside the ``.onnx`` file itself.

    Counts the main graph's initializers (external data and subgraphs are not counted).

    Raises:
        OSError: the file cannot be read.
        ValueError: the file is not a protobuf message.
    """
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return 0
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            total = 0
            for number, wire, start, stop in _fields(buf, 0, len(buf)):
                if number != _MODEL_GRAPH or wire != _LEN:
                    continue
                for g_number, g_wire, g_start, g_stop in _fields(buf, start, stop):
                    if g_number != _GRAPH_INITIALIZER or g_wire != _LEN:
                        continue
                    total += sum(
                        t_stop - t_start
                        for t_number, _, t_start, t_stop in _fields(buf, g_start, g_stop)
                        if t_number in _TENSOR_DATA
                    )
            return total
