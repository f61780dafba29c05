"""Builds examples/cpp/run_model.cc (the Deploy section's C++ host) for tests and benchmarks."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import onnxruntime

from icl_onnx.testing.clients import run

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "cpp" / "run_model.cc"


def ort_include_dir() -> Path:
    """The headers the op library was built with (CMake's ORT_INCLUDE_DIR), fetched if needed."""
    if os.environ.get("ICL_ONNX_ORT_INCLUDE_DIR"):
        return Path(os.environ["ICL_ONNX_ORT_INCLUDE_DIR"])
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "icl-onnx"
    out = run(
        [sys.executable, str(ROOT / "custom_ops/cmake/fetch_ort_headers.py"),
         str(cache / "onnxruntime-1.21-include")],
        timeout=600,
    )  # fmt: skip
    return Path(out.strip().splitlines()[-1])


def build_example(out: Path) -> Path:
    """Compiles run_model.cc against the wheel's libonnxruntime (linked through a symlink)."""
    capi = Path(onnxruntime.__file__).parent / "capi"
    wheel_lib = next(capi.glob("libonnxruntime.so.1.*"))
    libdir = out / "lib"
    libdir.mkdir()
    for name in ("libonnxruntime.so", "libonnxruntime.so.1"):  # the link name and the SONAME
        (libdir / name).symlink_to(wheel_lib)
    exe = out / "run_model"
    run(
        ["g++", "-std=c++17", "-O1", "-Wall", "-Werror", str(EXAMPLE),
         "-I", str(ort_include_dir()), "-L", str(libdir), "-lonnxruntime",
         f"-Wl,-rpath,{libdir}", "-o", str(exe)],
        timeout=600,
    )  # fmt: skip
    return exe
