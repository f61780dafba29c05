"""The optimize pipeline: lift large constants, then share weights; model and file level."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import onnx_ir as ir
from onnx_ir.passes.common import LiftConstantsToInitializersPass

from icl_onnx import progress
from icl_onnx.analysis.analyze import DEFAULT_MIN_ELEMENTS
from icl_onnx.analysis.crossmodel import CrossBinding, run_cross_analysis
from icl_onnx.analysis.plan import CrossPlan, SharePlan
from icl_onnx.analysis.scopes import Scopes
from icl_onnx.errors import IclUserError
from icl_onnx.model_io import load_model, save_model
from icl_onnx.passes import ShareWeightsPass
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
    """What ``optimize_file`` did."""

    plan: SharePlan
    modified: bool
    files: list[Path]


@dataclasses.dataclass
class MultiOptimizeResult:
    """What ``optimize_files`` did: the cross-model plan and the bytes written."""

    plan: CrossPlan
    files: list[Path]
    tensor_bytes: int  # external tensor bytes of all written models, counted per model
    unique_bytes: int  # bytes of the one data file's tensors


def _run_pipeline(
    model: ir.Model,
    min_elements: int,
    preferred: frozenset[str] = frozenset(),
    shared: frozenset[str] = frozenset(),
) -> tuple[SharePlan, bool]:
    """Lifts large ``Constant`` nodes to initializers, then shares weights (in place)."""
    share = ShareWeightsPass(min_elements=min_elements, preferred=preferred, shared=shared)
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


def _load_all(srcs: list[str | os.PathLike], min_elements: int):
    """Loads and optimizes each model on its own (a progress task counting models)."""
    models, plans = [], []
    with progress.task("analysing models", len(srcs), unit="models") as advance:
        for src in srcs:
            models.append(load_model(src))
            plans.append(_run_pipeline(models[-1], min_elements)[0])
            advance(1)
    labels = [Path(src).name for src in srcs]
    return models, plans, labels


def scan_files(
    srcs: list[str | os.PathLike], *, min_elements: int = DEFAULT_MIN_ELEMENTS
) -> CrossPlan:
    """Returns each model's own plan and the groups that cross files (writes nothing)."""
    models, plans, labels = _load_all(srcs, min_elements)
    groups = run_cross_analysis(models, labels, min_elements)
    return CrossPlan(labels, plans, [g.plan for g in groups])


def _inject(model: ir.Model, canonical: ir.Value, owner: int) -> str:
    """Adds the canonical tensor of another model to ``model``; returns its name there.

    The name is one no value of any of the model's graphs holds, so subgraphs read it as is.
    """
    scopes = Scopes(model)
    name = canonical.name or "shared"
    while scopes.taken(name):
        name = f"{name}.m{owner}"
    value = ir.Value(
        name=name, type=canonical.type, shape=canonical.shape, const_value=canonical.const_value
    )
    model.graph.register_initializer(value)
    return name


def _share_across(models: list[ir.Model], groups: list[CrossBinding], min_elements: int) -> None:
    """Points each model's members of cross-model groups at the canonical tensors' bytes."""
    with progress.task("sharing across models", len(models), unit="models") as advance:
        for index, model in enumerate(models):
            preferred: set[str] = set()
            injected: list[str] = []
            for group in groups:
                mine = [(v, view) for v, (i, view) in group.members.items() if i == index]
                if group.owner == index:
                    preferred.add(group.canonical.name or "")
                elif any(view.is_identity for _, view in mine):
                    preferred.update(v.name or "" for v, view in mine if view.is_identity)
                elif mine:
                    injected.append(_inject(model, group.canonical, group.owner))
                    preferred.add(injected[-1])
            names = frozenset(preferred)
            _run_pipeline(model, min_elements, names, names)
            for name in injected:
                if not model.graph.initializers[name].uses():
                    del model.graph.initializers[name]
            advance(1)


def optimize_files(
    srcs: list[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    min_elements: int = DEFAULT_MIN_ELEMENTS,
) -> MultiOptimizeResult:
    """Optimizes several models together: ``out_dir/<name>`` each, one shared data file.

    Each model is first optimized on its own; then tensors that are copies or views of a
    tensor of another model read that tensor (by identity, exact copies by content), and the
    data file holds each unique tensor once.

    Raises:
        IclUserError: unreadable input, a missing output folder, or two inputs with one name.
    """
    models, plans, labels = _load_all(srcs, min_elements)
    groups = run_cross_analysis(models, labels, min_elements)
    plan = CrossPlan(labels, plans, [g.plan for g in groups])
    _share_across(models, groups, min_elements)
    saved = save_models_shared(models, labels, out_dir)
    return MultiOptimizeResult(plan, saved.files, saved.tensor_bytes, saved.unique_bytes)
