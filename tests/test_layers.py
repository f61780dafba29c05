"""The package's imports point one way (docs/design.md "Layers"), and none goes round a circle.

Every ``import`` of every module of ``icl_onnx`` counts, wherever it stands (module level,
inside a function, under ``TYPE_CHECKING``): a circle that only works because one side imports
late is still a circle. A module may import its own layer or a lower one; a new top-level module
or package must be placed in ``LAYERS`` first.
"""

from __future__ import annotations

import ast
from pathlib import Path

import icl_onnx

PACKAGE = Path(icl_onnx.__file__).parent

#: Each top-level module or package of icl_onnx, by layer (lowest first).
LAYERS: list[set[str]] = [
    # the view attributes, the operator names, and helpers every layer may use
    {"views", "ops", "errors", "progress", "tolerance", "block_quant", "model_io", "_proc"},
    # the operator spec and what is built from it; the runtime helpers
    {
        "reference",
        "opspec",
        "schemas",
        "_runtime",
        "_inline_weights",
        "_packed_weights",
        "session_group",
    },
    {"analysis", "shared_store"},  # detection: what is a copy or a view of what
    {"rules"},  # one per consumer op
    {"planning"},  # share sets, cross-model, variants
    {"passes"},
    {"pipeline"},  # the declared pass list
    {"folders", "check", "serve", "verified_export", "torch_export", "hf_folder", "models"},
    {"cli", "__main__", "__init__"},
    {"testing"},  # fixtures of the tests and benchmarks; nothing in the package imports them
]


def _layer_of(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    for index, layer in enumerate(LAYERS):
        if top in layer:
            return index
    raise AssertionError(f"icl_onnx.{top} is in no layer of LAYERS; place it there")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:]) if "." in name else Path()
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


def _imports(path: Path, name: str) -> set[str]:
    """The icl_onnx modules ``path`` (module ``name``) imports, resolved to module names."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "icl_onnx"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.split(".")[0] != "icl_onnx":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if _is_module(sub) else base)
    found.discard(name)
    return found


def _graph() -> dict[str, set[str]]:
    return {
        _module_name(path): _imports(path, _module_name(path))
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def test_every_import_points_to_the_same_layer_or_a_lower_one():
    wrong = [
        f"{module} (layer {_layer_of(module)}) imports {target} (layer {_layer_of(target)})"
        for module, targets in _graph().items()
        for target in sorted(targets)
        if _layer_of(target) > _layer_of(module)
    ]
    assert wrong == []


def test_no_import_circle():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    assert circles == []


def test_the_walk_sees_a_late_import_and_a_type_checking_import(tmp_path):
    # The walk itself: imports inside a function and under TYPE_CHECKING are edges too.
    path = PACKAGE / "planning" / "plan.py"
    assert "icl_onnx.rules.base" in _imports(path, "icl_onnx.planning.plan")
    folders = _imports(PACKAGE / "folders.py", "icl_onnx.folders")
    assert "icl_onnx.pipeline" in folders  # imported inside optimize_folder
    assert _layer_of("icl_onnx.analysis.readers") < _layer_of("icl_onnx.rules.base")
