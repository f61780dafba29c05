"""Graph passes of icl-onnx (onnx_ir passes)."""

from icl_onnx.passes.share_weights import ShareWeightsPass

__all__ = ["ShareWeightsPass"]
