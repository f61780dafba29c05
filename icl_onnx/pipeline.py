"""The optimize and scan pipelines, for one model or several: load, run the passes, save.

Every entry point runs the one declared pass list (``passes.sharing_passes``): the lossy
quantized sharing when asked for, constant lifting, planning, applying. ``scan`` stops after the
planning pass and returns its plan, ``optimize`` runs to the end and saves (``model_io``, or
``shared_store`` for several models with one data file), so a scan reports what an optimize
does. With several models, the passes before planning run on each model, the models are
planned together (``planning.plan_models``), and the passes after planning run on each.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import onnx_ir as ir

from icl_onnx import progress
from icl_onnx.analysis.findings import QuantizedNearCopy
from icl_onnx.analysis.readers import DEFAULT_MIN_ELEMENTS
from icl_onnx.errors import IclUserError
from icl_onnx.model_io import initializer_bytes, load_model, save_model
from icl_onnx.passes import (
    PLAN_KEY,
    BatchVariantsPass,
    ShareQuantizedPass,
    SharingOptions,
    planned,
    planning_index,
    sharing_passes,
)
from icl_onnx.planning.batched import BatchPlan
from icl_onnx.planning.plan import CrossPlan, SharePlan
from icl_onnx.planning.planner import plan_models
from icl_onnx.shared_store import save_models_shared

__all__ = [
    "optimize",
    "optimize_file",
    "optimize_files",
    "optimize_batched_variants",
    "scan_file",
    "scan_files",
    "OptimizeResult",
    "MultiOptimizeResult",
    "BatchedVariantsResult",
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


@dataclasses.dataclass
class BatchedVariantsResult:
    """What ``optimize_batched_variants`` did.

    Attributes:
        batch: the weights that read stacked factors, per model (``models``: the labels).
        plan: the within-model sharing applied to the batched graph.
        files: the files written.
        input_bytes: each input model's initializer bytes, the base's first.
        output_bytes: the written model's initializer bytes (base weights plus factors).
    """

    batch: BatchPlan
    plan: SharePlan
    files: list[Path]
    input_bytes: list[int]
    output_bytes: int

    @property
    def factor_bytes(self) -> int:
        """Bytes of the stacked factors."""
        return self.batch.factor_bytes


def _run(passes: Sequence[ir.passes.PassBase], model: ir.Model) -> bool:
    """Runs ``passes`` on ``model`` in order; whether any changed it."""
    modified = False
    for one in passes:
        modified |= one(model).modified
    return modified


def _shared_quantized(passes: Sequence[ir.passes.PassBase]) -> list[QuantizedNearCopy]:
    """The near-copies the quantized-sharing pass of ``passes`` shared (none when absent)."""
    found = [p for p in passes if isinstance(p, ShareQuantizedPass)]
    return [c for p in found for c in p.shared]


def _optimize(
    model: ir.Model, options: SharingOptions
) -> tuple[SharePlan, bool, list[QuantizedNearCopy]]:
    """Runs the sharing passes in place: the applied plan, whether it changed, the lossy shares."""
    passes = sharing_passes(options)
    split = planning_index(passes) + 1
    modified = _run(passes[:split], model)
    plan = planned(model)
    assert plan is not None
    modified |= _run(passes[split:], model)
    return plan, modified, _shared_quantized(passes)


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
    options = SharingOptions(min_elements, read_weights_in_place=read_weights_in_place)
    return _optimize(model, options)[0]


def scan_file(src: str | os.PathLike, *, min_elements: int = DEFAULT_MIN_ELEMENTS) -> SharePlan:
    """Returns the plan ``optimize_file`` applies to ``src`` (writes nothing).

    Runs the sharing passes up to the planning pass on the loaded model and returns its plan.

    Raises:
        IclUserError: unreadable input.
    """
    model = load_model(src)
    passes = sharing_passes(SharingOptions(min_elements))
    _run(passes[: planning_index(passes) + 1], model)
    plan = planned(model)
    assert plan is not None
    return plan


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
    options = SharingOptions(
        min_elements, share_quantized, read_weights_in_place=read_weights_in_place
    )
    plan, modified, shared = _optimize(model, options)
    files = save_model(model, dst, external_data=external_data)
    return OptimizeResult(plan, modified, files, shared)


def _plan_files(
    srcs: list[str | os.PathLike],
    options: SharingOptions,
    low_rank: bool = True,
) -> tuple[list[ir.Model], CrossPlan, list[ir.passes.PassBase]]:
    """Loads each model and runs the passes before planning on it, then plans them together.

    Returns the models, the plan, and the passes after planning (to apply it). ``low_rank``
    looks for low-rank deltas to the first model (``plan_models``).
    """
    models = []
    passes = sharing_passes(options)
    split = planning_index(passes)
    with progress.task("analysing models", len(srcs), unit="models") as advance:
        for src in srcs:
            models.append(load_model(src))
            _run(sharing_passes(options)[:split], models[-1])
            advance(1)
    labels = [Path(src).name for src in srcs]
    plans, groups = plan_models(
        models,
        labels,
        options.min_elements,
        low_rank=low_rank,
        consumer_rules=options.consumer_rules,
    )
    return models, CrossPlan(labels, plans, groups), passes[split + 1 :]


def scan_files(
    srcs: list[str | os.PathLike],
    *,
    min_elements: int = DEFAULT_MIN_ELEMENTS,
    low_rank: bool = True,
) -> CrossPlan:
    """Returns each model's plan and the groups that cross files (writes nothing).

    The plans are those ``optimize_files`` applies to the same files with the same options.
    """
    return _plan_files(srcs, SharingOptions(min_elements), low_rank=low_rank)[1]


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
    options = SharingOptions(
        min_elements, share_quantized, read_weights_in_place=read_weights_in_place
    )
    models, plan, apply = _plan_files(srcs, options, low_rank)
    with progress.task("sharing across models", len(models), unit="models") as advance:
        for model, own in zip(models, plan.plans, strict=True):
            model.meta[PLAN_KEY] = own  # as the planning pass leaves it
            _run(apply, model)
            advance(1)
    saved = save_models_shared(models, plan.models, out_dir)
    return MultiOptimizeResult(plan, saved.files, saved.tensor_bytes, saved.unique_bytes)


def _labels(srcs: Sequence[str | os.PathLike]) -> list[str]:
    names = [Path(src).name for src in srcs]
    return names if len(set(names)) == len(names) else [os.fspath(src) for src in srcs]


def optimize_batched_variants(
    srcs: Sequence[str | os.PathLike],
    dst: str | os.PathLike,
    *,
    min_elements: int = DEFAULT_MIN_ELEMENTS,
    external_data: bool | None = None,
) -> BatchedVariantsResult:
    """Writes one model that runs every batch row with its own variant of a base.

    ``srcs`` is the base, then its fine-tuned variants (the same graph; each a low-rank change
    of the base's MatMul/Gemm weights, as a merged LoRA is). ``dst`` gets the base's graph
    with one more input, ``variant_ids`` (int64, one per batch row: 0 the base, k the k-th
    variant), the base's weights once and, for each weight a variant changes, the variants'
    factors stacked (``passes.BatchVariantsPass``); then the sharing passes run as for
    ``optimize_file``. Written atomically; no input is overwritten.

    Raises:
        IclUserError: fewer than two models, ``dst`` is an input or a folder, unreadable
            input, a variant whose graph differs, or a variant that changes a tensor no
            per-row factors can carry (named in the message).
    """
    if len(srcs) < 2:
        raise IclUserError("batched variants need a base model and at least one variant")
    if Path(dst).is_dir():
        raise IclUserError(f"output {dst} is a folder; give a file name")
    target = Path(dst).resolve()
    if any(Path(src).resolve() == target for src in srcs):
        raise IclUserError(f"output {dst} is one of the input models; write to another file")
    options = SharingOptions(min_elements)
    models = []
    with progress.task("analysing models", len(srcs), unit="models") as advance:
        for src in srcs:
            models.append(load_model(src))
            advance(1)
    input_bytes = [initializer_bytes(m) for m in models]
    lifting = sharing_passes(options)[: planning_index(sharing_passes(options))]
    for variant in models[1:]:
        _run(lifting, variant)
    batch = BatchVariantsPass(models[1:], _labels(srcs))
    passes = sharing_passes(options, batch=batch)
    split = planning_index(passes) + 1
    _run(passes[:split], models[0])
    plan = planned(models[0])
    assert plan is not None and batch.plan is not None
    _run(passes[split:], models[0])
    files = save_model(models[0], dst, external_data=external_data)
    return BatchedVariantsResult(batch.plan, plan, files, input_bytes, initializer_bytes(models[0]))
