"""IclMatMul's CPU kernel backs a constant W with transparent huge pages (cpu/huge_pages.h).

Each case runs in a child process, so that the process's huge-page count moves only with the
sessions it creates: AnonHugePages (smaps_rollup) before creating the session and after the
collapse (at once with ``ICL_ONNX_HUGE_PAGES=sync``; polled while the library's thread collapses
by default; after a second with ``0``), then one run against numpy (the collapse copies W's
pages; the values must not change). Sessions dropped while their W is being collapsed, and a
fork while it is, must neither hang nor change a result.
"""

from __future__ import annotations

import ctypes
import json
import mmap
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from benchmarks.bench_huge_pages import madvise_collapse
from benchmarks.harness import huge_pages_environment

MIB = 1 << 20
_THP_ENABLED = Path("/sys/kernel/mm/transparent_hugepage/enabled")

_CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    import numpy as np
    import onnx
    from onnx import helper as h, numpy_helper as nh
    from icl_onnx import create_session
    from icl_onnx._proc import proc_bytes

    scenario, dtype = sys.argv[1], np.dtype(sys.argv[2])
    n, k = int(sys.argv[3]), int(sys.argv[4])
    mode = os.environ.get("ICL_ONNX_HUGE_PAGES", "")
    elem = onnx.helper.np_dtype_to_tensor_dtype(dtype)
    w0 = np.random.default_rng(0).standard_normal((n, k)).astype(dtype)
    graph = h.make_graph(
        [h.make_node("IclMatMul", ["A", "W"], ["Y"], domain="ai.icl", transpose=1)],
        "g",
        [h.make_tensor_value_info("A", elem, ["M", k])],
        [h.make_tensor_value_info("Y", elem, ["M", n])],
        initializer=[nh.from_array(w0, "W")],
    )
    model = h.make_model(
        graph, opset_imports=[h.make_opsetid("", 18), h.make_opsetid("ai.icl", 1)], ir_version=10
    ).SerializeToString()
    del graph, w0  # numpy asks for huge pages for its own large arrays: none stays alive

    def huge_kib():
        rollup = proc_bytes("/proc/self/smaps_rollup", ("AnonHugePages",))
        return rollup.get("AnonHugePages", 0) // 1024

    def error(session):
        w = np.random.default_rng(0).standard_normal((n, k)).astype(dtype)
        a = np.random.default_rng(1).standard_normal((3, k)).astype(dtype)
        y = session.run(None, {"A": a})[0].astype(np.float32)
        ref = a.astype(np.float32) @ w.astype(np.float32).T
        return float(np.max(np.abs(y - ref)) / np.max(np.abs(ref)))

    if scenario == "churn":  # sessions dropped at once, their collapse cancelled midway
        for _ in range(12):
            create_session(model)
    before = huge_kib()
    session = create_session(model)
    added = huge_kib() - before
    if scenario == "fork":  # fork while the library's thread may be collapsing
        pid = os.fork()
        if pid == 0:
            child_session = create_session(model)  # collapsed in this thread: no collapser here
            ok = error(session) < 1e-3 and error(child_session) < 1e-3
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    waited = 0.0
    if mode == "0":  # nothing to wait for: a second in which a collapse would have shown
        time.sleep(1.0)
        added = huge_kib() - before
    while mode not in ("0", "sync") and scenario == "plain" and added < 8 * 1024 and waited < 60:
        time.sleep(0.05)
        waited += 0.05
        added = huge_kib() - before
    tol = 1e-4 if dtype == np.float32 else 3e-2
    result = {"added_kib": added, "waited_s": waited, "rel_err": error(session), "tol": tol}
    print(json.dumps(result))
    """
)


def _collapse_supported() -> bool:
    """Whether this kernel collapses an anonymous mapping into huge pages (MADV_COLLAPSE)."""
    if not sys.platform.startswith("linux"):
        return False
    size = 6 * MIB  # holds at least one aligned 2 MiB block
    region = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    buffer = (ctypes.c_char * size).from_buffer(region)
    try:
        for offset in range(0, size, mmap.PAGESIZE):
            region[offset] = 1
        start = ctypes.addressof(buffer)
        first = (start + 2 * MIB - 1) & ~(2 * MIB - 1)
        return madvise_collapse(first, 2 * MIB)
    finally:
        del buffer
        region.close()


def _thp_mode() -> str:
    """The bracketed word of /sys/.../transparent_hugepage/enabled ("" if unreadable)."""
    try:
        text = _THP_ENABLED.read_text()
    except OSError:
        return ""
    return text[text.find("[") + 1 : text.find("]")] if "[" in text else ""


def _run_child(scenario: str, dtype: str, n: int, k: int, mode: str | None) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, scenario, dtype, str(n), str(k)],
        capture_output=True,
        text=True,
        env=huge_pages_environment(mode),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


needs_collapse = pytest.mark.skipif(
    not _collapse_supported(), reason="this kernel does not collapse to huge pages (MADV_COLLAPSE)"
)

# W of 12 MiB in both types: at least 4 aligned 2 MiB blocks lie wholly inside it wherever it lands.
CASES = [("float32", 3072, 1024), ("float16", 3072, 2048)]


@needs_collapse
@pytest.mark.parametrize("mode", [None, "sync"], ids=["background", "sync"])
@pytest.mark.parametrize(("dtype", "n", "k"), CASES)
def test_constant_w_is_collapsed_and_values_unchanged(
    dtype: str, n: int, k: int, mode: str | None
) -> None:
    result = _run_child("plain", dtype, n, k, mode)
    if result["added_kib"] < 8 * 1024 and not _collapse_supported():
        pytest.skip("the kernel has stopped collapsing (no free huge page now)")
    assert result["added_kib"] >= 8 * 1024, result
    if mode == "sync":
        assert result["waited_s"] == 0, result  # collapsed before create_session returned
    assert result["rel_err"] <= result["tol"], result


@needs_collapse
@pytest.mark.skipif(
    _thp_mode() == "always", reason="with THP 'always', ORT's own buffers get huge pages too"
)
def test_opt_out_leaves_pages_alone() -> None:
    result = _run_child("plain", "float32", 3072, 1024, "0")
    assert result["added_kib"] < 2 * 1024, result
    assert result["rel_err"] <= result["tol"], result


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork and /proc: Linux")
@pytest.mark.parametrize("scenario", ["churn", "fork"])
def test_cancelled_and_forked_collapses_keep_results(scenario: str) -> None:
    """Sessions dropped while their W is collapsed, or a fork during the collapse: no hang (the
    child's timeout), no crash, the same numbers."""
    result = _run_child(scenario, "float32", 3072, 1024, None)
    assert result["rel_err"] <= result["tol"], result


@needs_collapse
def test_bench_huge_pages_cell(tmp_path: Path) -> None:
    """One cell of benchmarks/bench_huge_pages.py in its own process: the collapsed session's W
    is in huge pages and every ratio is a timing."""
    out = tmp_path / "cell.json"
    command = [
        sys.executable, "-m", "benchmarks.bench_huge_pages", "--worker", "avx512",
        "--cell", "256,8192,2,plain,1", "--worker-output", str(out),
        "--cell-seconds", "0.05", "--min-runs", "3", "--max-runs", "5",
    ]  # fmt: skip
    env = huge_pages_environment(None)
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=300, cwd=Path(__file__).parents[1]
    )
    assert done.returncode == 0, done.stderr[-2000:]
    cell = json.loads(out.read_text())
    assert (cell["k"], cell["n"], cell["m"], cell["view"]) == (256, 8192, 2, "plain")
    if cell["icl_collapsed_mib"] < 4 and not _collapse_supported():
        pytest.skip("the kernel has stopped collapsing (no free huge page now)")
    assert 4 <= cell["icl_collapsed_mib"] <= cell["w_mib"]
    for key in ("small_over_ort", "huge_over_ort", "huge_over_small", "all_huge_over_ort"):
        median, p10, p90 = cell[key]
        assert 0 < p10 <= median <= p90, (key, cell[key])
    assert cell["rounds"][0] >= 3
