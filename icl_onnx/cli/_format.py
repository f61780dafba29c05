"""Formatting shared by the CLI commands: byte counts and the SharePlan table."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from icl_onnx.analysis.findings import QuantizedNearCopy
from icl_onnx.planning.batched import BatchPlan
from icl_onnx.planning.plan import Consumer, CrossPlan, SharePlan

__all__ = [
    "batched_table",
    "human_bytes",
    "near_copy_text",
    "plan_table",
    "print_plan",
    "print_cross_plan",
    "print_json",
    "console",
]


def console() -> Console:
    """Returns a console on stdout (no colour codes when stdout is not a terminal)."""
    return Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 160)


def human_bytes(n: int | float) -> str:
    """Formats a byte count with a decimal unit (``92.2 MB``)."""
    n = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def print_json(data: Any) -> None:
    """Prints ``data`` as indented JSON on stdout."""
    print(json.dumps(data, indent=2, default=str))


def _consumer_text(consumer: Consumer) -> str:
    """``MatMul→IclMatMul``, ``Add (rewire)`` (same op, reads the canonical), ``Neg (kept)``."""
    if not consumer.covered:
        return f"{consumer.op_type} (kept)"
    if consumer.becomes != consumer.op_type:
        return f"{consumer.op_type}→{consumer.becomes}"
    return f"{consumer.op_type} ({consumer.rule})"


def plan_table(plan: SharePlan, title: str) -> Table:
    """Returns a table with one row per member of each group."""
    table = Table(title=title, title_justify="left")
    for column in ("canonical", "member", "kind", "shape", "bytes freed", "consumers", "note"):
        table.add_column(column, overflow="fold")
    for group in plan.groups:
        canonical = f"{group.canonical} {list(group.shape)} {group.dtype}"
        if group.origin:
            canonical += f" (of {group.origin})"
        if not group.members:  # a tensor other files share: only its own consumers change
            changed = [c for c in group.canonical_consumers if c.becomes != c.op_type]
            consumers = ", ".join(_consumer_text(c) for c in changed)
            table.add_row(canonical, "", "", "", human_bytes(0), consumers, "shared across files")
        for i, member in enumerate(group.members):
            consumers = ", ".join(_consumer_text(c) for c in member.consumers)
            source = "" if member.source == "initializer" else f" ({member.source})"
            table.add_row(
                canonical if i == 0 else "",
                member.name + source,
                member.view.kind,
                "x".join(str(d) for d in member.shape),
                human_bytes(member.freed_bytes),
                consumers,
                member.kept_reason,
            )
    return table


def print_plan(plan: SharePlan, title: str) -> None:
    """Prints the plan's table and totals."""
    out = console()
    if not plan.groups:
        out.print(f"{title}: no initializer is a copy or view of another.")
    else:
        out.print(plan_table(plan, title))
    out.print(
        f"{len(plan.groups)} group(s); initializers {human_bytes(plan.initializer_bytes)} "
        f"in {plan.initializer_count} tensors; file bytes freed {human_bytes(plan.freed_bytes)}; "
        f"run-time copies removed "
        f"{sum(g.session_copies_freed for g in plan.groups)}"
    )
    for member in plan.kept:
        out.print(f"  kept {member.name}: {member.kept_reason}")
    for skipped in plan.skipped:
        out.print(f"  skipped {skipped.name}: {skipped.reason}")
    for near in plan.near_copies:
        out.print(near_copy_text(near))


def near_copy_text(near: QuantizedNearCopy) -> str:
    """One lossy near-copy: what matches what, by how much, and what the user can do."""
    shape = "x".join(str(d) for d in near.shape)
    what = f"{near.quantized}^T" if near.transposed else near.quantized
    text = (
        f"  near-copy (lossy) {near.table} [{shape}] ({human_bytes(near.table_bytes)}): "
        f"{what} ({near.scheme}, read by {near.consumer}, {human_bytes(near.quantized_bytes)}) "
        f"dequantized matches it within one quantization step: max |error| "
        f"{near.max_error:.3g}, mean {near.mean_error:.3g} (|values| up to {near.max_abs:.3g}); "
    )
    if near.shareable:
        return text + (
            "`icl-onnx optimize --share-quantized` makes its Gathers read the quantized weight "
            f"and frees {human_bytes(near.table_bytes)} (outputs change; `icl-onnx check` "
            "shows by how much)"
        )
    return text + f"not shareable by --share-quantized: {near.reason}"


def cross_table(plan: CrossPlan) -> Table:
    """Returns a table with one row per member of each group that crosses files."""
    table = Table(title="groups across files", title_justify="left")
    for column in ("canonical", "member", "kind", "shape", "bytes saved", "note"):
        table.add_column(column, overflow="fold")
    for group in plan.groups:
        canonical = f"{group.model}:{group.canonical} {list(group.shape)} {group.dtype}"
        for i, member in enumerate(group.members):
            note = ""
            if member.view.rank:
                note = (
                    f"rank {member.view.rank}, factors {human_bytes(member.factor_bytes)}, "
                    f"max error {member.max_error:.2g} ({member.error_ulps:.1f} ulp)"
                )
            table.add_row(
                canonical if i == 0 else "",
                f"{member.model}:{member.name}",
                member.view.kind,
                "x".join(str(d) for d in member.shape),
                human_bytes(member.saved_bytes),
                note,
            )
    return table


def print_cross_plan(plan: CrossPlan) -> None:
    """Prints each model's own plan, then the groups that cross files."""
    for label, own in zip(plan.models, plan.plans, strict=True):
        print_plan(own, label)
    out = console()
    if not plan.groups:
        out.print("no tensor is a copy or view of a tensor in another file.")
        return
    out.print(cross_table(plan))
    out.print(
        f"{len(plan.groups)} group(s) across files; bytes that read another file's tensor "
        f"{human_bytes(plan.shared_bytes)}"
    )
    low_rank = plan.low_rank
    if low_rank:
        saved = sum(member.saved_bytes for _, member in low_rank)
        out.print(
            f"{len(low_rank)} low-rank relation(s) to {plan.models[0]}: "
            f"{human_bytes(saved)} saved after their factors"
        )


def batched_table(batch: BatchPlan) -> Table:
    """One row per weight that reads stacked factors: each model's rank, bytes, error."""
    ids = ", ".join(f"{i} {m}" for i, m in enumerate(batch.models))
    table = Table(
        title=f"Batched variants: {len(batch.models)} models, variant ids {ids}",
        title_justify="left",
    )
    for column in (
        "weight",
        "shape",
        "rank per model",
        "stacked rank",
        "factor bytes",
        "max error",
    ):
        table.add_column(column, overflow="fold")
    for weight in batch.weights:
        table.add_row(
            weight.name,
            "x".join(map(str, weight.shape)),
            " ".join(map(str, weight.ranks)),
            str(weight.rank),
            human_bytes(weight.factor_bytes),
            f"{weight.max_error:.3g}",
        )
    return table
