"""The wheel installs and runs where nothing can build: a fresh venv, no compiler, no sources.

``make wheel`` writes ``dist/icl_onnx-VERSION-py3-none-manylinux_*_x86_64.whl`` (``make test``
builds it before pytest). Here it is installed with pip into a new venv, its dependencies
pulled from the package registry (pip's own cache serves repeat runs); then ``icl-onnx
optimize`` and a session with the wheel's op library run from a temporary folder, in an
environment whose PATH is that venv's ``bin`` alone (no compiler, no CMake, no make) and that
names no source tree (no PYTHONPATH, no ``ICL_ONNX_LIBRARY``, HOME a new folder).

Where nvcc is on PATH the wheel's library carries the CUDA kernels too (nvcc with g++ as host
compiler for the .cu files, zig for the rest, custom_ops/cuda/boundary.cuh); they load lazily,
so the fresh venv, which has no CUDA at all, runs the CPU kernels and maps no CUDA library. The
same wheel build (``build/wheel``) leaves the test-only CUDA harness: its create probe runs the
CUDA kernels' front end on the CPU provider, and the tests that check it in the editable build
are run against it here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from builders import V, tied_model

from icl_onnx.testing import cuda_harness

pytestmark = pytest.mark.wheel

ROOT = Path(__file__).resolve().parents[1]
#: The wheel's tag promises this glibc; the library may need no newer symbol version.
MANYLINUX_GLIBC = (2, 28)
BUILD_TOOLS = ("cc", "gcc", "c++", "g++", "clang", "cmake", "ninja", "nvcc", "make", "zig")
#: `make wheel`'s build folder (WHEEL_BUILD in the Makefile): the harness is left there.
WHEEL_HARNESS = ROOT / "build" / "wheel" / "libicl_cuda_harness.so"
#: The CUDA libraries the op library may open at run time, never at load.
CUDA_LIBRARIES = ("libcuda.so", "libcudart.so", "libcublas")
needs_nvcc = pytest.mark.skipif(
    shutil.which("nvcc") is None, reason="no nvcc on PATH: make wheel built the CPU kernels only"
)
# The tests of the CUDA kernels' front end that need no GPU (test_untrusted_ops.py,
# test_view_attrs.py, test_gather_block_quantized.py: the create probe of the harness).
PROBE_TESTS = (
    "tests/test_untrusted_ops.py",
    "tests/test_view_attrs.py",
    "tests/test_gather_block_quantized.py",
)
PROBE_SELECTION = "cuda_front_end or cuda_kernel_create or cuda_limit or the_cuda_kernel"

_RUN = textwrap.dedent(
    """
    import json
    import sys
    from pathlib import Path
    import numpy as np
    import onnxruntime as ort
    import icl_onnx

    print(Path(icl_onnx.__file__).resolve())
    print(Path(icl_onnx.library_path()).resolve())
    ids = np.array([[3, 0, 63], [5, 5, 1]], np.int64)
    original = ort.InferenceSession("tied.onnx", providers=["CPUExecutionProvider"])
    np.save("original.npy", original.run(None, {"ids": ids})[0])
    optimized = icl_onnx.create_session("opt.onnx")
    np.save("optimized.npy", optimized.run(None, {"ids": ids})[0])
    maps = Path("/proc/self/maps").read_text().splitlines()
    print(json.dumps(sorted({Path(m.split()[-1]).name for m in maps if "/" in m})))
    """
)


@pytest.fixture(scope="module")
def wheel() -> Path:
    found = sorted(ROOT.glob("dist/icl_onnx-*-py3-none-manylinux_*_x86_64.whl"))
    if len(found) != 1:
        pytest.fail(f"expected one wheel in dist/, found {found}: run `make wheel`", pytrace=False)
    return found[0]


@pytest.fixture(scope="module")
def wheel_library(wheel, tmp_path_factory) -> Path:
    """The wheel's op library, extracted into a folder of its own."""
    library = tmp_path_factory.mktemp("library") / "libicl_ops.so"
    library.write_bytes(zipfile.ZipFile(wheel).read("icl_onnx/_lib/libicl_ops.so"))
    return library


def binutils(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} (binutils) is needed to read the wheel's library")
    return path


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A new venv with the wheel installed, its dependencies from the package registry."""
    root = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    subprocess.run(
        [root / "bin" / "python", "-m", "pip", "install", "-q", wheel],
        check=True,
    )
    return root


def test_wheel_holds_the_package_and_the_library_only(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"icl_onnx", f"icl_onnx-{wheel.name.split('-')[1]}.dist-info"}, top
    assert "icl_onnx/_lib/libicl_ops.so" in names
    assert [n for n in names if n.endswith(".so")] == ["icl_onnx/_lib/libicl_ops.so"]
    assert not [n for n in names if "test" in n or "bench" in n or n.endswith((".cc", ".h"))]


def test_wheel_library_needs_no_glibc_newer_than_its_tag(wheel, wheel_library):
    # The CUDA part included: nvcc's g++-compiled objects and the static CUDA runtime.
    assert f"manylinux_{MANYLINUX_GLIBC[0]}_{MANYLINUX_GLIBC[1]}_x86_64" in wheel.name
    symbols = subprocess.run(
        [binutils("objdump"), "-T", str(wheel_library)], capture_output=True, text=True, check=True
    ).stdout
    versions = {(int(a), int(b)) for a, b in re.findall(r"GLIBC_(\d+)\.(\d+)", symbols)}
    assert versions and max(versions) <= MANYLINUX_GLIBC, sorted(versions)
    assert "RegisterCustomOps" in symbols


@needs_nvcc
def test_wheel_library_carries_the_cuda_kernels_and_needs_no_cuda_library(wheel_library):
    sections = subprocess.run(
        [binutils("readelf"), "-S", "-W", str(wheel_library)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert ".nv_fatbin" in sections, "make wheel left the CUDA kernels out although nvcc is here"
    dynamic = subprocess.run(
        [binutils("readelf"), "-d", str(wheel_library)], capture_output=True, text=True, check=True
    ).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+)\]", dynamic)
    assert needed and not [n for n in needed if n.startswith(CUDA_LIBRARIES)], needed


@pytest.fixture(scope="module")
def wheel_harness() -> Path:
    """The CUDA harness of the wheel's build (built with the CUDA kernels, never shipped)."""
    if not WHEEL_HARNESS.is_file():
        pytest.fail(f"{WHEEL_HARNESS} is missing: run `make wheel`", pytrace=False)
    return WHEEL_HARNESS


@needs_nvcc
def test_wheel_harness_reports_its_kernels_and_answers_without_a_gpu(wheel_harness):
    # The harness is linked like the wheel's library (zig, the static CUDA runtime): the
    # runtime inside it answers a call that needs the device, with an error where there is none.
    harness = cuda_harness.CudaHarness(str(wheel_harness))
    assert {800, 900} <= set(harness.arch_list())
    assert harness.cuda_version() >= 12000
    try:
        binary, ptx = harness.loaded_kernel_versions()
    except cuda_harness.HarnessError as e:
        assert re.search(r"driver|no CUDA-capable device", str(e)), str(e)
    else:
        assert binary in (80, 90) and ptx in (80, 90), (binary, ptx)


@needs_nvcc
def test_wheel_harness_passes_the_cuda_front_end_tests(wheel_library, wheel_harness, tmp_path):
    # The probe tests of the editable build, run against the wheel's harness in a child pytest;
    # each hostile model runs in a grandchild, whose exit (ORT unloading the harness) must be
    # clean too.
    env = {
        **os.environ,
        "ICL_ONNX_CUDA_HARNESS": str(wheel_harness),
        "ICL_ONNX_LIBRARY": str(wheel_library),
    }
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"]
        + ["-k", PROBE_SELECTION, "--basetemp", str(tmp_path / "t"), *PROBE_TESTS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert re.fullmatch(r"\d+ passed, \d+ deselected in .*", summary), summary


def test_fresh_venv_optimizes_and_runs_with_no_build_tools(venv, tmp_path):
    path = str(venv / "bin")
    assert [t for t in BUILD_TOOLS if shutil.which(t, path=path)] == []
    env = {"PATH": path, "HOME": str(tmp_path / "home"), "LANG": "C.UTF-8"}
    work = tmp_path / "work"
    work.mkdir()
    onnx.save(tied_model(), work / "tied.onnx")

    optimize = subprocess.run(
        ["icl-onnx", "optimize", "tied.onnx", "-o", "opt.onnx"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert optimize.returncode == 0, optimize.stderr
    model = onnx.load(work / "opt.onnx")
    assert [i.name for i in model.graph.initializer] == ["emb"]
    assert [n.op_type for n in model.graph.node] == ["Gather", "IclMatMul"]

    run = subprocess.run(["python", "-c", _RUN], cwd=work, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    package, library, mapped = run.stdout.splitlines()
    package, library = Path(package), Path(library)
    # The CUDA kernels inside load lazily: a CPU session maps no CUDA library.
    mapped = json.loads(mapped)
    assert "libicl_ops.so" in mapped, mapped
    assert not [m for m in mapped if m.startswith(CUDA_LIBRARIES)], mapped
    site = venv.resolve() / "lib"
    assert package.is_relative_to(site) and library.is_relative_to(site), (package, library)
    assert library.name == "libicl_ops.so"
    original, optimized = np.load(work / "original.npy"), np.load(work / "optimized.npy")
    assert original.shape == optimized.shape == (2, 3, V)
    np.testing.assert_allclose(optimized, original, rtol=1e-5, atol=1e-5)
