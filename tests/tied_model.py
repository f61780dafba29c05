"""The tied-embedding model several test files run the CLI and the writers on."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh

V, H = 64, 32
W = np.random.default_rng(0).standard_normal((V, H)).astype(np.float32)
BIAS = np.random.default_rng(1).standard_normal((V,)).astype(np.float32)


def tied_proto(extra_nodes=(), extra_opsets=(), *, bias: bool = False) -> onnx.ModelProto:
    """``Gather(emb)`` then ``MatMul(., embT)`` with ``embT`` a transposed copy of ``emb``.

    Args:
        extra_nodes: nodes appended to the graph (their outputs are not graph outputs).
        extra_opsets: opset imports for their domains.
        bias: add a 256-byte bias (under the external-data threshold) after the MatMul.
    """
    nodes = [
        h.make_node("Gather", ["emb", "ids"], ["e"]),
        h.make_node("MatMul", ["e", "embT"], ["m" if bias else "y"]),
    ]
    inits = [nh.from_array(W, "emb"), nh.from_array(np.ascontiguousarray(W.T), "embT")]
    if bias:
        nodes.append(h.make_node("Add", ["m", "bias"], ["y"]))
        inits.append(nh.from_array(BIAS, "bias"))
    graph = h.make_graph(
        [*nodes, *extra_nodes],
        "tied",
        [h.make_tensor_value_info("ids", TensorProto.INT64, ["b", "s"])],
        [h.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "s", V])],
        inits,
    )
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 18), *extra_opsets])
