"""Models that several test modules build: the tied embedding, and an encoder/decoder pair.

Test modules import from here (``from builders import ...``), never from each other or from
``conftest``.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh

#: The IR version of the models the tests build inline.
IR_VERSION = 10

V, H = 64, 32
W = np.random.default_rng(0).standard_normal((V, H)).astype(np.float32)
BIAS = np.random.default_rng(1).standard_normal((V,)).astype(np.float32)

_CROSS = np.random.default_rng(2)
#: The encoder's embedding table (copied, transposed and sliced in the decoder).
TABLE = _CROSS.standard_normal((V, H)).astype(np.float32)
#: The encoder's projection (a float16 copy in the decoder).
PROJECTION = _CROSS.standard_normal((H, H)).astype(np.float32)
F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16


#: The CUDA provider with float32 products at full precision. ORT's default (use_tf32=1) rounds
#: their inputs to TF32, in its MatMul and in IclMatMul alike: use this where a test compares a
#: CUDA session with a float64 reference at float32 tolerances.
CUDA_FP32 = ("CUDAExecutionProvider", {"use_tf32": "0"})


def ort_cuda_missing() -> str | None:
    """Why an ORT CUDA session cannot run here (the skip reason), or None when it can."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "needs onnxruntime-gpu (CUDAExecutionProvider)"
    try:
        import torch
    except ImportError:
        return "needs torch to see whether a GPU is present"
    return None if torch.cuda.is_available() else "needs a CUDA GPU"


def tied_model(
    *,
    transpose_node: bool = False,
    scale: float = 1.0,
    bias: bool = False,
    hidden_output: bool = False,
    extra_nodes=(),
    extra_opsets=(),
) -> onnx.ModelProto:
    """A tied embedding: ``e = Gather(emb, ids)``, then ``y = MatMul(e, embT)``.

    Args:
        transpose_node: ``embT`` is ``Transpose(emb)`` (a dynamo export) instead of an
            initializer holding a transposed copy of ``emb`` (a TorchScript export).
        scale: the transposed copy is ``emb^T * scale`` (1.0: an exact transposed copy).
        bias: add a 256-byte bias (under the external-data threshold) after the MatMul.
        hidden_output: ``e`` is a graph output too.
        extra_nodes: nodes appended to the graph (their outputs are not graph outputs).
        extra_opsets: opset imports for their domains.
    """
    inits = [nh.from_array(W, "emb")]
    nodes = [h.make_node("Gather", ["emb", "ids"], ["e"], name="embed")]
    if transpose_node:
        nodes.append(h.make_node("Transpose", ["emb"], ["embT"], perm=[1, 0], name="t"))
    else:
        inits.append(nh.from_array(np.ascontiguousarray(W.T * np.float32(scale)), "embT"))
    nodes.append(h.make_node("MatMul", ["e", "embT"], ["m" if bias else "y"], name="lm_head"))
    if bias:
        nodes.append(h.make_node("Add", ["m", "bias"], ["y"]))
        inits.append(nh.from_array(BIAS, "bias"))
    outputs = [h.make_tensor_value_info("y", F32, ["b", "s", V])]
    if hidden_output:
        outputs.append(h.make_tensor_value_info("e", F32, ["b", "s", H]))
    graph = h.make_graph(
        [*nodes, *extra_nodes],
        "tied",
        [h.make_tensor_value_info("ids", TensorProto.INT64, ["b", "s"])],
        outputs,
        inits,
    )
    return h.make_model(
        graph, opset_imports=[h.make_opsetid("", 18), *extra_opsets], ir_version=IR_VERSION
    )


def _model(nodes, inits, inputs, outputs) -> onnx.ModelProto:
    graph = h.make_graph(nodes, "g", inputs, outputs, [nh.from_array(a, n) for n, a in inits])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 18)], ir_version=IR_VERSION)


def encoder() -> onnx.ModelProto:
    """The embedding table and a projection."""
    return _model(
        [h.make_node("Gather", ["emb", "ids"], ["e"]), h.make_node("MatMul", ["e", "B"], ["y"])],
        [("emb", TABLE), ("B", PROJECTION)],
        [h.make_tensor_value_info("ids", TensorProto.INT64, ["b"])],
        [h.make_tensor_value_info("y", F32, ["b", H])],
    )


def decoder() -> onnx.ModelProto:
    """An exact copy of the table, its transposed copy as LM head, a row slice, an fp16 B."""
    return _model(
        [
            h.make_node("Gather", ["tok", "ids"], ["e"]),
            h.make_node("MatMul", ["e", "lm_head"], ["logits"]),
            h.make_node("MatMul", ["e", "q"], ["q_out"]),
            h.make_node("MatMul", ["x16", "B16"], ["z"]),
        ],
        [
            ("tok", TABLE.copy()),
            ("lm_head", TABLE.T.copy()),
            ("q", TABLE[:H].copy()),
            ("B16", PROJECTION.astype(np.float16)),
        ],
        [
            h.make_tensor_value_info("ids", TensorProto.INT64, ["b"]),
            h.make_tensor_value_info("x16", F16, ["b", H]),
        ],
        [
            h.make_tensor_value_info("logits", F32, ["b", V]),
            h.make_tensor_value_info("q_out", F32, ["b", H]),
            h.make_tensor_value_info("z", F16, ["b", H]),
        ],
    )


def encoder_decoder_feeds(seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs for :func:`encoder` and :func:`decoder` (each takes the ones it declares)."""
    rng = np.random.default_rng(seed)
    return {
        "ids": rng.integers(0, V, size=4),
        "x16": rng.standard_normal((4, H)).astype(np.float16),
    }
