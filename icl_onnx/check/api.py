"""``check_models``: parity, memory and time of an optimized model against its original."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from icl_onnx import progress
from icl_onnx.check.compare import ERROR_STATS, Tolerance, compare_outputs
from icl_onnx.check.inputs import (
    InputSet,
    describe_inputs,
    load_inputs,
    make_inputs,
    save_inputs,
)
from icl_onnx.check.measure import OutputSet, Worker, time_alternately
from icl_onnx.check.model_info import ModelInfo, read_model_info
from icl_onnx.check.report import CheckReport, MemoryReport, ModelMeasurement, ParityReport
from icl_onnx.check.timing import MIN_PAIRS, TimingReport, summarize_timing
from icl_onnx.errors import IclArgumentError, IclUserError

__all__ = ["PROVIDER_ALIASES", "resolve_providers", "check_models", "memory_regressions"]

#: Short provider names accepted by ``providers``.
PROVIDER_ALIASES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}

PerOutput = float | str | Mapping[str | None, float | str] | None
T = TypeVar("T")


def resolve_providers(providers: Sequence[str]) -> list[str]:
    """Returns full ORT provider names, checking that this onnxruntime has each.

    Raises:
        IclArgumentError: a provider is unknown or not available in this onnxruntime build.
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    out = []
    for p in providers:
        name = PROVIDER_ALIASES.get(p.lower(), p)
        if name not in available:
            hint = (
                "; install onnxruntime-gpu (and a CUDA runtime) or use cpu"
                if name == PROVIDER_ALIASES["cuda"]
                else ""
            )
            raise IclArgumentError(
                "providers",
                f"{p!r}{f' ({name})' if name != p else ''} is not available in this onnxruntime "
                f"(available: {', '.join(available)}){hint}",
            )
        out.append(name)
    if not out:
        raise IclArgumentError("providers", "is empty; give at least one, e.g. cpu")
    return out


def _per_output(value: PerOutput, outputs: Sequence[str], argument: str) -> Tolerance:
    if value is None or isinstance(value, (int, float, str)):
        return Tolerance(value)
    unknown = sorted(k for k in value if k is not None and k not in outputs)
    if unknown:
        raise IclArgumentError(
            argument,
            f"names {', '.join(unknown)}, not an output of the model "
            f"(outputs: {', '.join(outputs)})",
        )
    return Tolerance(value.get(None), {k: v for k, v in value.items() if k is not None})


def output_tolerances(
    outputs: Sequence[str], atol: PerOutput, rtol: PerOutput, error_stat: PerOutput
) -> dict[str, Tolerance]:
    """Returns the per-output ``atol``, ``rtol`` and ``error_stat``, checked against the outputs."""
    tolerances = {
        "atol": _per_output(atol, outputs, "atol"),
        "rtol": _per_output(rtol, outputs, "rtol"),
        "error_stat": _per_output(error_stat, outputs, "error_stat"),
    }
    stats = {tolerances["error_stat"].default, *tolerances["error_stat"].per_output.values()}
    bad = sorted(str(s) for s in stats - {None, *ERROR_STATS})
    if bad:
        raise IclArgumentError(
            "error_stat", f"{bad[0]!r} is not a statistic; use one of {', '.join(ERROR_STATS)}"
        )
    return tolerances


def check_same_interface(a: ModelInfo, b: ModelInfo) -> None:
    a_in, b_in = {t.name: t for t in a.inputs}, {t.name: t for t in b.inputs}
    if set(a_in) != set(b_in):
        raise IclUserError(
            f"the models' inputs differ: {sorted(a_in)} in {a.path}, {sorted(b_in)} in {b.path}"
        )
    for name, t in a_in.items():
        if t.dtype != b_in[name].dtype:
            raise IclUserError(
                f"input {name} is {t.dtype} in {a.path} but {b_in[name].dtype} in {b.path}"
            )
    a_out, b_out = [t.name for t in a.outputs], [t.name for t in b.outputs]
    if set(a_out) != set(b_out):
        raise IclUserError(
            f"the models' outputs differ: {sorted(a_out)} in {a.path}, {sorted(b_out)} in {b.path}"
        )


def memory_regressions(
    original: ModelMeasurement, optimized: ModelMeasurement, max_growth: float, slack_bytes: int
) -> list[str]:
    """Returns one sentence per measure on which the optimized model exceeds the allowance.

    Peak RSS (and GPU memory) may grow by ``max_growth`` of the original plus ``slack_bytes``;
    the initializer bytes of ORT's graph, which do not vary, by ``max_growth`` only.
    """
    found = []
    checks = [
        (
            "peak RSS of session and run",
            original.rss_run_delta,
            optimized.rss_run_delta,
            slack_bytes,
        ),
        (
            "initializer bytes of ORT's graph",
            original.ort_initializer_bytes,
            optimized.ort_initializer_bytes,
            0,
        ),
    ]
    if original.gpu_delta is not None and optimized.gpu_delta is not None:
        checks.append(("GPU memory", original.gpu_delta, optimized.gpu_delta, slack_bytes))
    for what, before, after, slack in checks:
        allowed = before * (1 + max_growth) + slack
        if after > allowed:
            found.append(
                f"{what}: optimized {after:,} B > original {before:,} B "
                f"+ {max_growth:.0%}" + (f" + {slack:,} B" if slack else "")
            )
    return found


def check_models(
    original: str | os.PathLike,
    optimized: str | os.PathLike,
    *,
    providers: Sequence[str] = ("cpu",),
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    val_ranges: Mapping[str | None, tuple[float, float]] | None = None,
    load_inputs_from: str | os.PathLike | None = None,
    save_inputs_to: str | os.PathLike | None = None,
    iterations: int = 1,
    seed: int = 0,
    atol: PerOutput = None,
    rtol: PerOutput = None,
    error_stat: PerOutput = "elementwise",
    quantile: float = 0.99,
    allow_nonfinite: bool = False,
    max_memory_growth: float = 0.05,
    memory_slack_bytes: int = 16 << 20,
    device_id: int = 0,
    timeout: float | None = None,
    share_across_processes: bool = False,
    pss: bool = False,
    timing_runs: int = 20,
    timing_seconds: float = 10.0,
) -> CheckReport:
    """Runs both models on the same inputs, each in its own subprocess, and compares them.

    Each worker reads its memory after running the input sets; then both stay alive and run in
    alternated pairs (``timing``), so their run times see the same load on the machine.

    Args:
        original: the reference model file.
        optimized: the model to check against it.
        providers: ORT providers in priority order (``cpu``, ``cuda`` or full names); ICL nodes
            must run on the first.
        input_shapes: concrete shapes for inputs with dynamic dimensions.
        val_ranges: ``(lo, hi)`` per input; the key None sets the default for every input that
            has no range of its own and indexes no Gather.
        load_inputs_from: an ``.npz`` of inputs to use instead of random ones.
        save_inputs_to: where to save the inputs used, as ``.npz``.
        iterations: number of random input sets (ignored with ``load_inputs_from``).
        seed: the random seed.
        atol: absolute tolerance: one value, or per output name (key None: the default).
            The default depends on the output dtype (see ``compare.DEFAULT_TOLERANCES``).
        rtol: relative tolerance, likewise.
        error_stat: one of ``compare.ERROR_STATS``, or per output name.
        quantile: the quantile for ``error_stat="quantile"``.
        allow_nonfinite: compare NaN/Inf by position instead of failing on them.
        max_memory_growth: allowed growth of the optimized model's memory (fraction).
        memory_slack_bytes: extra bytes allowed for peak RSS and GPU memory (noise).
        device_id: CUDA device.
        timeout: seconds each worker may take.
        share_across_processes: open both sessions with ``share_across_processes=True`` (no
            prepacking: weights stored as external data stay in the mapped file).
        pss: also report each worker's proportional set size after the runs.
        timing_runs: pairs of alternated runs timed after the memory readings (both workers
            are alive meanwhile); 0 times none, and the first worker then exits before the
            second starts.
        timing_seconds: stop timing after this long once ``MIN_PAIRS`` pairs ran.

    Raises:
        IclArgumentError: an argument is invalid (the error names it).
        IclUserError: a file is missing or not ONNX, the models' inputs or outputs differ, or
            ONNX Runtime cannot load or run a model.
    """
    if iterations < 1:
        raise IclArgumentError("iterations", f"must be at least 1, got {iterations}")
    if not 0.0 <= quantile <= 1.0:
        raise IclArgumentError("quantile", f"must be in [0, 1], got {quantile}")
    if timing_runs < 0:
        raise IclArgumentError("timing_runs", f"must be at least 0, got {timing_runs}")
    full_providers = resolve_providers(providers)
    info_a, info_b = read_model_info(original), read_model_info(optimized)
    check_same_interface(info_a, info_b)
    names = [t.name for t in info_a.outputs]
    tolerances = output_tolerances(names, atol, rtol, error_stat)
    sets = _input_sets(
        info_a,
        load_inputs_from=load_inputs_from,
        input_shapes=input_shapes,
        val_ranges=val_ranges,
        iterations=iterations,
        seed=seed,
    )
    if save_inputs_to is not None:
        _renamed(save_inputs, "save_inputs_to", save_inputs_to, sets)
    (m_a, out_a), (m_b, out_b), timing = _run_workers(
        [info_a, info_b],
        sets,
        providers=full_providers,
        device_id=device_id,
        timeout=timeout,
        share_across_processes=share_across_processes,
        pss=pss,
        timing_runs=timing_runs,
        timing_seconds=timing_seconds,
    )
    parity = ParityReport(
        outputs=compare_outputs(
            names, out_a, out_b, quantile=quantile, allow_nonfinite=allow_nonfinite, **tolerances
        ),
        iterations=len(sets),
        inputs=describe_inputs(info_a, sets, val_ranges, loaded=load_inputs_from is not None),
    )
    return CheckReport(
        original=str(original),
        optimized=str(optimized),
        providers=full_providers,
        seed=seed,
        parity=parity,
        memory=_memory_report(m_a, m_b, max_memory_growth, memory_slack_bytes),
        timing=timing,
    )


def _input_sets(
    info: ModelInfo,
    *,
    load_inputs_from: str | os.PathLike | None,
    input_shapes: Mapping[str, Sequence[int]] | None,
    val_ranges: Mapping[str | None, tuple[float, float]] | None,
    iterations: int,
    seed: int,
) -> list[InputSet]:
    """Returns the loaded input sets, or ``iterations`` seeded random ones."""
    if load_inputs_from is not None:
        return _renamed(load_inputs, "load_inputs_from", load_inputs_from, info)
    return make_inputs(
        info, input_shapes=input_shapes, val_ranges=val_ranges, iterations=iterations, seed=seed
    )


def _memory_report(
    original: ModelMeasurement, optimized: ModelMeasurement, max_growth: float, slack_bytes: int
) -> MemoryReport:
    """Compares the two measurements: regressions and ICL nodes off the intended provider."""
    return MemoryReport(
        original=original,
        optimized=optimized,
        max_growth=max_growth,
        slack_bytes=slack_bytes,
        regressions=memory_regressions(original, optimized, max_growth, slack_bytes),
        misplaced=[p for m in (original, optimized) for p in m.placements if not p.ok],
    )


def _renamed(function: Callable[..., T], argument: str, path: str | os.PathLike, *rest: Any) -> T:
    """Calls ``function(path, *rest)``, blaming a bad ``path`` on the caller's ``argument``."""
    try:
        return function(path, *rest)
    except IclArgumentError as e:
        raise e.for_argument(argument) from e


def _run_workers(
    infos: Sequence[ModelInfo],
    sets: list[InputSet],
    *,
    providers: list[str],
    device_id: int,
    timeout: float | None,
    share_across_processes: bool = False,
    pss: bool = False,
    timing_runs: int = 0,
    timing_seconds: float = 10.0,
) -> tuple[
    tuple[ModelMeasurement, list[OutputSet]],
    tuple[ModelMeasurement, list[OutputSet]],
    TimingReport | None,
]:
    """Measures each model in its own worker subprocess, then times both alternately.

    The second worker starts once the first has read its memory (one measurement at a time:
    a worker waiting for its timed runs allocates nothing); with ``timing_runs`` 0 the first
    worker finishes before the second starts.
    """
    with (
        tempfile.TemporaryDirectory(prefix="icl-check-") as tmp,
        contextlib.ExitStack() as stack,
        progress.task("running models", len(infos), unit="models") as advance,
    ):
        workers = [
            stack.enter_context(
                Worker(
                    info,
                    sets,
                    Path(tmp) / label,
                    providers=providers,
                    device_id=device_id,
                    timeout=timeout,
                    share_across_processes=share_across_processes,
                    pss=pss,
                )
            )
            for label, info in zip(("original", "optimized"), infos, strict=True)
        ]
        first, second = workers
        first.start()
        timing = None
        if timing_runs:
            second.start()
            with progress.task("timing runs alternately", timing_runs, unit="pairs") as timed:
                a, b = time_alternately(
                    first, second, timing_runs, timing_seconds, MIN_PAIRS, on_pair=timed
                )
            timing = summarize_timing(a, b)
            measured_a = first.finish()
        else:
            measured_a = first.finish()
            second.start()
        advance(1)
        measured_b = second.finish()
        advance(1)
    return measured_a, measured_b, timing
