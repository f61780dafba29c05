"""``icl-onnx check ORIG OPT``: parity, memory and time of an optimized model against its original.

``icl-onnx check BATCHED --variants BASE V1 ...``: a batched-variants model against the base and
each variant, row by row (``check_batched_variants``): parity only.

Exit codes: 0 parity holds and memory did not regress; 1 parity failed, memory regressed, an
ICL node ran on another provider or (``--generate``) the greedy tokens differ; 2 bad input
(missing file, not ONNX, different inputs or outputs, bad option syntax, unavailable provider).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from rich.markup import escape
from rich.table import Table

from icl_onnx._runtime import inline_weights_note
from icl_onnx.check import (
    ERROR_STATS,
    BatchedCheckReport,
    CheckReport,
    ModelMeasurement,
    NodePlacement,
    check_batched_variants,
    check_models,
)
from icl_onnx.check.generate import GreedyComparison, compare_greedy
from icl_onnx.check.timing import MIN_PAIRS, TimingReport
from icl_onnx.cli._check_options import (
    parse_per_output,
    parse_providers,
    parse_ranges,
    parse_shapes,
    tolerance,
)
from icl_onnx.cli._format import console as make_console
from icl_onnx.cli._format import human_bytes
from icl_onnx.cli._progress import add_quiet_argument, cli_progress
from icl_onnx.errors import IclUserError

__all__ = ["add_parser", "run", "render"]


#: Options of ``check`` that set a ``check_models`` argument of another name.
FLAGS = {
    "input_shapes": "--input-shape",
    "val_ranges": "--val-range",
    "load_inputs_from": "--load-inputs",
    "save_inputs_to": "--save-inputs",
    "quantile": "--error-quantile",
}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Registers ``check`` and its options."""
    p = subparsers.add_parser(
        "check",
        help="compare an optimized model with its original: outputs, memory, time",
        description=(
            "Run both models on the same seeded inputs in ONNX Runtime with the ICL op library, "
            "each in its own subprocess; compare every output and measure file bytes, ORT graph "
            "initializer bytes, peak RSS and GPU memory, then time both models' runs "
            "alternately. Exit 0 pass, 1 fail, 2 bad input."
        ),
    )
    p.add_argument("original", help="the original .onnx model (with --variants: the batched one)")
    p.add_argument("optimized", nargs="?", help="the optimized .onnx model")
    p.add_argument(
        "--variants",
        nargs="+",
        metavar="MODEL",
        help="ORIGINAL is a model written by optimize --batched-variants: run it once on a "
        "batch with a row per variant (ids 1..K, then the base, then variant 1 again) and "
        "compare each row with the base or variant MODEL run alone (the base first, in the "
        "order given to optimize); parity only",
    )
    p.add_argument(
        "--variant-ids",
        metavar="1,2,0",
        help="with --variants: the batch rows' variant ids instead of the default",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_quiet_argument(p)
    _add_input_options(p.add_argument_group("inputs"))
    _add_comparison_options(p.add_argument_group("comparison"))
    _add_memory_options(p.add_argument_group("providers and memory"))
    return p


def _add_input_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--input-shape",
        action="append",
        default=[],
        metavar="NAME:1x128",
        help="shape of an input with dynamic dimensions (repeatable)",
    )
    g.add_argument(
        "--val-range",
        action="append",
        default=[],
        metavar="[NAME:]lo,hi",
        help="value range of an input, or the default without NAME; inputs that "
        "index a Gather get valid token ids by default",
    )
    g.add_argument("--load-inputs", metavar="FILE.npz", help="use these inputs")
    g.add_argument("--save-inputs", metavar="FILE.npz", help="save the inputs used")
    g.add_argument(
        "--iterations",
        type=int,
        default=1,
        metavar="N",
        help="number of random input sets (default 1)",
    )
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def _add_comparison_options(c: argparse._ArgumentGroup) -> None:
    c.add_argument(
        "--atol",
        action="append",
        default=[],
        metavar="[NAME:]VALUE",
        help="absolute tolerance (default by dtype: float32 1e-5, float16 1e-3); an element "
        "passes when its absolute error is within atol or its relative error within rtol",
    )
    c.add_argument(
        "--rtol",
        action="append",
        default=[],
        metavar="[NAME:]VALUE",
        help="relative tolerance (default by dtype: float32 1e-4, float16 1e-2)",
    )
    c.add_argument(
        "--error-stat",
        action="append",
        default=[],
        metavar="[NAME:]STAT",
        help=f"error statistic: {', '.join(ERROR_STATS)} (default elementwise)",
    )
    c.add_argument(
        "--error-quantile",
        type=float,
        default=0.99,
        metavar="Q",
        help="quantile for --error-stat quantile (default 0.99)",
    )
    c.add_argument(
        "--allow-nonfinite",
        action="store_true",
        help="compare NaN/Inf by position instead of failing on them",
    )
    c.add_argument(
        "--generate",
        type=int,
        default=0,
        metavar="N",
        help="models in ONNX Runtime GenAI folders: also decode N tokens greedily in each "
        "(og.Generator) and report the first step where the tokens differ",
    )


def _add_memory_options(r: argparse._ArgumentGroup) -> None:
    r.add_argument(
        "--providers",
        default="cpu",
        metavar="cpu,cuda",
        help="ORT providers in priority order; ICL nodes must run on the first",
    )
    r.add_argument("--device-id", type=int, default=0, help="CUDA device (default 0)")
    r.add_argument(
        "--max-memory-growth",
        type=float,
        default=0.05,
        metavar="FRACTION",
        help="fail when the optimized model's peak RSS, GPU memory or ORT-graph "
        "initializer bytes exceed the original's by more (default 0.05)",
    )
    r.add_argument(
        "--memory-slack-mb",
        type=float,
        default=16.0,
        metavar="MB",
        help="extra MiB allowed for peak RSS and GPU memory noise (default 16)",
    )
    r.add_argument(
        "--share-across-processes",
        action="store_true",
        help="open both sessions as create_session(..., share_across_processes=True) does "
        "(no prepacking: weights stored as external data stay in the mapped file, shared by "
        "every process serving the model)",
    )
    r.add_argument(
        "--pss",
        action="store_true",
        help="also report each model's proportional set size after the runs (Linux)",
    )
    r.add_argument(
        "--timing-runs",
        type=int,
        default=20,
        metavar="N",
        help="pairs of runs timed alternately, one of each model, after the memory readings "
        "(default 20; 0 times none and never keeps both models' workers alive at once)",
    )
    r.add_argument(
        "--timing-seconds",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help=f"stop timing after this long once {MIN_PAIRS} pairs ran (default 10)",
    )
    r.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="kill a model's worker after this long",
    )


def _stat(value: str) -> str:
    if value not in ERROR_STATS:
        raise ValueError(f"unknown statistic {value!r}, use one of {', '.join(ERROR_STATS)}")
    return value


def run(args: argparse.Namespace) -> int:
    """Runs the check; prints a table (or JSON) and returns 0 pass, 1 fail."""
    if args.variants:
        return _run_batched(args)
    if args.variant_ids is not None:
        raise IclUserError("--variant-ids needs --variants")
    if args.optimized is None:
        raise IclUserError(
            "give ORIGINAL and OPTIMIZED, or a batched model and --variants BASE V1 ..."
        )
    if args.load_inputs and (args.input_shape or args.val_range):
        raise IclUserError("--load-inputs fixes the inputs; drop --input-shape and --val-range")
    error_stat = parse_per_output(args.error_stat, "--error-stat", _stat)
    error_stat.setdefault(None, "elementwise")
    # First, so that a bad --generate is refused before the models are measured.
    greedy = _greedy(args) if args.generate else None
    with cli_progress(args.quiet):
        report = check_models(
            args.original,
            args.optimized,
            providers=parse_providers(args.providers),
            input_shapes=parse_shapes(args.input_shape),
            val_ranges=parse_ranges(args.val_range),
            load_inputs_from=args.load_inputs,
            save_inputs_to=args.save_inputs,
            iterations=args.iterations,
            seed=args.seed,
            atol=parse_per_output(args.atol, "--atol", tolerance) or None,
            rtol=parse_per_output(args.rtol, "--rtol", tolerance) or None,
            error_stat=error_stat,
            quantile=args.error_quantile,
            allow_nonfinite=args.allow_nonfinite,
            max_memory_growth=args.max_memory_growth,
            memory_slack_bytes=int(args.memory_slack_mb * (1 << 20)),
            device_id=args.device_id,
            timeout=args.timeout,
            share_across_processes=args.share_across_processes,
            pss=args.pss,
            timing_runs=args.timing_runs,
            timing_seconds=args.timing_seconds,
        )
    if args.share_across_processes:
        for path in (args.original, args.optimized):
            _note_inline_weights(path)
    if args.json:
        data = report.to_dict()
        if greedy is not None:
            data["greedy"] = {
                **dataclasses.asdict(greedy),
                "first_difference": greedy.first_difference,
            }
        print(json.dumps(data, indent=2))
    else:
        render(report)
        if greedy is not None:
            make_console().print(greedy_text(greedy))
    drift = greedy is not None and greedy.first_difference is not None
    return 0 if report.passed and not drift else 1


def _ids(spec: str | None) -> list[int] | None:
    if spec is None:
        return None
    try:
        return [int(p) for p in spec.split(",")]
    except ValueError:
        raise IclUserError(
            f"--variant-ids {spec!r}: write ids separated by commas, e.g. 1,2,0"
        ) from None


def _run_batched(args: argparse.Namespace) -> int:
    if args.optimized is not None:
        raise IclUserError("with --variants give one model, the batched one, before --variants")
    other = [
        flag
        for flag, given in (
            ("--generate", args.generate),
            ("--load-inputs", args.load_inputs),
            ("--save-inputs", args.save_inputs),
            ("--error-stat", args.error_stat),
            ("--iterations", args.iterations != 1),
            ("--share-across-processes", args.share_across_processes),
            ("--pss", args.pss),
        )
        if given
    ]
    if other:
        raise IclUserError(f"--variants checks parity only; drop {', '.join(other)}")
    with cli_progress(args.quiet):
        report = check_batched_variants(
            args.original,
            args.variants,
            variant_ids=_ids(args.variant_ids),
            providers=parse_providers(args.providers),
            input_shapes=parse_shapes(args.input_shape),
            val_ranges=parse_ranges(args.val_range),
            seed=args.seed,
            atol=parse_per_output(args.atol, "--atol", tolerance) or None,
            rtol=parse_per_output(args.rtol, "--rtol", tolerance) or None,
        )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        render_batched(report)
    return 0 if report.passed else 1


def render_batched(report: BatchedCheckReport) -> None:
    """Prints one row per batch row and output: the errors against the variant alone."""
    console = make_console()
    table = Table(
        title=f"Batched variants, row by row: {len(report.rows)} rows (variant ids "
        f"{', '.join(map(str, report.variant_ids))}), seed {report.seed}, "
        f"{', '.join(report.providers)}"
    )
    for col in ("row", "variant", "model", "output", "max abs", "max rel", "atol / rtol", "result"):
        table.add_column(col)
    for row in report.rows:
        for o in row.outputs:
            table.add_row(
                str(row.row),
                str(row.variant),
                escape(row.model),
                escape(o.name),
                f"{o.max_abs:.3g}",
                f"{o.max_rel:.3g}",
                f"{o.atol:g} / {o.rtol:g}",
                "[green]pass[/]" if o.passed else "[red]FAIL[/]",
            )
    console.print(table)
    failed = [(r, o) for r in report.rows for o in r.outputs if not o.passed]
    for row, o in failed:
        console.print(f"  row {row.row} ({escape(row.model)}) {escape(o.name)}: {escape(o.reason)}")
    if not failed:
        console.print("[bold green]PASS[/]: every row matches its variant's model")
    else:
        rows = sorted({r.row for r, _ in failed})
        console.print(
            f"[bold red]FAIL[/]: rows {', '.join(map(str, rows))} differ from their model"
        )


def _greedy(args: argparse.Namespace) -> GreedyComparison:
    if args.generate < 1:
        raise IclUserError("--generate needs a number of tokens of at least 1")
    try:
        return compare_greedy(args.original, args.optimized, args.generate)
    except (ValueError, RuntimeError) as e:
        raise IclUserError(f"--generate: {e}") from None


def greedy_text(greedy: GreedyComparison) -> str:
    """One line: the greedy tokens are identical, or from which step they differ."""
    steps = len(greedy.original)
    step = greedy.first_difference
    if step is None:
        return (
            f"Greedy generation: the same {steps} tokens after a {len(greedy.prompt)}-token prompt"
        )
    return (
        f"Greedy generation: tokens differ from step {step} of {steps} "
        f"(original {greedy.original[step]}, optimized {greedy.optimized[step]}); "
        f"{sum(a != b for a, b in zip(greedy.original, greedy.optimized, strict=True))} "
        "of the steps differ"
    )


def _note_inline_weights(path: str) -> None:
    """Says on stderr when a model shared across processes keeps its weights inline."""
    note = inline_weights_note(path)
    if note is not None:
        print(f"note: {note}", file=sys.stderr)


def _bytes(n: int | None) -> str:
    return "n/a" if n is None else human_bytes(n)


def _change(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return ""
    if a == 0:
        return "" if b == 0 else "new"
    return f"{(b - a) / a:+.1%}"


def render(report: CheckReport) -> None:
    """Prints the report as rich tables: parity, memory and time, ICL node placement, verdict."""
    console = make_console()
    console.print(_inputs_table(report))
    console.print(_parity_table(report))
    for o in report.parity.outputs:
        if not o.passed:
            console.print(f"  {escape(o.name)}: {escape(o.reason)}")
    console.print(_memory_table(report.memory.original, report.memory.optimized, report.timing))
    placements = report.memory.original.placements + report.memory.optimized.placements
    if placements:
        console.print(_placement_table(placements))
    console.print(_verdict(report))


def _inputs_table(report: CheckReport) -> Table:
    """The shape and values chosen for each input (one value per symbolic dim)."""
    table = Table(title="Inputs (shape chosen for each; symbolic dims take one value each)")
    for col in ("input", "dtype", "shape", "values", "range"):
        table.add_column(col)
    for name, entry in report.parity.inputs.items():
        bounds = entry.get("range")
        table.add_row(
            escape(name),
            entry["dtype"],
            "x".join(map(str, entry["shape"])) or "scalar",
            entry["source"],
            "" if bounds is None else f"[{bounds[0]:g}, {bounds[1]:g}]",
        )
    return table


def _parity_table(report: CheckReport) -> Table:
    parity = Table(
        title=f"Parity over {report.parity.iterations} input set(s), "
        f"seed {report.seed}, {', '.join(report.providers)}"
    )
    for col in (
        "output",
        "dtype",
        "shape",
        "max abs",
        "max rel",
        "stat (abs/rel)",
        "atol / rtol",
        "passing atol / rtol",
        "NaN/Inf",
        "result",
    ):
        parity.add_column(col)
    for o in report.parity.outputs:
        parity.add_row(
            escape(o.name),
            o.dtype,
            "x".join(map(str, o.shape)),
            f"{o.max_abs:.3g}",
            f"{o.max_rel:.3g}",
            f"{o.error_stat}: {o.stat_abs:.3g} / {o.stat_rel:.3g}",
            f"{o.atol:g} / {o.rtol:g}",
            f"{o.passing_atol:.3g} / {o.passing_rtol:.3g}",
            f"{o.nonfinite_original} / {o.nonfinite_optimized}",
            "[green]pass[/]" if o.passed else "[red]FAIL[/]",
        )
    return parity


def _memory_table(
    a: ModelMeasurement, b: ModelMeasurement, timing: TimingReport | None = None
) -> Table:
    shared = ", sessions shared across processes" if b.shared_across_processes else ""
    memory = Table(title=f"Memory and time (each model in a fresh subprocess{shared})")
    for col in ("measure", "original", "optimized", "change"):
        memory.add_column(col)
    rows = [
        ("file bytes (incl. external data)", a.file_bytes, b.file_bytes),
        ("ORT graph initializer bytes", a.ort_initializer_bytes, b.ort_initializer_bytes),
        ("peak RSS after imports", a.rss_baseline, b.rss_baseline),
        ("peak RSS added: create session", a.rss_create_delta, b.rss_create_delta),
        ("peak RSS added: create + run", a.rss_run_delta, b.rss_run_delta),
        ("private memory added (RssAnon)", a.private_delta, b.private_delta),
        ("file-backed memory added (RssFile)", a.file_backed_delta, b.file_backed_delta),
        ("GPU memory added", a.gpu_delta, b.gpu_delta),
    ]
    if a.pss_after_run is not None and b.pss_after_run is not None:
        rows += [
            ("PSS after run", a.pss_after_run["Pss"], b.pss_after_run["Pss"]),
            ("  private (Pss_Anon)", a.pss_after_run["Pss_Anon"], b.pss_after_run["Pss_Anon"]),
            ("  shared (Pss_File)", a.pss_after_run["Pss_File"], b.pss_after_run["Pss_File"]),
        ]
    for label, x, y in rows:
        memory.add_row(label, _bytes(x), _bytes(y), _change(x, y))
    memory.add_row(
        "session creation",
        f"{a.create_seconds * 1e3:,.1f} ms",
        f"{b.create_seconds * 1e3:,.1f} ms",
        _change(a.create_seconds, b.create_seconds),
    )
    if timing is None:
        memory.add_row(
            "median run (one model after the other)",
            f"{a.median_run_seconds * 1e3:,.2f} ms",
            f"{b.median_run_seconds * 1e3:,.2f} ms",
            _change(a.median_run_seconds, b.median_run_seconds),
        )
    else:
        memory.add_row(
            f"median run (alternated, {timing.pairs} pairs)",
            f"{timing.original_median * 1e3:,.2f} ms",
            f"{timing.optimized_median * 1e3:,.2f} ms",
            timing_text(timing),
        )
    return memory


def timing_text(timing: TimingReport) -> str:
    """``-3.1% (p10-p90 -5.0%..-1.2%): faster``: the median per-pair change and the verdict."""
    return (
        f"{timing.median_ratio - 1:+.1%} (p10-p90 {timing.p10_ratio - 1:+.1%}.."
        f"{timing.p90_ratio - 1:+.1%}): {timing.verdict}"
    )


def _placement_table(placements: list[NodePlacement]) -> Table:
    nodes = Table(title="ICL nodes (from the ORT profile)")
    for col in ("node", "op", "ran on", "intended"):
        nodes.add_column(col)
    for pl in placements:
        ran = pl.provider if pl.ok else f"[red]{pl.provider}[/]"
        nodes.add_row(escape(pl.node), pl.op_type, ran, pl.intended)
    return nodes


def _verdict(report: CheckReport) -> str:
    if report.passed:
        return "[bold green]PASS[/]: outputs within tolerance, no memory regression"
    reasons = []
    if not report.parity.passed:
        reasons.append("outputs outside tolerance: " + ", ".join(report.parity.failed_outputs))
    reasons += report.memory.regressions
    if report.memory.misplaced:
        reasons.append(
            "ICL nodes off the intended provider: "
            + ", ".join(p.node for p in report.memory.misplaced)
        )
    return "[bold red]FAIL[/]: " + escape("; ".join(reasons))
