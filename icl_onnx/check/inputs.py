"""Input sets for ``check``: seeded random values that respect dtypes, or values from a file.

Dynamic dimensions take their value from ``input_shapes``, else as :mod:`icl_onnx.check.dims`
decides (one value per symbol; a decoder gets a non-empty past: 8 cached + 8 new tokens).
Inputs that index a Gather (also through Cast, Unsqueeze, ... or ``ai.icl::IclGather``) get
valid token ids; attention masks are all ones, position ids follow the mask, and a merged
decoder's ``use_cache_branch`` is true, unless ``val_ranges`` names them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from icl_onnx.check.dims import (
    DEFAULT_DIM,
    CacheGeometry,
    DimResolver,
    cache_geometry,
    is_cache_input,
)
from icl_onnx.check.model_info import ModelInfo, TensorInfo
from icl_onnx.errors import IclArgumentError

__all__ = [
    "DEFAULT_DIM",
    "DEFAULT_FLOAT_RANGE",
    "DEFAULT_INT_RANGE",
    "resolve_shapes",
    "make_inputs",
    "describe_inputs",
    "save_inputs",
    "load_inputs",
]

#: Default range of float inputs: uniform in [lo, hi).
DEFAULT_FLOAT_RANGE = (-1.0, 1.0)
#: Default range of integer inputs that index no Gather: uniform in [lo, hi], both included.
DEFAULT_INT_RANGE = (0, 1)

InputSet = dict[str, np.ndarray]


def resolve_shapes(
    inputs: Sequence[TensorInfo],
    input_shapes: Mapping[str, Sequence[int]],
    cache: CacheGeometry | None = None,
) -> dict[str, tuple[int, ...]]:
    """Returns a concrete shape for each input.

    Args:
        inputs: the model's inputs.
        input_shapes: shapes given by the user, by input name.
        cache: head count and head size for symbolic dims of KV-cache inputs.

    Raises:
        IclArgumentError: a shape names no input, has the wrong rank, or contradicts a fixed dim.
    """
    by_name = {i.name: i for i in inputs}
    unknown = sorted(set(input_shapes) - set(by_name))
    if unknown:
        raise IclArgumentError(
            "input_shapes",
            f"names {', '.join(unknown)}, not an input of the model (inputs: {', '.join(by_name)})",
        )
    fixed: dict[str, int] = {}
    for name, shape in input_shapes.items():
        declared = by_name[name].shape
        if declared and len(declared) != len(shape):
            raise IclArgumentError(
                "input_shapes",
                f"{name}: rank {len(shape)} but the model declares {_fmt_shape(declared)}",
            )
        for want, got in zip(declared, shape, strict=False):
            if isinstance(want, int) and want != got:
                raise IclArgumentError(
                    "input_shapes",
                    f"{name}: {_fmt_shape(shape)} contradicts the model's "
                    f"fixed shape {_fmt_shape(declared)}",
                )
            if isinstance(want, str):
                fixed.setdefault(want, int(got))
    if cache is not None:  # head dims of KV-cache inputs, unless the user fixed them
        for info in inputs:
            if is_cache_input(info.name, len(info.shape)):
                for axis, size in ((1, cache.heads), (3, cache.head_size)):
                    if isinstance(info.shape[axis], str):
                        fixed.setdefault(info.shape[axis], size)
    symbols = [d for info in inputs for d in info.shape if isinstance(d, str)]
    resolver = DimResolver(fixed, symbols)
    shapes: dict[str, tuple[int, ...]] = {}
    for info in inputs:
        if info.name in input_shapes:
            shapes[info.name] = tuple(int(d) for d in input_shapes[info.name])
            continue
        shapes[info.name] = tuple(
            d if isinstance(d, int) else resolver.value(d) if isinstance(d, str) else DEFAULT_DIM
            for d in info.shape
        )
    return shapes


def _fmt_shape(shape: Sequence[Any]) -> str:
    return "x".join(str(d) if d is not None else "?" for d in shape) or "scalar"


def value_range(
    info: TensorInfo,
    token_rows: int | None,
    val_ranges: Mapping[str | None, tuple[float, float]],
) -> tuple[float, float]:
    """Returns the value range of one input: named range, token ids, default range, dtype default.

    Args:
        info: the input.
        token_rows: rows of the table the input indexes, or None.
        val_ranges: ranges by input name; the key None is the default for every other input.
    """
    if info.name in val_ranges:
        return val_ranges[info.name]
    if token_rows is not None:
        return (0, token_rows - 1)
    if None in val_ranges:
        return val_ranges[None]
    if info.dtype.kind in "iub":
        return DEFAULT_INT_RANGE
    return DEFAULT_FLOAT_RANGE


def make_inputs(
    info: ModelInfo,
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    val_ranges: Mapping[str | None, tuple[float, float]] | None = None,
    iterations: int = 1,
    seed: int = 0,
) -> list[InputSet]:
    """Returns ``iterations`` seeded random input sets for a model.

    Integer ranges include both ends; float ranges are ``[lo, hi)``; bool inputs are fair coins
    unless a range is given.

    Raises:
        IclArgumentError: a range names no input or is empty, or a shape is invalid.
    """
    val_ranges = dict(val_ranges or {})
    names = {i.name for i in info.inputs}
    unknown = sorted(k for k in val_ranges if k is not None and k not in names)
    if unknown:
        raise IclArgumentError(
            "val_ranges",
            f"names {', '.join(unknown)}, not an input of the model "
            f"(inputs: {', '.join(sorted(names))})",
        )
    for key, (lo, hi) in val_ranges.items():
        if lo > hi:
            raise IclArgumentError(
                "val_ranges", f"{key or ''}: [{lo},{hi}] is empty; write [lo,hi]"
            )
    shapes = resolve_shapes(info.inputs, input_shapes or {}, cache_geometry(info.path))
    rng = np.random.default_rng(seed)
    sets: list[InputSet] = []
    for _ in range(iterations):
        feed: InputSet = {}
        for tensor in info.inputs:
            lo, hi = value_range(tensor, info.token_inputs.get(tensor.name), val_ranges)
            feed[tensor.name] = _random(rng, tensor.dtype, shapes[tensor.name], lo, hi)
        for tensor in info.inputs:
            if tensor.name not in val_ranges and tensor.name not in info.token_inputs:
                value = _decoder_value(tensor, shapes, feed)
                if value is not None:
                    feed[tensor.name] = value
        sets.append(feed)
    return sets


def _role(name: str) -> str | None:
    """The decoder role of an input by its name: ``mask``, ``positions``, ``branch`` or None."""
    lower = name.lower()
    if "attention_mask" in lower:
        return "mask"
    if lower.endswith("position_ids"):
        return "positions"
    if lower == "use_cache_branch":
        return "branch"
    return None


_ROLE_SOURCES = {
    "mask": "all ones",
    "positions": "from the mask",
    "branch": "true",
}


def _decoder_role(tensor: TensorInfo, shape: tuple[int, ...]) -> str | None:
    """The decoder role whose value ``_decoder_value`` makes for this input, if any."""
    role = _role(tensor.name)
    if role == "mask":
        return role
    if role == "branch" and tensor.dtype.kind in "biu":
        return role
    if role == "positions" and tensor.dtype.kind in "iu" and shape:
        return role
    return None


def _decoder_value(
    tensor: TensorInfo, shapes: Mapping[str, tuple[int, ...]], feed: InputSet
) -> np.ndarray | None:
    """A mask of ones, positions that follow the mask, or a true cache branch; else None."""
    shape = shapes[tensor.name]
    role = _decoder_role(tensor, shape)
    if role in ("mask", "branch"):
        return np.ones(shape, dtype=tensor.dtype)
    if role != "positions":
        return None
    mask = feed.get("attention_mask")
    length = shape[-1]
    if mask is not None and mask.ndim == 2 and mask.shape[-1] >= length:
        positions = np.maximum(np.cumsum(mask.astype(np.int64), axis=-1) - 1, 0)
        positions = positions[: shape[0], -length:] if len(shape) == 2 else positions[0, -length:]
    else:
        positions = np.arange(length, dtype=np.int64)
    return np.broadcast_to(positions, shape).astype(tensor.dtype)


def _random(rng: np.random.Generator, dtype: np.dtype, shape, lo: float, hi: float) -> np.ndarray:
    if dtype == np.bool_:
        return rng.integers(int(lo), int(hi), size=shape, endpoint=True).astype(np.bool_)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        lo_i, hi_i = max(int(np.ceil(lo)), info.min), min(int(np.floor(hi)), info.max)
        return rng.integers(lo_i, hi_i, size=shape, endpoint=True, dtype=np.int64).astype(dtype)
    if dtype.kind in "fV" or dtype.name == "bfloat16":
        return rng.uniform(lo, hi, size=shape).astype(dtype)
    raise IclArgumentError(
        "load_inputs_from", f"is needed: inputs of type {dtype} cannot be made at random"
    )


def describe_inputs(
    info: ModelInfo,
    sets: Sequence[InputSet],
    val_ranges: Mapping[str | None, tuple[float, float]] | None,
    loaded: bool,
) -> dict[str, dict[str, Any]]:
    """Returns, for each input, its dtype, shape and range (or ``"loaded"``) for the report."""
    out: dict[str, dict[str, Any]] = {}
    for tensor in info.inputs:
        first = sets[0][tensor.name]
        entry: dict[str, Any] = {"dtype": str(first.dtype), "shape": list(first.shape)}
        if loaded:
            entry["source"] = "loaded"
        else:
            rows = info.token_inputs.get(tensor.name)
            fixed = tensor.name in (val_ranges or {})
            role = None if fixed else _decoder_role(tensor, first.shape)
            entry["range"] = list(value_range(tensor, rows, val_ranges or {}))
            if rows is not None and not fixed:
                entry["source"] = "token ids"
            elif role is not None and first.size:
                entry["source"] = _ROLE_SOURCES[role]
                number = int if first.dtype.kind in "biu" else float
                entry["range"] = [number(first.min()), number(first.max())]
            else:
                entry["source"] = "random"
        out[tensor.name] = entry
    return out


def save_inputs(path: str | os.PathLike, sets: Sequence[InputSet]) -> None:
    """Saves input sets to an ``.npz``: plain input names for one set, ``"<i>/<name>"`` for more."""
    arrays: dict[str, np.ndarray] = {}
    for i, feed in enumerate(sets):
        for name, value in feed.items():
            arrays[name if len(sets) == 1 else f"{i}/{name}"] = value
    try:
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    except OSError as e:
        raise IclArgumentError("path", f"{path}: cannot write ({e.strerror})") from None


def load_inputs(path: str | os.PathLike, info: ModelInfo) -> list[InputSet]:
    """Loads input sets written by ``save_inputs`` (or any npz keyed by input name).

    Raises:
        IclArgumentError: the file is missing or unreadable, lacks an input, or a dtype or rank
            does not match the model.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise IclArgumentError("path", f"{path}: no such file") from None
    except Exception as e:
        raise IclArgumentError("path", f"{path}: not an .npz file ({e})") from None
    names = [t.name for t in info.inputs]
    if all("/" in k and k.split("/", 1)[0].isdigit() for k in arrays) and arrays:
        count = 1 + max(int(k.split("/", 1)[0]) for k in arrays)
        sets = [
            {k.split("/", 1)[1]: v for k, v in arrays.items() if int(k.split("/", 1)[0]) == i}
            for i in range(count)
        ]
    else:
        sets = [arrays]
    for i, feed in enumerate(sets):
        missing = [n for n in names if n not in feed]
        if missing:
            raise IclArgumentError(
                "path",
                f"{path}: set {i} lacks {', '.join(missing)} "
                f"(has {', '.join(sorted(feed)) or 'nothing'})",
            )
        for tensor in info.inputs:
            value = feed[tensor.name]
            if value.dtype != tensor.dtype:
                raise IclArgumentError(
                    "path",
                    f"{path}: {tensor.name} is {value.dtype}, the model wants {tensor.dtype}",
                )
            if tensor.shape and len(tensor.shape) != value.ndim:
                raise IclArgumentError(
                    "path",
                    f"{path}: {tensor.name} has rank {value.ndim}, the model "
                    f"wants {_fmt_shape(tensor.shape)}",
                )
        sets[i] = {n: feed[n] for n in names}
    return sets
