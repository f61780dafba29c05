"""What ``check`` needs to know about a model file, read without its weights' external data.

The parent process reads only the graph structure (``onnx.load(..., load_external_data=False)``);
sessions are built in worker subprocesses.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import numpy as np
import onnx

from icl_onnx.errors import IclUserError
from icl_onnx.model_io import check_model_file
from icl_onnx.ops import DOMAIN, GATHER
from icl_onnx.reference import numpy_dtype
from icl_onnx.views import VIEW_DEFAULTS, ViewAttrs

__all__ = ["TensorInfo", "ModelInfo", "read_model_info", "file_bytes"]

logger = logging.getLogger(__name__)

#: Ops whose output holds the same index values as their first input (possibly reshaped).
_INDEX_PASSTHROUGH = {
    "Cast",
    "Unsqueeze",
    "Squeeze",
    "Reshape",
    "Flatten",
    "Identity",
    "Expand",
    "Transpose",
    "Slice",
    "Tile",
    "Concat",
}


@dataclasses.dataclass
class TensorInfo:
    """Name, element type and shape of a graph input or output.

    Attributes:
        name: the value name.
        dtype: numpy dtype.
        shape: each dimension as an int, a symbolic name, or None when unknown.
    """

    name: str
    dtype: np.dtype
    shape: list[int | str | None]


@dataclasses.dataclass
class ModelInfo:
    """The parts of a model that ``check`` uses.

    Attributes:
        path: the model file.
        inputs: graph inputs that are not initializers, in order.
        outputs: graph outputs, in order.
        token_inputs: for inputs whose values index a Gather (also through Cast, Unsqueeze,
            ... and ``ai.icl::IclGather``), the number of rows of the smallest table they index.
        file_bytes: the model file plus its external data files.
    """

    path: Path
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    token_inputs: dict[str, int]
    file_bytes: int


def read_model_info(path: str | os.PathLike) -> ModelInfo:
    """Reads a model's inputs, outputs, token-id inputs and file size.

    Args:
        path: an ONNX model file.

    Raises:
        IclUserError: the file is missing or is not an ONNX model, or fails
            :func:`icl_onnx.model_io.check_model_file` (tensors, external data).
    """
    path = Path(path)
    if not path.is_file():
        raise IclUserError(f"{path}: no such file; pass the path of an .onnx model")
    check_model_file(path)  # what scan and optimize check: tensors, external data
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError and others
        raise IclUserError(f"{path}: not an ONNX model ({type(e).__name__})") from None
    graph = model.graph
    if not graph.node and not graph.output:
        raise IclUserError(f"{path}: not an ONNX model (no graph); pass an .onnx model file")
    initializers = {t.name for t in graph.initializer}
    inputs = [_tensor_info(v) for v in graph.input if v.name not in initializers]
    outputs = [_tensor_info(v) for v in graph.output]
    return ModelInfo(
        path=path,
        inputs=inputs,
        outputs=outputs,
        token_inputs=_token_inputs(graph, [i.name for i in inputs]),
        file_bytes=file_bytes(path, model),
    )


def file_bytes(path: Path, model: onnx.ModelProto) -> int:
    """Returns the size of the model file plus each external data file it references once."""
    total = path.stat().st_size
    seen: set[Path] = set()
    for tensor in _all_tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), None)
        if location is None:
            continue
        data = (path.parent / location).resolve()
        if data not in seen and data.is_file():
            seen.add(data)
            total += data.stat().st_size
    return total


def _all_tensors(graph: onnx.GraphProto):
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t
            elif attr.type == onnx.AttributeProto.GRAPH:
                yield from _all_tensors(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _all_tensors(g)


def _tensor_info(value: onnx.ValueInfoProto) -> TensorInfo:
    tensor_type = value.type.tensor_type
    if not value.type.HasField("tensor_type"):
        raise IclUserError(
            f"input or output {value.name!r} is not a tensor; check compares tensors"
        )
    shape: list[int | str | None] = []
    if tensor_type.HasField("shape"):
        for d in tensor_type.shape.dim:
            if d.HasField("dim_value"):
                shape.append(int(d.dim_value))
            elif d.HasField("dim_param"):
                shape.append(d.dim_param)
            else:
                shape.append(None)
    return TensorInfo(value.name, numpy_dtype(tensor_type.elem_type), shape)


def _all_nodes(graph: onnx.GraphProto):
    """The graph's nodes and those of its subgraphs (If/Loop/Scan bodies read outer names)."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _all_nodes(g)


def _token_inputs(graph: onnx.GraphProto, input_names: list[str]) -> dict[str, int]:
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in _all_nodes(graph):
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    shapes = _static_shapes(graph)
    result: dict[str, int] = {}
    for name in input_names:
        rows = _rows_indexed(name, consumers, shapes, set())
        if rows:
            result[name] = min(rows)
            logger.info("input %s indexes a table of %d rows", name, result[name])
    return result


def _rows_indexed(name, consumers, shapes, seen) -> list[int]:
    if name in seen:
        return []
    seen.add(name)
    rows: list[int] = []
    for node in consumers.get(name, []):
        if node.op_type == "Gather" and node.domain in ("", "ai.onnx") and node.input[1] == name:
            table = shapes.get(node.input[0])
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            if table is not None and -len(table) <= axis < len(table):
                rows.append(table[axis])
        elif node.op_type == GATHER and node.domain == DOMAIN and node.input[1] == name:
            table = shapes.get(node.input[0])
            if table is not None and len(table) == 2:
                rows.append(_icl_view_rows(table, node))
        elif node.op_type in _INDEX_PASSTHROUGH and node.domain in ("", "ai.onnx"):
            if node.input and node.input[0] == name or node.op_type == "Concat":
                for out in node.output:
                    rows.extend(_rows_indexed(out, consumers, shapes, seen))
    return [r for r in rows if r > 0]


def _icl_view_rows(table: list[int], node: onnx.NodeProto) -> int:
    """Rows of ``view(W)`` for an IclGather (0 when its view attributes are malformed)."""
    attrs = {
        a.name: onnx.helper.get_attribute_value(a)
        for a in node.attribute
        if a.name in VIEW_DEFAULTS
    }
    try:
        rows, _ = ViewAttrs.from_attrs(attrs).shape(table)
    except ValueError:
        return 0
    return rows if isinstance(rows, int) else 0


def _static_shapes(graph: onnx.GraphProto) -> dict[str, list[int]]:
    shapes: dict[str, list[int]] = {t.name: list(t.dims) for t in graph.initializer}
    for node in _all_nodes(graph):  # one walk: subgraph initializers and Constant values
        constant = node.op_type == "Constant" and node.domain in ("", "ai.onnx")
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                shapes.update({t.name: list(t.dims) for t in attr.g.initializer})
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for body in attr.graphs:
                    shapes.update({t.name: list(t.dims) for t in body.initializer})
            elif constant and attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                shapes[node.output[0]] = list(attr.t.dims)
    for value in list(graph.input) + list(graph.value_info):
        if value.name in shapes or not value.type.HasField("tensor_type"):
            continue
        dims = value.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = [d.dim_value for d in dims]
    return shapes
