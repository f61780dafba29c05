"""Greedy decoding on one ONNX Runtime session of a decoder, with or without a KV cache.

The decoders of GenAI and Optimum folders share one convention: inputs ``input_ids``,
``attention_mask``, optionally ``position_ids``, ``past_key_values.{i}.key|value`` and (merged
Optimum decoders) ``use_cache_branch``; outputs ``logits`` and ``present.{i}.key|value``. With a
cache, each step feeds the new tokens and the ``present`` tensors of the step before; without
one, each step runs the whole sequence. The replica runs this on its own session (opened with
``share_across_processes=True``) rather than through ``onnxruntime_genai``, whose sessions
keep their private prepacked copy of the weights.

A batch of prompts decodes together (:func:`greedy_batch`, :func:`decode_steps`): prompts of
different lengths are padded on the left (mask 0, positions counted from each row's first
token). A model written by ``icl-onnx optimize BASE V1..VK --batched-variants`` has one more
input, ``variant_ids`` (one per row: 0 the base, k the k-th variant), fed unchanged at every
step, so each row decodes through its own fine-tune for the whole generation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from icl_onnx.check.dims import CacheGeometry

__all__ = [
    "MAX_NEW_TOKENS",
    "MAX_NEW_TOKENS_UNCACHED",
    "VARIANT_IDS",
    "decode_steps",
    "greedy",
    "greedy_batch",
    "has_cache",
]

#: The most tokens one ``/generate`` request may ask of a decoder with a KV cache.
MAX_NEW_TOKENS = 4096

#: The most tokens a decoder without a cache may generate. Its step k re-runs the whole
#: sequence, so n new tokens cost n times the prompt plus about n**2 / 2 token positions: at 256
#: that is 32768, 8 times the 4096 positions of a cached decoder's longest request, whereas 4096
#: new tokens without a cache would cost 8.4 million (a replica busy for minutes on one request).
MAX_NEW_TOKENS_UNCACHED = 256

#: The input of a batched-variants model that picks each row's variant (int64 ``[batch]``).
VARIANT_IDS = "variant_ids"

_PAST = "past_key_values."
_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
_FLOATS = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def _empty_cache(arg: Any, geometry: CacheGeometry | None, batch: int) -> np.ndarray:
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
    return np.zeros((batch, shape[1], 0, shape[3]), _FLOATS.get(arg.type, np.float32))


def _variant_feed(
    inputs: dict[str, Any], variant_ids: Sequence[int] | None, batch: int
) -> np.ndarray | None:
    """The ``variant_ids`` feed: one id per row (the base, 0, where none are given)."""
    if VARIANT_IDS not in inputs:
        if variant_ids is not None:
            raise ValueError(
                f"the model has no {VARIANT_IDS} input; write one with "
                "`icl-onnx optimize BASE V1 ... --batched-variants`"
            )
        return None
    ids = np.zeros(batch, np.int64) if variant_ids is None else np.asarray(variant_ids, np.int64)
    if ids.shape != (batch,):
        raise ValueError(f"{VARIANT_IDS} needs one id per prompt ({batch}), got {ids.shape}")
    return ids


def decode_steps(
    session: Any,
    prompts: Sequence[Sequence[int]],
    new_tokens: int,
    *,
    variant_ids: Sequence[int] | None = None,
    geometry: CacheGeometry | None = None,
    run_options: Any = None,
    pad_id: int = 0,
) -> Iterator[np.ndarray]:
    """Decodes a batch greedily, yielding each step's ``logits`` ``[batch, tokens, vocab]``.

    The first step runs the (left-padded) prompts, each later one the token every row chose
    (the argmax of its last position) with the cache of the step before. ``new_tokens`` steps
    run in all; the caller may stop early, and may time each step.

    Args:
        session: an ``InferenceSession`` of a decoder (see the module docstring).
        prompts: the token ids of each row's prompt (at least one token each).
        new_tokens: how many steps (tokens per row) to run.
        variant_ids: per row, the variant of a batched-variants model (0: the base); the base
            for every row if None.
        geometry: the cache's head count and size where the inputs leave them symbolic
            (:func:`icl_onnx.check.dims.cache_geometry` reads them from the folder's config).
        run_options: ``onnxruntime.RunOptions`` for every run (an active LoRA adapter, ...).
        pad_id: the token that pads shorter prompts (masked out).

    Raises:
        ValueError: the session is not a decoder of that convention, a prompt is empty, or
            ``variant_ids`` does not fit the model or the batch.
    """
    inputs = {a.name: a for a in session.get_inputs()}
    outputs = [o.name for o in session.get_outputs()]
    if "input_ids" not in inputs or "logits" not in outputs:
        raise ValueError("the decoder needs an input_ids input and a logits output")
    if not prompts or not all(len(p) for p in prompts):
        raise ValueError("every row needs a prompt of at least one token")
    batch, longest = len(prompts), max(len(p) for p in prompts)
    variants = _variant_feed(inputs, variant_ids, batch)
    cache_names = _cache_names(session)
    ids_type = _TYPES.get(inputs["input_ids"].type, np.int64)
    mask = np.zeros((batch, longest), np.int64)
    sequence = np.full((batch, longest), pad_id, np.int64)
    for row, prompt in enumerate(prompts):
        sequence[row, longest - len(prompt) :] = prompt
        mask[row, longest - len(prompt) :] = 1
    past = {n: _empty_cache(inputs[n], geometry, batch) for n in cache_names}
    step_ids = sequence
    for _ in range(new_tokens):
        start = sequence.shape[1] - step_ids.shape[1]
        feeds: dict[str, np.ndarray] = {"input_ids": step_ids.astype(ids_type)}
        if "attention_mask" in inputs:
            feeds["attention_mask"] = mask.astype(_mask_type(inputs))
        if "position_ids" in inputs:
            kind = _TYPES.get(inputs["position_ids"].type, np.int64)
            positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)[:, start:]
            feeds["position_ids"] = positions.astype(kind)
        if "use_cache_branch" in inputs:
            feeds["use_cache_branch"] = np.array([start > 0])
        if variants is not None:
            feeds[VARIANT_IDS] = variants
        feeds.update(past)
        values = dict(zip(outputs, session.run(None, feeds, run_options), strict=True))
        logits = values["logits"]
        yield logits
        chosen = np.argmax(logits[:, -1], axis=-1).astype(np.int64)[:, None]
        sequence = np.concatenate([sequence, chosen], axis=1)
        mask = np.concatenate([mask, np.ones_like(chosen)], axis=1)
        if cache_names:
            past = {n: values["present." + n[len(_PAST) :]] for n in cache_names}
            step_ids = chosen
        else:
            step_ids = sequence


def greedy_batch(
    session: Any,
    prompts: Sequence[Sequence[int]],
    new_tokens: int,
    *,
    variant_ids: Sequence[int] | None = None,
    geometry: CacheGeometry | None = None,
    run_options: Any = None,
) -> list[list[int]]:
    """Generates ``new_tokens`` ids after each prompt of a batch (see :func:`decode_steps`).

    Returns:
        Per row, the generated ids (the prompt excluded).
    """
    steps = decode_steps(
        session,
        prompts,
        new_tokens,
        variant_ids=variant_ids,
        geometry=geometry,
        run_options=run_options,
    )
    chosen = [np.argmax(logits[:, -1], axis=-1) for logits in steps]
    return [[int(step[row]) for step in chosen] for row in range(len(prompts))]


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
        ValueError: the session is not a decoder of that convention, or the prompt is empty.
    """
    return greedy_batch(session, [prompt], new_tokens, geometry=geometry)[0]


def _cache_names(session: Any) -> list[str]:
    return sorted(a.name for a in session.get_inputs() if a.name.startswith(_PAST))


def has_cache(session: Any) -> bool:
    """Whether the decoder session takes a KV cache (``past_key_values.*`` inputs)."""
    return bool(_cache_names(session))


def _mask_type(inputs: dict[str, Any]) -> type:
    return _TYPES.get(inputs["attention_mask"].type, np.int64)
