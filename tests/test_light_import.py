"""The runtime helpers need only onnxruntime and numpy (no onnx, onnx-ir or torch)."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from builders import IR_VERSION
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh

import icl_onnx

BLOCKED = ["onnx", "onnx_ir", "onnxscript", "torch", "transformers", "ml_dtypes", "rich"]

# Runs in a fresh interpreter: any import of a blocked package fails, as if it were absent.
SCRIPT = """
import importlib.abc, json, sys
BLOCKED = set(json.loads(sys.argv[1]))

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None

sys.meta_path.insert(0, Blocker())
import numpy as np
import icl_onnx

x = np.arange(6, dtype=np.float32).reshape(2, 3)
options = icl_onnx.session_options()
session = icl_onnx.create_session(sys.argv[2])
(y,) = session.run(None, {"x": x})
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print(json.dumps({"y": y.tolist(), "library": icl_onnx.library_path(), "loaded": loaded}))
"""


def _icl_matmul_model(path: Path, w: np.ndarray) -> None:
    """``y = x @ W^T`` through IclMatMul(transpose=1) on the stored ``W``."""
    node = h.make_node("IclMatMul", ["x", "W"], ["y"], domain="ai.icl", transpose=1)
    graph = h.make_graph(
        [node],
        "g",
        [h.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [h.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        [nh.from_array(w, "W")],
    )
    model = h.make_model(
        graph,
        opset_imports=[h.make_opsetid("", 18), h.make_opsetid("ai.icl", 1)],
        ir_version=IR_VERSION,
    )
    onnx.save(model, str(path))


def test_runtime_helpers_run_without_onnx_onnx_ir_or_torch(tmp_path, icl_library):
    w = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    _icl_matmul_model(tmp_path / "m.onnx", w)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(BLOCKED), str(tmp_path / "m.onnx")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["loaded"] == []
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(np.array(result["y"]), x @ w.T, rtol=1e-6)
    assert Path(result["library"]).is_file()


def test_every_public_name_resolves_after_every_submodule_is_imported():
    """A submodule import must not shadow the public function of the same name."""
    for info in pkgutil.walk_packages(icl_onnx.__path__, "icl_onnx."):
        if not info.name.endswith(("_worker", "cuda_harness", "__main__")):
            importlib.import_module(info.name)
    for name in icl_onnx.__all__:
        value = getattr(icl_onnx, name)
        assert not isinstance(value, type(icl_onnx)), f"icl_onnx.{name} is a module"
    assert callable(icl_onnx.optimize) and callable(icl_onnx.export)


def test_a_submodule_is_an_attribute_after_a_plain_import():
    """``icl_onnx.schemas.register()`` (as the README says) works without importing it first."""
    code = (
        "import icl_onnx, onnx.defs; icl_onnx.schemas.register(); "
        "print(onnx.defs.has('IclMatMul', 'ai.icl'))\n"
        "try:\n    icl_onnx.no_such_name\nexcept AttributeError as e:\n    print(e)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == [
        "True",
        "module 'icl_onnx' has no attribute 'no_such_name'",
    ]


NO_RAY = """
import importlib.abc, sys

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("ray", "starlette"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None

sys.meta_path.insert(0, Blocker())
import icl_onnx.serve
from icl_onnx.cli.main import main
sys.exit(main(["serve", sys.argv[1], "--replicas", "2"]))
"""


def test_serve_imports_without_ray_and_its_cli_says_what_to_install(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"")
    proc = subprocess.run(
        [sys.executable, "-c", NO_RAY, str(tmp_path / "m.onnx")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr == "icl-onnx serve: serve needs Ray Serve: pip install 'icl-onnx[serve]'\n"
