"""Row-by-row parity of a batched-variants model against each variant's own model.

``check_batched_variants(batched, models)`` builds one batch whose rows pick different variants
(by default every variant, then the base, then the first variant again: ids ``1..K, 0, 1``),
each row with its own seeded random inputs, runs the batched model once and each original model
on its row alone, and compares every output row with the tolerance rule of ``check``
(``icl_onnx.tolerance``: per element, within ``atol`` or ``rtol``). Inputs whose leading dim is
the batch (the dim of ``variant_ids``) are per row; the others (a merged decoder's
``use_cache_branch``) are the same for every row. Both run in this process with the ICL op
library loaded.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from icl_onnx import progress
from icl_onnx._runtime import create_session
from icl_onnx.check.api import (
    PerOutput,
    check_same_interface,
    output_tolerances,
    resolve_providers,
)
from icl_onnx.check.compare import compare_outputs
from icl_onnx.check.inputs import InputSet, describe_inputs, make_inputs
from icl_onnx.check.model_info import ModelInfo, read_model_info
from icl_onnx.check.report import OutputError
from icl_onnx.errors import IclArgumentError, IclUserError
from icl_onnx.planning.plan import to_data

__all__ = [
    "BatchedCheckReport",
    "RowParity",
    "check_batched_variants",
    "default_variant_ids",
]

_IDS = "variant_ids"  # passes.VARIANT_IDS (the check layer does not import the passes)


@dataclasses.dataclass
class RowParity:
    """One batch row: the variant it ran and each output's error against that variant alone."""

    row: int
    variant: int
    model: str
    outputs: list[OutputError]

    @property
    def passed(self) -> bool:
        """Whether every output of the row is within tolerance."""
        return all(o.passed for o in self.outputs)


@dataclasses.dataclass
class BatchedCheckReport:
    """The batched model against each variant, row by row."""

    batched: str
    models: list[str]
    variant_ids: list[int]
    providers: list[str]
    seed: int
    inputs: dict[str, dict[str, Any]]
    rows: list[RowParity]

    @property
    def passed(self) -> bool:
        """Whether every row matches its variant's model."""
        return all(r.passed for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-ready dict (with ``passed`` per row and overall)."""
        out = to_data(self)
        for row, raw in zip(self.rows, out["rows"], strict=True):
            raw["passed"] = row.passed
        out["passed"] = self.passed
        return out


def default_variant_ids(models: int) -> list[int]:
    """Every variant once, then the base, then the first variant again: ``1..K, 0, 1``."""
    return [*range(1, models), 0, 1] if models > 1 else [0, 0]


def _batch_dim(info: ModelInfo) -> int | str | None:
    found = [t for t in info.inputs if t.name == _IDS]
    if not found or len(found[0].shape) != 1:
        raise IclUserError(
            f"{info.path} has no 1-D input {_IDS}; write the batched model with "
            "`icl-onnx optimize BASE V1 ... --batched-variants -o OUT.onnx`"
        )
    return found[0].shape[0]


def _stacked_models(path: Path) -> set[int]:
    """The first dims of the factors the main graph's IclMatMul nodes read per row."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    dims = {t.name: list(t.dims) for t in graph.initializer}
    found = set()
    for node in graph.node:
        if node.domain == "ai.icl" and len(node.input) > 5 and node.input[5] == _IDS:
            shape = dims.get(node.input[3])
            if shape:
                found.add(int(shape[0]))
    return found


def _check_ids(ids: Sequence[int], models: int) -> list[int]:
    ids = [int(i) for i in ids]
    if not ids or any(i < 0 or i >= models for i in ids):
        raise IclArgumentError(
            "variant_ids", f"must be ids in [0, {models - 1}] (one per model given), got {ids}"
        )
    return ids


def _feeds(per_row: set[str], sets: list[InputSet]) -> tuple[list[InputSet], InputSet]:
    """Each row's feed (batch 1) and the batched feed (the rows stacked)."""
    rows = [
        {name: (s[name][:1] if name in per_row else sets[0][name]) for name in sets[0]}
        for s in sets
    ]
    batch = {
        name: (np.concatenate([r[name] for r in rows]) if name in per_row else sets[0][name])
        for name in sets[0]
    }
    return rows, batch


def _session(path: str | os.PathLike, providers: list[str]) -> Any:
    try:
        return create_session(path, providers)
    except Exception as e:  # noqa: BLE001 - ORT's errors have no common type
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise IclUserError(f"ONNX Runtime cannot load {path}: {first}") from None


def _run(session: Any, names: list[str], feed: InputSet, path: str | os.PathLike) -> dict:
    try:
        return dict(zip(names, session.run(names, feed), strict=True))
    except Exception as e:  # noqa: BLE001 - ORT's errors have no common type
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise IclUserError(f"ONNX Runtime cannot run {path}: {first}") from None


def check_batched_variants(
    batched: str | os.PathLike,
    models: Sequence[str | os.PathLike],
    *,
    variant_ids: Sequence[int] | None = None,
    providers: Sequence[str] = ("cpu",),
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    val_ranges: Mapping[str | None, tuple[float, float]] | None = None,
    seed: int = 0,
    atol: PerOutput = None,
    rtol: PerOutput = None,
) -> BatchedCheckReport:
    """Checks a batched-variants model against the base and each variant, row by row.

    Args:
        batched: the model ``optimize --batched-variants`` wrote.
        models: the base, then the variants, in the order given to optimize.
        variant_ids: the batch's rows (default ``default_variant_ids``).
        providers: ORT providers in priority order (``cpu``, ``cuda`` or full names).
        input_shapes: shapes of inputs with dynamic dims, as for ``check_models`` (the
            leading batch dim of per-row inputs is taken as 1).
        val_ranges: value ranges by input name, as for ``check_models``.
        seed: the random seed of the inputs (row b uses input set b).
        atol: absolute tolerance (default by dtype), or per output name.
        rtol: relative tolerance (default by dtype), or per output name.

    Raises:
        IclArgumentError: an argument is invalid (the error names it).
        IclUserError: a file is missing or not ONNX, the batched model has no ``variant_ids``
            or stacks factors for another number of models, or the inputs or outputs of the
            models differ from the batched model's.
    """
    if len(models) < 1:
        raise IclArgumentError("models", "is empty; give the base model and its variants")
    full_providers = resolve_providers(providers)
    info = read_model_info(batched)
    dim = _batch_dim(info)
    stacked = _stacked_models(Path(batched))
    if stacked and stacked != {len(models)}:
        raise IclUserError(
            f"{batched} stacks factors for {', '.join(map(str, sorted(stacked)))} models but "
            f"{len(models)} were given; give the base and the variants given to optimize"
        )
    ids = _check_ids(variant_ids or default_variant_ids(len(models)), len(models))
    infos = [read_model_info(m) for m in models]
    plain = dataclasses.replace(info, inputs=[t for t in info.inputs if t.name != _IDS])
    for one in infos:
        check_same_interface(one, plain)
    names = [t.name for t in infos[0].outputs]
    tolerances = output_tolerances(names, atol, rtol, None)
    sets = make_inputs(
        infos[0], input_shapes=input_shapes, val_ranges=val_ranges, iterations=len(ids), seed=seed
    )
    per_row = {t.name for t in plain.inputs if t.shape and t.shape[0] == dim}
    rows, feed = _feeds(per_row, sets)
    feed[_IDS] = np.asarray(ids, np.int64)
    with progress.task("running the models", len(ids) + 1, unit="runs") as advance:
        together = _run(_session(batched, full_providers), names, feed, batched)
        advance(1)
        report_rows: dict[int, RowParity] = {}
        for variant in sorted(set(ids)):  # one original session open at a time
            session = _session(models[variant], full_providers)
            for row in (r for r, k in enumerate(ids) if k == variant):
                alone = _run(session, names, rows[row], models[variant])
                mine = {
                    n: (v[row : row + 1] if v.ndim and v.shape[0] == len(ids) else v)
                    for n, v in together.items()
                }
                outputs = compare_outputs(names, [alone], [mine], **tolerances)
                report_rows[row] = RowParity(row, variant, str(models[variant]), outputs)
                advance(1)
            del session
    return BatchedCheckReport(
        batched=str(batched),
        models=[str(m) for m in models],
        variant_ids=ids,
        providers=full_providers,
        seed=seed,
        inputs=describe_inputs(infos[0], [feed], val_ranges, loaded=False),
        rows=[report_rows[row] for row in range(len(ids))],
    )
