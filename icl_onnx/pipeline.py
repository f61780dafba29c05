"""The optimize and scan pipelines, for one model or several: load, lift, plan, apply, save.

Every entry point runs the same steps: constants are lifted (``analysis.lifting``), the model
or models are planned once (``analysis.planner``), and ``optimize`` applies the plan
(``passes.ApplySharePlanPass``) and saves (``model_io``, or ``shared_store`` for several
models with one data file) where ``scan`` stops, so a scan reports what an optimize does.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import onnx_ir as ir

from icl_onnx import progress
from icl_onnx.analysis.lifting import lift_constants_pass
from icl_onnx.analysis.near_copies import find_quantized_near_copies
from icl_onnx.analysis.plan import CrossPlan, QuantizedNearCopy, SharePlan
from icl_onnx.analysis.planner import DEFAULT_MIN_ELEMENTS, plan_models, plan_sharing
from icl_onnx.errors import IclUserError
from icl_onnx.model_io import load_model, save_model
from icl_onnx.passes.apply_plan import ApplySharePlanPass
from icl_onnx.passes.read_in_place import ReadWeightsInPlacePass
from icl_onnx.passes.share_quantized import ShareQuantizedPass
from icl_onnx.shared_store import save_models_shared

__all__ = [
    "optimize",
    "optimize_file",
    "optimize_files",
    "scan_files",
    "OptimizeResult",
    "MultiOptimizeResult",
]


@dataclasses.dataclass
class OptimizeResult:
    """What ``optimize_file`` did (``shared_quantized``: the lossy near-copies it shared)."""

    plan: SharePlan
    modified: bool
    files: list[Path]
    shared_quantized: list[QuantizedNearCopy] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class MultiOptimizeResult:
    """What ``optimize_files`` did: the cross-model plan and the bytes written."""

    plan: CrossPlan
    files: list[Path]
    tensor_bytes: int  # external tensor bytes of all written models, counted per model
    unique_bytes: int  # bytes of the one data file's tensors


def _share_quantized(model: ir.Model, min_elements: int) -> list[QuantizedNearCopy]:
    """Applies the lossy opt-in (``--share-quantized``); returns the near-copies it shared."""
    shareable = [c for c in find_quantized_near_copies(model, min_elements) if c.shareable]
    ShareQuantizedPass(shareable)(model)
    return shareable


def _read_in_place(model: ir.Model, min_elements: int, read_weights_in_place: bool) -> bool:
    """The last step, only with ``read_weights_in_place``: ``ReadWeightsInPlacePass``."""
    return read_weights_in_place and ReadWeightsInPlacePass(min_elements)(model).modified


def _optimize(
    model: ir.Model,
    min_elements: int,
    share_quantized: bool = False,
    read_weights_in_place: bool = False,
) -> tuple[SharePlan, bool, list[QuantizedNearCopy]]:
    """Lifts, plans and applies (in place): the plan, whether it changed, the lossy shares.

    The lossy near-copies are shared first, and only with ``share_quantized``; the remaining
    MatMul/Gemm weights move to IclMatMul last, and only with ``read_weights_in_place``.
    """
    shared = _share_quantized(model, min_elements) if share_quantized else []
    lifted = lift_constants_pass(min_elements)(model).modified
    plan = plan_sharing(model, min_elements)
    modified = ApplySharePlanPass(plan)(model).modified or lifted or bool(shared)
    modified = _read_in_place(model, min_elements, read_weights_in_place) or modified
    return plan, modified, shared


def optimize(
    model: ir.Model,
    min_elements: int = DEFAULT_MIN_ELEMENTS,
    *,
    read_weights_in_place: bool = False,
) -> SharePlan:
    """Shares every copy and view in ``model`` (in place); returns the applied plan.

    ``read_weights_in_place`` also moves every other large float MatMul/Gemm weight to
    IclMatMul (``passes.ReadWeightsInPlacePass``), so a session with prepacking off
    (``share_across_processes=True``) neither copies nor packs any of them.
    """
    return _optimize(model, min_elements, read_weights_in_place=read_weights_in_place)[0]


def optimize_file(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    min_elements: int = DEFAULT_MIN_ELEMENTS,
    external_data: bool | None = None,
    share_quantized: bool = False,
    read_weights_in_place: bool = False,
) -> OptimizeResult:
    """Loads ``src``, optimizes it and writes ``dst`` atomically (``dst`` may equal ``src``).

    ``share_quantized`` also applies the lossy near-copies (a float table read through its
    quantized head: ``passes.ShareQuantizedPass``); the outputs change.
    ``read_weights_in_place``: as for ``optimize``.

    Raises:
        IclUserError: unreadable input or unwritable output.
    """
    if Path(dst).is_dir():
        raise IclUserError(f"output {dst} is a folder; give a file name")
    model = load_model(src)
    plan, modified, shared = _optimize(model, min_elements, share_quantized, read_weights_in_place)
    files = save_model(model, dst, external_data=external_data)
    return OptimizeResult(plan, modified, files, shared)


def _plan_files(
    srcs: list[str | os.PathLike],
    min_elements: int,
    share_quantized: bool = False,
    low_rank: bool = True,
) -> tuple[list[ir.Model], CrossPlan]:
    """Loads and lifts each model (a progress task counting models), then plans them together.

    ``share_quantized`` first applies each model's lossy near-copies (``optimize_files``);
    ``low_rank`` looks for low-rank deltas to the first model (``plan_models``).
    """
    models = []
    with progress.task("analysing models", len(srcs), unit="models") as advance:
        for src in srcs:
            models.append(load_model(src))
            if share_quantized:
                _share_quantized(models[-1], min_elements)
            lift_constants_pass(min_elements)(models[-1])
            advance(1)
    labels = [Path(src).name for src in srcs]
    plans, groups = plan_models(models, labels, min_elements, low_rank=low_rank)
    return models, CrossPlan(labels, plans, groups)


def scan_files(
    srcs: list[str | os.PathLike],
    *,
    min_elements: int = DEFAULT_MIN_ELEMENTS,
    low_rank: bool = True,
) -> CrossPlan:
    """Returns each model's plan and the groups that cross files (writes nothing).

    The plans are those ``optimize_files`` applies to the same files with the same options.
    """
    return _plan_files(srcs, min_elements, low_rank=low_rank)[1]


def optimize_files(
    srcs: list[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    min_elements: int = DEFAULT_MIN_ELEMENTS,
    share_quantized: bool = False,
    low_rank: bool = True,
    read_weights_in_place: bool = False,
) -> MultiOptimizeResult:
    """Optimizes several models together: ``out_dir/<name>`` each, one shared data file.

    The models are planned together (each analysed once): tensors that are copies or views of
    a tensor of another model read that tensor (exact copies by content, as the data file
    holds each unique tensor once), and each model's plan is applied to it.
    ``share_quantized``: as for ``optimize_file``. ``low_rank``: a tensor of a later model
    that is a first-model tensor plus a low-rank delta (a merged LoRA fine-tune) is stored as
    that tensor's factors; False skips this search (it reads every pair of same-shaped tensors
    whose relation is not exact). ``read_weights_in_place``: as for ``optimize``.

    Raises:
        IclUserError: unreadable input, a missing output folder, or two inputs with one name.
    """
    models, plan = _plan_files(srcs, min_elements, share_quantized, low_rank)
    with progress.task("sharing across models", len(models), unit="models") as advance:
        for model, own in zip(models, plan.plans, strict=True):
            ApplySharePlanPass(own)(model)
            _read_in_place(model, min_elements, read_weights_in_place)
            advance(1)
    saved = save_models_shared(models, plan.models, out_dir)
    return MultiOptimizeResult(plan, saved.files, saved.tensor_bytes, saved.unique_bytes)
