"""Greedy decoding on one ONNX Runtime session of a decoder, with or without a KV cache.

The decoders of GenAI and Optimum folders share one convention: inputs ``input_ids``,
``attention_mask``, optionally ``position_ids``, ``past_key_values.{i}.key|value`` and (merged
Optimum decoders) ``use_cache_branch``; outputs ``logits`` and ``present.{i}.key|value``. With a
cache, each step feeds the new token and the ``present`` tensors of the step before; without
one, each step runs the whole sequence. The replica runs this on its own session (opened with
``share_across_processes=True``) rather than through ``onnxruntime_genai``, whose sessions
keep their private prepacked copy of the weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from icl_onnx.check.dims import CacheGeometry

__all__ = ["MAX_NEW_TOKENS", "MAX_NEW_TOKENS_UNCACHED", "greedy", "has_cache"]

#: The most tokens one ``/generate`` request may ask of a decoder with a KV cache.
MAX_NEW_TOKENS = 4096

#: The most tokens a decoder without a cache may generate. Its step k re-runs the whole
#: sequence, so n new tokens cost n times the prompt plus about n**2 / 2 token positions: at 256
#: that is 32768, 8 times the 4096 positions of a cached decoder's longest request, whereas 4096
#: new tokens without a cache would cost 8.4 million (a replica busy for minutes on one request).
MAX_NEW_TOKENS_UNCACHED = 256

_PAST = "past_key_values."
_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
_FLOATS = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def _empty_cache(arg: Any, geometry: CacheGeometry | None) -> np.ndarray:
    """A zero-length cache tensor for ``arg`` (``[batch, heads, past, head_size]``).

    Symbolic head counts and sizes take their value from ``geometry``.
    """
    shape = list(arg.shape)
    if len(shape) == 4 and geometry is not None:
        shape[1] = shape[1] if isinstance(shape[1], int) else geometry.heads
        shape[3] = shape[3] if isinstance(shape[3], int) else geometry.head_size
    if len(shape) != 4 or not isinstance(shape[1], int) or not isinstance(shape[3], int):
        raise ValueError(
            f"cache input {arg.name} has shape {shape} and no config states its head count and size"
        )
    return np.zeros((1, shape[1], 0, shape[3]), _FLOATS.get(arg.type, np.float32))


def greedy(
    session: Any,
    prompt: Sequence[int],
    new_tokens: int,
    geometry: CacheGeometry | None = None,
) -> list[int]:
    """Generates ``new_tokens`` ids after ``prompt`` by taking each step's most likely token.

    Args:
        session: an ``InferenceSession`` of a decoder (see the module docstring).
        prompt: the prompt's token ids.
        new_tokens: how many ids to generate.
        geometry: the cache's head count and size where the inputs leave them symbolic
            (:func:`icl_onnx.check.dims.cache_geometry` reads them from the folder's config).

    Returns:
        The generated ids (the prompt excluded).

    Raises:
        ValueError: the session is not a decoder of that convention.
    """
    inputs = {a.name: a for a in session.get_inputs()}
    outputs = [o.name for o in session.get_outputs()]
    if "input_ids" not in inputs or "logits" not in outputs:
        raise ValueError("the decoder needs an input_ids input and a logits output")
    cache_names = _cache_names(session)
    ids_type = _TYPES.get(inputs["input_ids"].type, np.int64)
    past = {n: _empty_cache(inputs[n], geometry) for n in cache_names}
    sequence = [int(t) for t in prompt]
    step_ids = list(sequence)
    generated: list[int] = []
    for _ in range(new_tokens):
        start = len(sequence) - len(step_ids)
        feeds: dict[str, np.ndarray] = {"input_ids": np.array([step_ids], ids_type)}
        if "attention_mask" in inputs:
            feeds["attention_mask"] = np.ones((1, len(sequence)), _mask_type(inputs))
        if "position_ids" in inputs:
            kind = _TYPES.get(inputs["position_ids"].type, np.int64)
            feeds["position_ids"] = np.arange(start, len(sequence), dtype=kind)[None]
        if "use_cache_branch" in inputs:
            feeds["use_cache_branch"] = np.array([start > 0])
        feeds.update(past)
        values = dict(zip(outputs, session.run(None, feeds), strict=True))
        token = int(np.argmax(values["logits"][0, -1]))
        generated.append(token)
        sequence.append(token)
        if cache_names:
            past = {n: values["present." + n[len(_PAST) :]] for n in cache_names}
            step_ids = [token]
        else:
            step_ids = list(sequence)
    return generated


def _cache_names(session: Any) -> list[str]:
    return sorted(a.name for a in session.get_inputs() if a.name.startswith(_PAST))


def has_cache(session: Any) -> bool:
    """Whether the decoder session takes a KV cache (``past_key_values.*`` inputs)."""
    return bool(_cache_names(session))


def _mask_type(inputs: dict[str, Any]) -> type:
    return _TYPES.get(inputs["attention_mask"].type, np.int64)
