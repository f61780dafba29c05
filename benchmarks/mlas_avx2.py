"""A copy of the installed onnxruntime whose MLAS kernels stop at AVX2 (for benchmarks only).

ICL's AVX2 kernels (``ICL_CPU_ISA=avx2``) are meant for machines without AVX-512, where ORT's
MLAS runs its AVX2/FMA3 kernels. MLAS picks its kernels once from CPUID and has no switch to
cap them, so on an AVX-512 machine the avx2 grid of ``bench_matmul`` would compare ICL's AVX2
kernels with MLAS's AVX-512 ones. This module copies the onnxruntime package and, in each of
its native libraries, replaces the one conditional jump into MLAS's AVX-512 set-up (taken
when CPUID leaf 7 reports AVX512F and XCR0 enables its state) with a no-op of the same
length, so MLAS keeps the AVX2/FMA3 choices it has made just before. Nothing else changes.

The jump is found by its instruction bytes, ``test $0x10000, %r32d; je +n; mov %r8, %rax;
not %rax; test $0xe0, %al; je rel32`` (onnxruntime 1.32's x86-64 wheel); where it is not
exactly once in a library (another build), no copy is made and the caller is told why.
Run a child process with ``PYTHONPATH`` set to the returned folder to import the copy.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

# test $0x10000,%r?d (CPUID.7:EBX.AVX512F); je +n; mov %r8,%rax; not %rax; test $0xe0,%al
# (XCR0's opmask and ZMM state); then the jump into the AVX-512 set-up: je rel32.
_AVX512_BRANCH = re.compile(
    rb"\x41?\xf7[\xc0-\xc7]\x00\x00\x01\x00\x74.\x4c\x89\xc0\x48\xf7\xd0\xa8\xe0(\x0f\x84)....",
    re.DOTALL,
)
_NOP6 = b"\x66\x0f\x1f\x44\x00\x00"  # nopw 0x0(%rax,%rax,1): the length of je rel32


@dataclass(frozen=True)
class CappedOrt:
    """The outcome: ``path`` (a folder for PYTHONPATH) or ``reason`` why there is none."""

    path: Path | None
    reason: str = ""


def _native_libraries(package: Path) -> list[Path]:
    capi = package / "capi"
    return sorted(
        p
        for p in capi.iterdir()
        if p.name.startswith(("libonnxruntime.so", "onnxruntime_pybind11_state"))
        and not p.is_symlink()
    )


def patch_library(data: bytes) -> bytes | None:
    """``data`` with MLAS's AVX-512 branch turned into a no-op, or None if not found once."""
    matches = list(_AVX512_BRANCH.finditer(data))
    if len(matches) != 1:
        return None
    start = matches[0].start(1)
    return data[:start] + _NOP6 + data[start + len(_NOP6) :]


def capped_onnxruntime(cache: Path | None = None) -> CappedOrt:
    """The folder holding a capped copy of the installed onnxruntime (made once, then reused).

    Args:
        cache: where copies are kept; default the system temporary folder.
    """
    import onnxruntime

    package = Path(onnxruntime.__file__).parent
    libraries = _native_libraries(package)
    if not libraries:
        return CappedOrt(None, f"no native library found in {package / 'capi'}")
    digest = hashlib.sha256()
    for lib in libraries:
        stat = lib.stat()
        digest.update(f"{lib.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    root = Path(cache or tempfile.gettempdir()) / (
        f"icl-onnx-ort-avx2-{onnxruntime.__version__}-{digest.hexdigest()[:12]}"
    )
    if (root / "onnxruntime" / "capi").is_dir():
        return CappedOrt(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        copy = work / "onnxruntime"
        shutil.copytree(package, copy, symlinks=True)
        for lib in libraries:
            patched = patch_library((copy / "capi" / lib.name).read_bytes())
            if patched is None:
                return CappedOrt(
                    None,
                    f"MLAS's AVX-512 branch not found exactly once in {lib.name} "
                    f"(onnxruntime {onnxruntime.__version__}): no capped copy",
                )
            (copy / "capi" / lib.name).write_bytes(patched)
        try:
            os.replace(work, root)
        except OSError:  # another process made it first
            if not (root / "onnxruntime" / "capi").is_dir():
                raise
        return CappedOrt(root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
