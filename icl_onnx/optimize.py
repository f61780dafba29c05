"""The optimize pipeline: lift large constants, then share weights; model and file level."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import onnx_ir as ir
from onnx_ir.passes.common import LiftConstantsToInitializersPass

from icl_onnx.analysis.analyze import DEFAULT_MIN_ELEMENTS
from icl_onnx.analysis.plan import SharePlan
from icl_onnx.errors import IclUserError
from icl_onnx.model_io import load_model, save_model
from icl_onnx.passes import ShareWeightsPass

__all__ = ["optimize", "optimize_file", "OptimizeResult"]


@dataclasses.dataclass
class OptimizeResult:
    """What ``optimize_file`` did."""

    plan: SharePlan
    modified: bool
    files: list[Path]


def _run_pipeline(model: ir.Model, min_elements: int) -> tuple[SharePlan, bool]:
    """Lifts large ``Constant`` nodes to initializers, then shares weights (in place)."""
    share = ShareWeightsPass(min_elements=min_elements)
    lift = LiftConstantsToInitializersPass(size_limit=min_elements)
    result = ir.passes.PassManager([lift, share])(model)
    assert share.plan is not None
    return share.plan, result.modified


def optimize(model: ir.Model, min_elements: int = DEFAULT_MIN_ELEMENTS) -> SharePlan:
    """Shares every copy and view in ``model`` (in place); returns the applied plan."""
    return _run_pipeline(model, min_elements)[0]


def optimize_file(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    min_elements: int = DEFAULT_MIN_ELEMENTS,
    external_data: bool | None = None,
) -> OptimizeResult:
    """Loads ``src``, optimizes it and writes ``dst`` atomically (``dst`` may equal ``src``).

    Raises:
        IclUserError: unreadable input or unwritable output.
    """
    if Path(dst).is_dir():
        raise IclUserError(f"output {dst} is a folder; give a file name")
    model = load_model(src)
    plan, modified = _run_pipeline(model, min_elements)
    files = save_model(model, dst, external_data=external_data)
    return OptimizeResult(plan, modified, files)
