"""The wheel installs and runs where nothing can build: a fresh venv, no compiler, no sources.

``make wheel`` writes ``dist/icl_onnx-VERSION-py3-none-manylinux_*_x86_64.whl`` (``make test``
builds it before pytest). Here it is installed with pip into a new venv, its dependencies
pulled from the package registry (pip's own cache serves repeat runs); then ``icl-onnx
optimize`` and a session with the wheel's op library run from a temporary folder, in an
environment whose PATH is that venv's ``bin`` alone (no compiler, no CMake, no make) and that
names no source tree (no PYTHONPATH, no ``ICL_ONNX_LIBRARY``, HOME a new folder).
"""

from __future__ import annotations

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

pytestmark = pytest.mark.wheel

ROOT = Path(__file__).resolve().parents[1]
#: The wheel's tag promises this glibc; the library may need no newer symbol version.
MANYLINUX_GLIBC = (2, 28)
BUILD_TOOLS = ("cc", "gcc", "c++", "g++", "clang", "cmake", "ninja", "nvcc", "make", "zig")

_RUN = textwrap.dedent(
    """
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
    """
)


@pytest.fixture(scope="module")
def wheel() -> Path:
    found = sorted(ROOT.glob("dist/icl_onnx-*-py3-none-manylinux_*_x86_64.whl"))
    if len(found) != 1:
        pytest.fail(f"expected one wheel in dist/, found {found}: run `make wheel`", pytrace=False)
    return found[0]


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


def test_wheel_library_needs_no_glibc_newer_than_its_tag(wheel, tmp_path):
    assert f"manylinux_{MANYLINUX_GLIBC[0]}_{MANYLINUX_GLIBC[1]}_x86_64" in wheel.name
    library = tmp_path / "libicl_ops.so"
    library.write_bytes(zipfile.ZipFile(wheel).read("icl_onnx/_lib/libicl_ops.so"))
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.fail("objdump (binutils) is needed to read the library's symbol versions")
    symbols = subprocess.run(
        [objdump, "-T", str(library)], capture_output=True, text=True, check=True
    ).stdout
    versions = {(int(a), int(b)) for a, b in re.findall(r"GLIBC_(\d+)\.(\d+)", symbols)}
    assert versions and max(versions) <= MANYLINUX_GLIBC, sorted(versions)
    assert "RegisterCustomOps" in symbols


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
    package, library = (Path(line) for line in run.stdout.split())
    site = venv.resolve() / "lib"
    assert package.is_relative_to(site) and library.is_relative_to(site), (package, library)
    assert library.name == "libicl_ops.so"
    original, optimized = np.load(work / "original.npy"), np.load(work / "optimized.npy")
    assert original.shape == optimized.shape == (2, 3, V)
    np.testing.assert_allclose(optimized, original, rtol=1e-5, atol=1e-5)
