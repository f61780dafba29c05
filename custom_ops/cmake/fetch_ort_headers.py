"""Fetch and cache the ONNX Runtime C/C++ headers (Debian's libonnxruntime-dev).

pip wheels of onnxruntime ship no headers. Debian's ``libonnxruntime-dev`` (1.21, C API
version 21) has them; a library built against API 21 loads in every later ORT release.
The package is downloaded with ``apt-get download`` under a private apt configuration whose
mirror is read from this machine's own apt sources. Nothing unsigned is accepted: the
sources entry is ``signed-by`` this machine's Debian archive keyring, so ``apt-get update``
verifies the suite's Release signature and apt checks the package against the signed
index; then the .deb's sha256 is compared with the one pinned here before ``dpkg -x``
unpacks it and its ``include/onnxruntime`` folder is cached. Prints the cached include folder.

Usage: python fetch_ort_headers.py CACHE_DIR
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile

PACKAGE = "libonnxruntime-dev"
VERSION = "1.21.0+dfsg-1"
SUITE = "trixie"
# sha256 of libonnxruntime-dev_1.21.0+dfsg-1_amd64.deb as Debian trixie ships it.
DEB_SHA256 = "14f7d959d5deacbcf1504830d4189f91fc67382b399ed9ae9d3aa9c4050ced08"
# The Debian archive keyring (trixie's Release is signed by the trixie and bookworm archive
# keys, both in it since debian-archive-keyring 2023.3 of bookworm).
KEYRINGS = ("/usr/share/keyrings/debian-archive-keyring.gpg",)
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


def _keyring() -> str:
    """Returns this machine's Debian archive keyring."""
    for path in KEYRINGS:
        if os.path.isfile(path):
            return path
    raise SystemExit(
        f"fetch_ort_headers: no Debian archive keyring ({', '.join(KEYRINGS)}); install "
        "debian-archive-keyring or set ICL_ONNX_ORT_INCLUDE_DIR to a folder holding "
        "onnxruntime_c_api.h"
    )


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(cache_dir: str) -> str:
    mirrors = _debian_mirrors()
    if not mirrors:
        raise SystemExit(
            "fetch_ort_headers: no Debian mirror in /etc/apt sources; "
            "set ICL_ONNX_ORT_INCLUDE_DIR to a folder holding onnxruntime_c_api.h"
        )
    keyring = _keyring()
    with tempfile.TemporaryDirectory(prefix="icl-ort-apt-") as tmp:
        os.makedirs(f"{tmp}/lists/partial")
        os.makedirs(f"{tmp}/cache/archives/partial")
        with open(f"{tmp}/sources.list", "w", encoding="utf-8") as f:
            for uri in mirrors:
                f.write(f"deb [signed-by={keyring}] {uri} {SUITE} main\n")
        opts = [
            f"-oDir::Etc::SourceList={tmp}/sources.list",
            "-oDir::Etc::SourceParts=/dev/null",
            f"-oDir::State::Lists={tmp}/lists",
            f"-oDir::Cache={tmp}/cache",
            "-oAPT::Architecture=amd64",
            "-oAcquire::AllowInsecureRepositories=false",
            "-oAcquire::AllowDowngradeToInsecureRepositories=false",
            "-oAPT::Get::AllowUnauthenticated=false",
            "-oAPT::Sandbox::User=root",
            "-oDebug::NoLocking=1",
        ]
        # Insecure repositories refused: update fails when the Release signature does not
        # verify with the keyring, and download then finds no package.
        subprocess.run(["apt-get", *opts, "update"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(
            ["apt-get", *opts, "download", f"{PACKAGE}={VERSION}"],
            check=True,
            cwd=tmp,
            stdout=subprocess.DEVNULL,
        )
        debs = glob.glob(f"{tmp}/{PACKAGE}_*.deb")
        if len(debs) != 1:
            raise SystemExit(f"fetch_ort_headers: apt-get download {PACKAGE} produced {debs}")
        digest = _sha256(debs[0])
        if digest != DEB_SHA256:
            raise SystemExit(
                f"fetch_ort_headers: {os.path.basename(debs[0])} has sha256 {digest}, "
                f"expected {DEB_SHA256}; not unpacking it"
            )
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
