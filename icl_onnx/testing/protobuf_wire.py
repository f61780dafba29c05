"""Protobuf bytes written by hand, for model files the protobuf library refuses to build.

Used by ``tests/test_bad_input.py`` and ``benchmarks/bad_inputs.py`` to write hostile files
(subgraphs nested past protobuf's recursion limit). Development only, like the rest of
``icl_onnx.testing``: nothing in ``icl_onnx`` imports it.
"""

from __future__ import annotations

__all__ = ["field", "nested_if_graph", "with_nested_if"]

#: ``ModelProto.graph``, ``GraphProto.node``, ``NodeProto.op_type``, ``NodeProto.attribute``,
#: ``AttributeProto.name``, ``AttributeProto.g``: the field numbers written below.
_MODEL_GRAPH, _GRAPH_NODE, _NODE_OP_TYPE, _NODE_ATTRIBUTE, _ATTR_NAME, _ATTR_G = 7, 1, 4, 5, 1, 6
#: ``AttributeProto.type`` (field 20, varint) = ``GRAPH`` (5), encoded.
_ATTR_TYPE_GRAPH = bytes([20 << 3, 1, 5])


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2): a message, string or bytes."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def nested_if_graph(depth: int) -> bytes:
    """A GraphProto whose node is an If whose then_branch holds an If ... ``depth`` deep.

    The innermost graph holds one Identity node.
    """
    graph = field(_GRAPH_NODE, field(_NODE_OP_TYPE, b"Identity"))
    for _ in range(depth):
        branch = field(_ATTR_NAME, b"then_branch") + _ATTR_TYPE_GRAPH + field(_ATTR_G, graph)
        graph = field(_GRAPH_NODE, field(_NODE_OP_TYPE, b"If") + field(_NODE_ATTRIBUTE, branch))
    return graph


def with_nested_if(model: bytes, depth: int) -> bytes:
    """A serialised ModelProto with one more node: an If nesting If subgraphs ``depth`` deep.

    A second ``ModelProto.graph`` field merges into the first, so its node is appended.
    """
    return model + field(_MODEL_GRAPH, nested_if_graph(depth))
