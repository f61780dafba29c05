"""Fetch and cache the ONNX Runtime C/C++ headers (Debian's libonnxruntime-dev).

pip wheels of onnxruntime ship no headers. Debian's ``libonnxruntime-dev`` (1.21, C API
version 21) has them; a library built against API 21 loads in every later ORT release.
The package is downloaded with ``apt-get download`` under a private apt configuration
whose mirror is read from this machine's own apt sources, unpacked with ``dpkg -x``, and
its ``include/onnxruntime`` folder cached. Prints the cached include folder.

Usage: python fetch_ort_headers.py CACHE_DIR
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

PACKAGE = "libonnxruntime-dev"
SUITE = "trixie"
REQUIRED = ("onnxruntime_c_api.h", "onnxruntime_cxx_api.h", "onnxruntime_lite_custom_op.h")


def _debian_mirrors() -> list[str]:
    """Returns the Debian archive URIs of this machine's apt sources (no security mirrors)."""
    uris: list[str] = []
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        with open(path, encoding="utf-8") as f:
            for stanza in f.read().split("\n\n"):
                fields = dict(
                    line.split(":", 1)
                    for line in stanza.splitlines()
                    if re.match(r"^\w[\w-]*:", line)
                )
                for uri in fields.get("URIs", "").split():
                    if "debian" in uri and "security" not in uri:
                        uris.append(uri)
    for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[0] == "deb":
                    uri = next((p for p in parts[1:] if "://" in p), "")
                    if "debian" in uri and "security" not in uri:
                        uris.append(uri)
    return list(dict.fromkeys(uris))


def _fetch(cache_dir: str) -> str:
    mirrors = _debian_mirrors()
    if not mirrors:
        raise SystemExit(
            "fetch_ort_headers: no Debian mirror in /etc/apt sources; "
            "set ICL_ONNX_ORT_INCLUDE_DIR to a folder holding onnxruntime_c_api.h"
        )
    with tempfile.TemporaryDirectory(prefix="icl-ort-apt-") as tmp:
        os.makedirs(f"{tmp}/lists/partial")
        os.makedirs(f"{tmp}/cache/archives/partial")
        with open(f"{tmp}/sources.list", "w", encoding="utf-8") as f:
            for uri in mirrors:
                f.write(f"deb [trusted=yes] {uri} {SUITE} main\n")
        opts = [
            f"-oDir::Etc::SourceList={tmp}/sources.list",
            "-oDir::Etc::SourceParts=/dev/null",
            f"-oDir::State::Lists={tmp}/lists",
            f"-oDir::Cache={tmp}/cache",
            "-oAPT::Architecture=amd64",
            "-oAcquire::AllowInsecureRepositories=true",
            "-oAPT::Sandbox::User=root",
            "-oDebug::NoLocking=1",
        ]
        subprocess.run(["apt-get", *opts, "update"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(
            ["apt-get", *opts, "download", PACKAGE], check=True, cwd=tmp, stdout=subprocess.DEVNULL
        )
        debs = glob.glob(f"{tmp}/{PACKAGE}_*.deb")
        if not debs:
            raise SystemExit(f"fetch_ort_headers: apt-get download {PACKAGE} produced no .deb")
        subprocess.run(["dpkg", "-x", debs[0], f"{tmp}/x"], check=True)
        src = f"{tmp}/x/usr/include/onnxruntime"
        staged = f"{cache_dir}.partial"
        shutil.rmtree(staged, ignore_errors=True)
        shutil.copytree(src, staged)
        shutil.rmtree(cache_dir, ignore_errors=True)
        os.replace(staged, cache_dir)
    return cache_dir


def main() -> int:
    """Prints the include folder, fetching the headers first when they are not cached."""
    cache_dir = os.path.abspath(sys.argv[1])
    if not all(os.path.exists(os.path.join(cache_dir, h)) for h in REQUIRED):
        os.makedirs(os.path.dirname(cache_dir), exist_ok=True)
        _fetch(cache_dir)
    print(cache_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
