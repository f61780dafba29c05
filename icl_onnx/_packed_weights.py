"""Which weights ONNX Runtime packs for its float GEMMs, read from the protobuf without onnx.

ONNX Runtime prepacks the constant weight (input B) of a MatMul or Gemm; with prepacking off
(``create_session(..., share_across_processes=True)``) it packs it again on every call
instead. ``create_session`` warns about such weights (``icl-onnx optimize
--read-weights-in-place`` moves them to IclMatMul, which reads them in place), so this module,
like ``_inline_weights``, walks the wire format itself and imports nothing but the standard
library: GraphProto fields 1 (node), 5 (initializer) and 11 (input); NodeProto fields 1
(input), 2 (output), 4 (op_type), 5 (attribute) and 7 (domain); AttributeProto field 5 (t, a
``Constant``'s value); TensorProto fields 1 (dims), 2 (data_type) and 8 (name). The main
graph's initializers and ``Constant`` nodes are read (ORT makes the latter initializers too);
subgraphs are not.
"""

from __future__ import annotations

import dataclasses
import mmap
import os

from icl_onnx._inline_weights import _LEN, _MODEL_GRAPH, _VARINT, _fields, _varint

__all__ = ["PackedWeights", "packed_weights"]

_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_INPUT = 1, 5, 11
_NODE_INPUT, _NODE_OUTPUT, _NODE_OP_TYPE, _NODE_ATTRIBUTE, _NODE_DOMAIN = 1, 2, 4, 5, 7
_ATTRIBUTE_TENSOR = 5
_TENSOR_DIMS, _TENSOR_DATA_TYPE, _TENSOR_NAME = 1, 2, 8
_VALUE_INFO_NAME = 1
#: TensorProto.DataType of the float weights packed (and IclMatMul reads): bytes per element.
_FLOAT_ITEMSIZE = {1: 4, 10: 2, 16: 2}  # FLOAT, FLOAT16, BFLOAT16


@dataclasses.dataclass(frozen=True)
class PackedWeights:
    """The float MatMul/Gemm weights of a model that ONNX Runtime packs: names and bytes."""

    names: tuple[str, ...]
    nbytes: int


def _text(buf, start: int, stop: int) -> str:
    return bytes(buf[start:stop]).decode("utf-8", "replace")


def _tensor(buf, start: int, stop: int) -> tuple[str, int, list[int]]:
    """``(name, data_type, dims)`` of a TensorProto."""
    name, dtype, dims = "", 0, []
    for number, wire, f_start, f_stop in _fields(buf, start, stop):
        if number == _TENSOR_NAME and wire == _LEN:
            name = _text(buf, f_start, f_stop)
        elif number == _TENSOR_DATA_TYPE and wire == _VARINT:
            dtype = _varint(buf, f_start)[0]
        elif number == _TENSOR_DIMS and wire == _VARINT:
            dims.append(_varint(buf, f_start)[0])
        elif number == _TENSOR_DIMS and wire == _LEN:  # packed
            pos = f_start
            while pos < f_stop:
                dim, pos = _varint(buf, pos)
                dims.append(dim)
    return name, dtype, dims


@dataclasses.dataclass
class _Node:
    op_type: str = ""
    domain: str = ""
    inputs: list[str] = dataclasses.field(default_factory=list)
    outputs: list[str] = dataclasses.field(default_factory=list)
    tensor: tuple[int, int] | None = None  # a tensor attribute's (start, stop)


def _node(buf, start: int, stop: int) -> _Node:
    node = _Node()
    for number, wire, f_start, f_stop in _fields(buf, start, stop):
        if wire != _LEN:
            continue
        if number == _NODE_INPUT:
            node.inputs.append(_text(buf, f_start, f_stop))
        elif number == _NODE_OUTPUT:
            node.outputs.append(_text(buf, f_start, f_stop))
        elif number == _NODE_OP_TYPE:
            node.op_type = _text(buf, f_start, f_stop)
        elif number == _NODE_DOMAIN:
            node.domain = _text(buf, f_start, f_stop)
        elif number == _NODE_ATTRIBUTE:
            for a_number, a_wire, a_start, a_stop in _fields(buf, f_start, f_stop):
                if a_number == _ATTRIBUTE_TENSOR and a_wire == _LEN:
                    node.tensor = (a_start, a_stop)
    return node


def _float_bytes(dtype: int, dims: list[int], min_elements: int) -> int:
    """Bytes of a 2-D float tensor of at least ``min_elements``; 0 for any other tensor."""
    elements = 1
    for dim in dims:
        elements *= dim
    if dtype in _FLOAT_ITEMSIZE and len(dims) == 2 and elements >= min_elements:
        return elements * _FLOAT_ITEMSIZE[dtype]
    return 0


def _graph(buf, start: int, stop: int, min_elements: int) -> PackedWeights:
    weights: set[str] = set()
    graph_inputs: set[str] = set()
    sizes: dict[str, int] = {}
    for number, wire, g_start, g_stop in _fields(buf, start, stop):
        if wire != _LEN:
            continue
        if number == _GRAPH_NODE:
            node = _node(buf, g_start, g_stop)
            onnx_domain = node.domain in ("", "ai.onnx")
            if onnx_domain and node.op_type in ("MatMul", "Gemm") and len(node.inputs) > 1:
                weights.add(node.inputs[1])
            elif onnx_domain and node.op_type == "Constant" and node.tensor and node.outputs:
                _, dtype, dims = _tensor(buf, *node.tensor)
                sizes[node.outputs[0]] = _float_bytes(dtype, dims, min_elements)
        elif number == _GRAPH_INPUT:
            for v_number, _, v_start, v_stop in _fields(buf, g_start, g_stop):
                if v_number == _VALUE_INFO_NAME:
                    graph_inputs.add(_text(buf, v_start, v_stop))
        elif number == _GRAPH_INITIALIZER:
            name, dtype, dims = _tensor(buf, g_start, g_stop)
            sizes[name] = _float_bytes(dtype, dims, min_elements)
    names = sorted(n for n in weights - graph_inputs if sizes.get(n))
    return PackedWeights(tuple(names), sum(sizes[n] for n in names))


def packed_weights(model: str | os.PathLike | bytes, min_elements: int = 1024) -> PackedWeights:
    """The constant 2-D float tensors (at least ``min_elements``) MatMul/Gemm read as B.

    ``model`` is a file path or serialized model bytes. Initializers that are also graph
    inputs are not constant to ONNX Runtime, so they are not counted.

    Raises:
        OSError: the file cannot be read.
        ValueError: the file is not a protobuf message.
    """
    if isinstance(model, bytes):
        return _model(model, min_elements)
    with open(model, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return PackedWeights((), 0)
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _model(buf, min_elements)


def _model(buf, min_elements: int) -> PackedWeights:
    for number, wire, start, stop in _fields(buf, 0, len(buf)):
        if number == _MODEL_GRAPH and wire == _LEN:
            return _graph(buf, start, stop, min_elements)
    return PackedWeights((), 0)
