"""Values for the symbolic dimensions of a model's inputs, decoders (KV cache) included.

Each symbolic dimension takes one value everywhere. A name gets its value from the user's
``--input-shape``, else by what it names: ``batch`` 1, a past length (``past_sequence_length``)
:data:`DEFAULT_PAST`, another sequence length :data:`DEFAULT_SEQUENCE`, a total length
(``total_sequence_length``) past plus new; a dimension written as an expression
(``past_sequence_length + sequence_length``, ``encoder_sequence_length / 2``) is computed from
its parts. The head count and head size of KV-cache inputs (``past_key_values.0.key``:
``[batch, heads, past, head_size]``) come from the model's static dims or, when symbolic, from
``genai_config.json`` or ``config.json`` beside the model.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from icl_onnx.folders import GENAI_CONFIG, HF_CONFIG

__all__ = [
    "DEFAULT_DIM",
    "DEFAULT_PAST",
    "DEFAULT_SEQUENCE",
    "CacheGeometry",
    "cache_geometry",
    "is_cache_input",
    "DimResolver",
]

#: Value of a dynamic dimension that nothing else fixes.
DEFAULT_DIM = 1
#: Tokens already in the KV cache (so attention over the cache runs).
DEFAULT_PAST = 8
#: New tokens, and the length of any other sequence.
DEFAULT_SEQUENCE = 8

_CACHE_NAME = re.compile(r"(past|cache).*(key|value)|(key|value).*(past|cache)", re.IGNORECASE)
_BINARY: dict[type, Callable[[int, int], int]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.floordiv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}


@dataclasses.dataclass(frozen=True)
class CacheGeometry:
    """Head count and head size of a decoder's KV cache, as its config states them."""

    heads: int
    head_size: int


def is_cache_input(name: str, rank: int) -> bool:
    """Whether an input is a rank-4 KV-cache tensor (``past_key_values.0.key`` and the like)."""
    return rank == 4 and bool(_CACHE_NAME.search(name))


def _first_int(config: Mapping[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _geometry(config: Mapping[str, Any]) -> CacheGeometry | None:
    heads = _first_int(
        config,
        "num_key_value_heads",
        "num_attention_heads",
        "num_heads",
        "n_head",
        "decoder_attention_heads",
    )
    attention_heads = _first_int(
        config, "num_attention_heads", "num_heads", "n_head", "decoder_attention_heads"
    )
    head_size = _first_int(config, "head_size", "head_dim", "d_kv")
    hidden = _first_int(config, "hidden_size", "n_embd", "d_model")
    if head_size is None and hidden and attention_heads:
        head_size = hidden // attention_heads
    return CacheGeometry(heads, head_size) if heads and head_size else None


def cache_geometry(model_path: str | Path) -> CacheGeometry | None:
    """Reads the KV-cache geometry from ``genai_config.json`` or ``config.json`` beside a model.

    Returns None when neither file is there or states it.
    """
    folder = Path(model_path).parent
    for name, section in ((GENAI_CONFIG, ("model", "decoder")), (HF_CONFIG, ())):
        path = folder / name
        if not path.is_file():
            continue
        try:
            config: Any = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for key in section:
            config = config.get(key, {}) if isinstance(config, dict) else {}
        if isinstance(config, dict):
            for candidate in (config, config.get("text_config") or {}):
                found = _geometry(candidate) if isinstance(candidate, dict) else None
                if found:
                    return found
    return None


def _is_expression(name: str) -> bool:
    return bool(re.search(r"[-+*/%()]", name))


def _kind(name: str) -> str:
    """What a symbol names: ``batch``, ``total``, ``past``, ``sequence`` or ``other``."""
    lower = name.lower()
    if "batch" in lower:
        return "batch"
    is_length = "seq" in lower or "len" in lower
    if "total" in lower and is_length:
        return "total"
    if "past" in lower and is_length:
        return "past"
    return "sequence" if is_length else "other"


_DEFAULTS = {"batch": DEFAULT_DIM, "past": DEFAULT_PAST, "sequence": DEFAULT_SEQUENCE}


class DimResolver:
    """Gives each symbolic dimension of a model's inputs one value.

    Args:
        fixed: values the user fixed through ``--input-shape``, by symbol.
        symbols: every symbol the model's inputs use (to find the past and new lengths that a
            total length adds up).
    """

    def __init__(self, fixed: Mapping[str, int], symbols: Sequence[str]) -> None:
        self._values: dict[str, int] = dict(fixed)
        plain = [s for s in [*fixed, *symbols] if not _is_expression(s)]
        past = [s for s in plain if _kind(s) == "past"]
        new = [s for s in plain if _kind(s) == "sequence"]
        self._past = (
            "past_sequence_length" if "past_sequence_length" in past else next(iter(past), None)
        )
        self._new = "sequence_length" if "sequence_length" in new else next(iter(new), None)

    def value(self, symbol: str) -> int:
        """Returns the symbol's value, deciding it on first use."""
        if symbol in self._values:
            return self._values[symbol]
        if _is_expression(symbol):
            result = self._evaluate(symbol)
        else:
            kind = _kind(symbol)
            if kind == "total":
                past = self.value(self._past) if self._past else 0
                new = self.value(self._new) if self._new else DEFAULT_SEQUENCE
                result = past + new
            else:
                result = _DEFAULTS.get(kind, DEFAULT_DIM)
        self._values[symbol] = max(result, 1)
        return self._values[symbol]

    def _evaluate(self, expression: str) -> int:
        try:
            tree = ast.parse(expression, mode="eval")
            return self._eval_node(tree.body)
        except (SyntaxError, ValueError, ZeroDivisionError):
            return DEFAULT_DIM

    def _eval_node(self, node: ast.AST) -> int:
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return _BINARY[type(node.op)](self._eval_node(node.left), self._eval_node(node.right))
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name):
            return self.value(node.id)
        raise ValueError(f"unsupported dimension expression {ast.dump(node)}")
