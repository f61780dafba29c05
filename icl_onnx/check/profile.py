"""Reading an ONNX Runtime profile (``enable_profiling``): which provider ran each node."""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

from icl_onnx.ops import GATHER, MATMUL

__all__ = ["ICL_OPS", "node_providers"]

#: Op types of the ICL operators.
ICL_OPS = (MATMUL, GATHER)

_SUFFIX = "_kernel_time"


def node_providers(profile_path: str | os.PathLike) -> tuple[dict[str, tuple[str, str]], dict]:
    """Returns where each node ran, from an ORT profile JSON file.

    Returns:
        ``({node name: (op type, provider)}, {provider: number of nodes})``, each node counted
        once however many times it ran.
    """
    with open(profile_path) as f:
        events: list[dict[str, Any]] = json.load(f)
    nodes: dict[str, tuple[str, str]] = {}
    for event in events:
        args = event.get("args") or {}
        if event.get("cat") != "Node" or "provider" not in args:
            continue
        name = event.get("name", "")
        if name.endswith(_SUFFIX):
            name = name[: -len(_SUFFIX)]
        nodes[name] = (args.get("op_name", ""), args["provider"])
    counts = Counter(provider for _, provider in nodes.values())
    return nodes, dict(counts)
