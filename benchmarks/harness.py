"""What every benchmark shares: machine metadata, memory readings, byte formatting, results files.

Benchmarks are modules of the ``benchmarks`` package, run from the repository root as
``python -m benchmarks.NAME``; their child processes are modules too, started with
:func:`child_command` (``python -m benchmarks._worker_x ...`` in the repository root), never code
passed as a string. This module imports only the standard library (and ``icl_onnx._proc``), and
the heavier parts of it (``importlib.metadata``, ``subprocess``, ``json``) only when called, so a
child that reads its own memory after importing it is charged well under 1 MB.

- :func:`metadata` and :func:`describe`: the machine, the versions, the load and the commit, as a
  dict for the JSON file and as one sentence for the markdown file; :func:`filesystem`.
- :func:`memory_status`, :func:`peak_rss`, :func:`proportional_set_size`: ``/proc`` readings of a
  process, in bytes (the readers ``check``'s worker uses, from ``icl_onnx._proc``).
- :func:`mb`: bytes as MB, the one unit of every table (MB = 10^6 bytes).
- :func:`write_json`, :func:`write_markdown`, :func:`table`, :func:`pyplot`, :func:`save_png`: the
  results files, each written atomically (a reader never sees half a file).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from icl_onnx._proc import memory_status, peak_rss, proc_bytes, proportional_set_size

__all__ = [
    "RESULTS",
    "ROOT",
    "child_command",
    "cpu_flags",
    "cpu_name",
    "describe",
    "filesystem",
    "mb",
    "memory_status",
    "metadata",
    "output_arguments",
    "peak_rss",
    "proc_bytes",
    "proportional_set_size",
    "pss_bars",
    "pyplot",
    "save_png",
    "table",
    "write_json",
    "write_markdown",
]

#: The repository root (the working directory of every child process).
ROOT = Path(__file__).resolve().parents[1]
#: Where the results files are kept.
RESULTS = ROOT / "benchmarks" / "results"
#: Bytes in one MB, the unit of every table.
MB = 1e6


def mb(n_bytes: float, digits: int = 1) -> str:
    """Formats a byte count as MB (10^6 bytes) with ``digits`` decimals and thousands commas.

    Bytes in, always: a /proc reading in kB goes through :func:`memory_status` (bytes) first.
    """
    return f"{n_bytes / MB:,.{digits}f}"


def _cpuinfo(field: str) -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what platform says."""
    return _cpuinfo("model name") or platform.processor() or platform.machine() or "unknown"


def cpu_flags() -> set[str]:
    """The CPU's feature flags (empty when /proc/cpuinfo is unreadable)."""
    return set((_cpuinfo("flags") or "").split())


def _version(package: str) -> str:
    import importlib.metadata  # not at the top: it costs a child process megabytes of RSS

    # The module this process imported, where it did: two installed distributions of one
    # module (the CPU onnxruntime and a carried onnxruntime-gpu ahead of it on sys.path) would
    # otherwise report the one that was not used.
    version = getattr(sys.modules.get(package), "__version__", None)
    if isinstance(version, str):
        return version
    names = {"onnxruntime": ("onnxruntime", "onnxruntime-gpu")}.get(package, (package,))
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "absent"


def _commit() -> str:
    import subprocess

    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--abbrev=7"],
            capture_output=True, text=True, check=True, timeout=10,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip()


def metadata(packages: Sequence[str] = ("onnxruntime", "numpy")) -> dict[str, Any]:
    """The machine a benchmark ran on, the versions of ``packages``, the load and the commit.

    Goes into the JSON results file as it is; :func:`describe` makes the markdown sentence.
    """
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(),
        "cpu": cpu_name(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "avx512": "avx512f" in cpu_flags(),
        "python": platform.python_version(),
        "versions": {p: _version(p) for p in packages},
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def describe(meta: dict[str, Any]) -> str:
    """One markdown sentence from :func:`metadata`: CPU, cores, versions, load, commit, date."""
    versions = ", ".join(f"{p} {v}" for p, v in meta["versions"].items())
    load = "/".join(f"{x:.1f}" for x in meta["load_average"])
    return (
        f"{meta['cpu']} ({meta['machine']}{', AVX-512' if meta['avx512'] else ''}), "
        f"{meta['cpus']} logical cores shared with other work (load average {load} at the "
        f"start); Python {meta['python']}, {versions}; commit {meta['commit']}, {meta['date']}."
    )


def filesystem(path: Path) -> str:
    """``type (mount point)`` of the file system holding ``path``, from /proc/mounts.

    Part of a result where disk speed matters (tmpfs against a throttled shared disk).
    """
    real, best = os.path.realpath(path), ("?", "")
    with open("/proc/mounts") as mounts:
        for line in mounts:
            _, point, kind = line.split()[:3]
            inside = real == point or real.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best[1]):
                best = (kind, point)
    return f"{best[0]} ({best[1]})"


def results_folder(value: str) -> Path:
    """The argparse type of ``--out``: a folder, created when the results are written.

    A path that names a file is refused when the arguments are read, not after the run (whose
    results would then be lost).
    """
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(
            f"{value} is a file; --out takes the folder the results are written into"
        )
    return path


def out_argument(parser: Any) -> None:
    """Adds ``--out DIR`` (default :data:`RESULTS`, read by :func:`results_folder`)."""
    parser.add_argument("--out", type=results_folder, default=RESULTS, help="results folder")


def output_arguments(parser: Any, name: str) -> None:
    """Adds ``--out DIR`` (:func:`out_argument`) and ``--report-only`` to an argparse parser.

    ``--report-only``: measure nothing, rewrite the report from ``name``'s JSON file in --out.
    """
    out_argument(parser)
    parser.add_argument(
        "--report-only",
        action="store_true",
        help=f"measure nothing: rewrite the report from {name}.json in --out",
    )


def child_command(module: str, *args: str) -> list[str]:
    """The command that runs ``module`` (``benchmarks._x`` or ``icl_onnx...``) as a child.

    Run it with ``cwd=ROOT`` (``python -m`` finds ``benchmarks`` in the working directory).
    """
    return [sys.executable, "-m", module, *map(str, args)]


def _write_atomic(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, data: Any, indent: int = 1) -> None:
    """Writes ``data`` as JSON (one trailing newline; other objects as their str), atomically."""
    import json

    _write_atomic(path, json.dumps(data, indent=indent, default=str) + "\n")


def write_markdown(path: Path, lines: Iterable[str]) -> None:
    """Writes the markdown ``lines`` (one trailing newline), atomically."""
    _write_atomic(path, "\n".join(lines) + "\n")


#: The op library's huge-page switch (docs/operators.md, Kernels): "0", "sync", or unset for the
#: default (collapsed in the background). The library reads it when ORT creates a kernel.
HUGE_PAGES_ENV = "ICL_ONNX_HUGE_PAGES"


def huge_pages_environment(mode: str | None) -> dict[str, str]:
    """A copy of this process's environment for a child, with :data:`HUGE_PAGES_ENV` set to
    ``mode``, or unset for None."""
    env = {k: v for k, v in os.environ.items() if k != HUGE_PAGES_ENV}
    if mode is not None:
        env[HUGE_PAGES_ENV] = mode
    return env


@contextlib.contextmanager
def huge_pages_mode(mode: str | None) -> Iterator[None]:
    """:data:`HUGE_PAGES_ENV` set to ``mode`` (unset for None) in this process while the block
    runs (sessions created there follow it), then restored."""
    before = os.environ.pop(HUGE_PAGES_ENV, None)
    if mode is not None:
        os.environ[HUGE_PAGES_ENV] = mode
    try:
        yield
    finally:
        os.environ.pop(HUGE_PAGES_ENV, None)
        if before is not None:
            os.environ[HUGE_PAGES_ENV] = before


def write_record(output: Path, record: Any, markdown: Callable[[Any], list[str]]) -> None:
    """Writes ``record`` as ``output``'s JSON sibling and ``markdown(record)`` as ``output``,
    both atomically, and prints the markdown."""
    write_json(Path(output).with_suffix(".json"), record)
    lines = markdown(record)
    write_markdown(output, lines)
    print("\n".join(lines))


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str = "") -> list[str]:
    """A markdown table's lines: the header, the rule, a line per row.

    ``align`` has a letter per column, ``l`` or ``r`` (``r`` writes ``---:``); missing letters
    leave the column's alignment to the renderer.
    """
    rule = ["---:" if align[i : i + 1] == "r" else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def pyplot():  # noqa: ANN201 - matplotlib is an optional dependency (the bench extra)
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pss_bars(ax: Any, pos: Any, totals: Sequence[dict], width: float, j: int, label: str) -> None:
    """Bars of total PSS in MB at ``pos``: private (``Pss_Anon``) below, shared (``Pss_File``,
    hatched) stacked on it, in colour ``C{j}``; ``totals`` holds one PSS dict per bar.
    """
    private = [t["Pss_Anon"] / MB for t in totals]
    shared = [t["Pss_File"] / MB for t in totals]
    ax.bar(pos, private, width, color=f"C{j}", label=label)
    ax.bar(pos, shared, width, bottom=private, color=f"C{j}", alpha=0.4, hatch="//")


def save_png(fig: Any, path: Path, dpi: int = 110, tight: bool = False) -> None:
    """Saves a matplotlib figure as PNG, atomically, and closes it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=dpi, bbox_inches="tight" if tight else None)
    pyplot().close(fig)
    os.replace(tmp, path)
