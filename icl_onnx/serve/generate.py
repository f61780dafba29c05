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

On a CUDA session the cache stays on the device between steps: each step's ``present``
``OrtValue``s are bound (``session.io_binding()``) as the next step's ``past`` inputs, and only
the logits come to the host. On the CPU the cache passes through numpy arrays, which costs no
copy (a run's outputs are numpy views of its ``OrtValue``s and inputs are read in place);
binding there measured slower (8 rows of a 2-layer Llama, hidden 768, vocab 32000: 0.46 ms a
step outside ``model_run`` against 0.40, of about 18 ms a step).
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
#: The device of a provider's tensors, where the cache stays between steps (IOBinding).
_DEVICES = {"CUDAExecutionProvider": "cuda"}
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
    io_binding: bool | None = None,
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
        io_binding: keep the cache in ONNX Runtime (on the session's device) between steps
            with IOBinding, or pass it through numpy; None: IOBinding on a CUDA session (see
            the module docstring). The logits are the same either way.

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
    device = _cache_device(session)
    if io_binding or (io_binding is None and device is not None):
        runner: _NumpySteps | _BoundSteps = _BoundSteps(
            session, outputs, past, run_options, device or ("cpu", 0)
        )
    else:
        runner = _NumpySteps(session, outputs, past, run_options)
    step_ids = sequence
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)  # of the tokens step_ids holds
    for _ in range(new_tokens):
        feeds: dict[str, np.ndarray] = {"input_ids": step_ids.astype(ids_type)}
        if "attention_mask" in inputs:
            feeds["attention_mask"] = mask.astype(_mask_type(inputs))
        if "position_ids" in inputs:
            kind = _TYPES.get(inputs["position_ids"].type, np.int64)
            feeds["position_ids"] = positions.astype(kind)
        if "use_cache_branch" in inputs:
            feeds["use_cache_branch"] = np.array([sequence.shape[1] > step_ids.shape[1]])
        if variants is not None:
            feeds[VARIANT_IDS] = variants
        logits = runner.run(feeds)
        yield logits
        chosen = np.argmax(logits[:, -1], axis=-1).astype(np.int64)[:, None]
        sequence = np.concatenate([sequence, chosen], axis=1)
        mask = np.concatenate([mask, np.ones_like(chosen)], axis=1)
        if cache_names:
            step_ids, positions = chosen, positions[:, -1:] + 1  # every row has a token
        else:
            step_ids, positions = sequence, np.maximum(np.cumsum(mask, axis=1) - 1, 0)


def _cache_device(session: Any) -> tuple[str, int] | None:
    """The device (type, id) of the session's first provider; None for the CPU."""
    providers = session.get_providers() if hasattr(session, "get_providers") else []
    if not providers or providers[0] not in _DEVICES:
        return None
    options = session.get_provider_options().get(providers[0], {})
    return _DEVICES[providers[0]], int(options.get("device_id", 0))


def _present(past: str) -> str:
    """The output that carries cache input ``past`` to the next step."""
    return "present." + past[len(_PAST) :]


class _NumpySteps:
    """Runs decode steps with ``session.run``: the cache passes through numpy arrays."""

    def __init__(
        self, session: Any, outputs: list[str], past: dict[str, np.ndarray], run_options: Any
    ) -> None:
        self.session, self.outputs, self.run_options = session, outputs, run_options
        self.past = past

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Runs one step on ``feeds`` and the cache; keeps the new cache, returns the logits."""
        results = self.session.run(None, {**feeds, **self.past}, self.run_options)
        values = dict(zip(self.outputs, results, strict=True))
        self.past = {n: values[_present(n)] for n in self.past}
        return values["logits"]


class _BoundSteps:
    """Runs decode steps with IOBinding: the cache stays in ONNX Runtime between steps.

    Each step binds its small feeds from numpy, the ``present`` outputs to ``device`` and the
    others to the CPU, in memory ONNX Runtime allocates for that run; the ``present``
    ``OrtValue``s become the next step's ``past`` inputs as they are, and the logits come back
    as a numpy view of their ``OrtValue``.
    """

    def __init__(
        self,
        session: Any,
        outputs: list[str],
        past: dict[str, np.ndarray],
        run_options: Any,
        device: tuple[str, int],
    ) -> None:
        self.session, self.outputs, self.run_options = session, outputs, run_options
        self.device = device
        self.binding = session.io_binding()
        self.cache = list(past)
        self.held: dict[str, np.ndarray] = {}  # the numpy arrays bound now, kept alive
        self._bind(past)

    def _bind(self, arrays: dict[str, np.ndarray]) -> None:
        for name, array in arrays.items():
            self.binding.bind_cpu_input(name, array)
        self.held.update(arrays)

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Runs one step on ``feeds`` and the bound cache; binds the new cache, returns logits."""
        self._bind(feeds)
        self.binding.clear_binding_outputs()
        for name in self.outputs:
            cache = name.startswith("present.")
            self.binding.bind_output(name, *(self.device if cache else ("cpu", 0)))
        self.session.run_with_iobinding(self.binding, self.run_options)
        values = dict(zip(self.outputs, self.binding.get_outputs(), strict=True))
        for name in self.cache:
            self.binding.bind_ortvalue_input(name, values[_present(name)])
            self.held.pop(name, None)
        return values["logits"].numpy()


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
