"""Typed results of ``check``: parity per output, memory and time per model, and the verdict.

Everything here is plain data; the CLI turns it into a table or JSON (``CheckReport.to_dict``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from icl_onnx.check.timing import TimingReport

__all__ = [
    "OutputError",
    "ParityReport",
    "NodePlacement",
    "ModelMeasurement",
    "MemoryReport",
    "CheckReport",
    "TimingReport",
]


@dataclasses.dataclass
class OutputError:
    """How far one output of the optimized model is from the original's, over all iterations.

    Attributes:
        name: the output name (outputs are matched by name).
        dtype: numpy dtype name of the original's output.
        shape: shape of the original's output in the first iteration.
        atol: absolute tolerance applied.
        rtol: relative tolerance applied.
        error_stat: ``elementwise``, ``max``, ``mean``, ``median`` or ``quantile``.
        quantile: the quantile used when ``error_stat`` is ``quantile``.
        max_abs: largest ``|optimized - original|``.
        max_rel: largest ``|optimized - original| / |original|`` (inf where the original is 0
            and the optimized is not).
        mean_abs: mean absolute error.
        stat_abs: the error statistic of the absolute error (``max_abs`` for elementwise).
        stat_rel: the error statistic of the relative error.
        mismatches: elements whose absolute error exceeds ``atol`` and relative error exceeds
            ``rtol`` (those that fail the elementwise test).
        elements: number of elements compared.
        passing_atol: the smallest ``atol`` that passes with this ``rtol``.
        passing_rtol: the smallest ``rtol`` that passes with this ``atol``.
        nonfinite_original: NaN or Inf elements in the original's output.
        nonfinite_optimized: NaN or Inf elements in the optimized model's output.
        passed: whether this output is within tolerance.
        reason: why it failed (empty when it passed).
    """

    name: str
    dtype: str
    shape: list[int]
    atol: float
    rtol: float
    error_stat: str
    quantile: float
    max_abs: float = 0.0
    max_rel: float = 0.0
    mean_abs: float = 0.0
    stat_abs: float = 0.0
    stat_rel: float = 0.0
    mismatches: int = 0
    elements: int = 0
    passing_atol: float = 0.0
    passing_rtol: float = 0.0
    nonfinite_original: int = 0
    nonfinite_optimized: int = 0
    passed: bool = True
    reason: str = ""


@dataclasses.dataclass
class ParityReport:
    """Parity of every output over all iterations.

    Attributes:
        outputs: one entry per output, in the original model's output order.
        iterations: how many input sets were compared.
        inputs: for each input, its dtype, shape and value range (or ``loaded``).
    """

    outputs: list[OutputError]
    iterations: int
    inputs: dict[str, dict[str, Any]]

    @property
    def passed(self) -> bool:
        """True when every output is within tolerance."""
        return all(o.passed for o in self.outputs)

    @property
    def failed_outputs(self) -> list[str]:
        """Names of the outputs outside tolerance."""
        return [o.name for o in self.outputs if not o.passed]


@dataclasses.dataclass
class NodePlacement:
    """Where ORT ran one ICL node, from its profile.

    Attributes:
        node: the node name in the graph ORT ran.
        op_type: ``IclMatMul`` or ``IclGather``.
        provider: the execution provider that ran it.
        intended: the provider it should have run on (the first one requested).
    """

    node: str
    op_type: str
    provider: str
    intended: str

    @property
    def ok(self) -> bool:
        """True when the node ran on the intended provider."""
        return self.provider == self.intended


@dataclasses.dataclass
class ModelMeasurement:
    """What one model costs, measured in its own fresh subprocess.

    Attributes:
        path: the model file.
        file_bytes: the model file plus its external data files.
        ort_initializer_bytes: bytes of the initializers in the graph ORT built (its optimized
            model, saved with ``optimized_model_filepath``), external data included.
        ort_initializer_count: number of those initializers.
        rss_baseline: peak RSS (VmHWM) after the imports, before the session, in bytes.
        rss_after_create: peak RSS after the session was created.
        rss_after_run: peak RSS after the runs.
        gpu_baseline: GPU memory in use before the session (None without CUDA).
        gpu_after_create: GPU memory in use after the session was created.
        gpu_after_run: GPU memory in use after the runs.
        create_seconds: session creation time.
        run_seconds: wall time of each run on the input sets (the parity runs, the first
            one cold); ``CheckReport.timing`` holds the runs timed alternately.
        providers: the providers the session used.
        placements: where each ICL node ran.
        node_providers: number of nodes ORT ran on each provider.
        rss_anon_baseline: private resident bytes (RssAnon) after the imports.
        rss_anon_after_run: private resident bytes after the runs.
        rss_file_baseline: file-backed resident bytes (RssFile) after the imports.
        rss_file_after_run: file-backed resident bytes after the runs: weights ORT maps from
            external data, which every process serving the model shares.
        pss_after_run: the process's ``Pss``, ``Pss_Anon`` and ``Pss_File`` after the runs
            (None unless asked).
        shared_across_processes: whether the session was opened with
            ``share_across_processes=True``.
    """

    path: str
    file_bytes: int
    ort_initializer_bytes: int
    ort_initializer_count: int
    rss_baseline: int
    rss_after_create: int
    rss_after_run: int
    gpu_baseline: int | None
    gpu_after_create: int | None
    gpu_after_run: int | None
    create_seconds: float
    run_seconds: list[float]
    providers: list[str]
    placements: list[NodePlacement]
    node_providers: dict[str, int]
    rss_anon_baseline: int = 0
    rss_anon_after_run: int = 0
    rss_file_baseline: int = 0
    rss_file_after_run: int = 0
    pss_after_run: dict[str, int] | None = None
    shared_across_processes: bool = False

    @property
    def rss_create_delta(self) -> int:
        """Peak RSS added by creating the session."""
        return self.rss_after_create - self.rss_baseline

    @property
    def rss_run_delta(self) -> int:
        """Peak RSS added by creating the session and running it."""
        return self.rss_after_run - self.rss_baseline

    @property
    def private_delta(self) -> int:
        """Private (anonymous) resident bytes added by the session and its runs.

        What each further process serving the model pays again.
        """
        return self.rss_anon_after_run - self.rss_anon_baseline

    @property
    def file_backed_delta(self) -> int:
        """File-backed resident bytes added by the session and its runs.

        Shared between processes through the page cache.
        """
        return self.rss_file_after_run - self.rss_file_baseline

    @property
    def gpu_delta(self) -> int | None:
        """GPU memory added by the session and its runs (None without CUDA)."""
        if self.gpu_baseline is None or self.gpu_after_run is None:
            return None
        return self.gpu_after_run - self.gpu_baseline

    @property
    def median_run_seconds(self) -> float:
        """Median run latency."""
        if not self.run_seconds:
            return math.nan
        ordered = sorted(self.run_seconds)
        mid = len(ordered) // 2
        if len(ordered) % 2:
            return ordered[mid]
        return (ordered[mid - 1] + ordered[mid]) / 2


@dataclasses.dataclass
class MemoryReport:
    """Memory of the original against the optimized model, and the regressions found.

    Attributes:
        original: the original model's measurement.
        optimized: the optimized model's measurement.
        max_growth: allowed growth of the optimized model's memory, as a fraction.
        slack_bytes: extra bytes allowed on top for peak RSS and GPU memory (noise).
        regressions: one sentence per regression found.
        misplaced: ICL nodes that ran on a provider other than the intended one.
    """

    original: ModelMeasurement
    optimized: ModelMeasurement
    max_growth: float
    slack_bytes: int
    regressions: list[str]
    misplaced: list[NodePlacement]

    @property
    def passed(self) -> bool:
        """True when nothing regressed and every ICL node ran where intended."""
        return not self.regressions and not self.misplaced


@dataclasses.dataclass
class CheckReport:
    """The result of comparing an optimized model against its original.

    Attributes:
        original: path of the original model.
        optimized: path of the optimized model.
        providers: the execution providers requested, in priority order.
        seed: the seed of the random inputs.
        parity: output parity.
        memory: memory, session creation time and provider placement.
        timing: both models' runs timed alternately (None when none were timed).
    """

    original: str
    optimized: str
    providers: list[str]
    seed: int
    parity: ParityReport
    memory: MemoryReport
    timing: TimingReport | None = None

    @property
    def passed(self) -> bool:
        """True when parity holds and memory did not regress."""
        return self.parity.passed and self.memory.passed

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-serialisable dictionary (NaN and Inf become strings)."""
        out = _clean(dataclasses.asdict(self))
        out["passed"] = self.passed
        out["parity"]["passed"] = self.parity.passed
        out["parity"]["failed_outputs"] = self.parity.failed_outputs
        out["memory"]["passed"] = self.memory.passed
        for key in ("original", "optimized"):
            m: ModelMeasurement = getattr(self.memory, key)
            out["memory"][key].update(
                rss_create_delta=m.rss_create_delta,
                rss_run_delta=m.rss_run_delta,
                private_delta=m.private_delta,
                file_backed_delta=m.file_backed_delta,
                gpu_delta=m.gpu_delta,
                median_run_seconds=_clean(m.median_run_seconds),
            )
        if self.timing is not None:
            out["timing"].update(
                pairs=self.timing.pairs,
                original_median_seconds=self.timing.original_median,
                optimized_median_seconds=self.timing.optimized_median,
            )
        return out


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value
