"""One call around ``torch.onnx.export`` that works the same with both exporters.

:func:`export_onnx` names the graph inputs after the ``forward`` keyword arguments and the
outputs after the model's output fields (``logits``, ...), marks batch and sequence axes
dynamic, and writes one file (no external data) when the weights fit under ONNX's 2 GB
protobuf limit. ``dynamo=True`` uses the ``torch.export`` based exporter, ``dynamo=False``
the TorchScript exporter.

:func:`export_decoder_with_past` writes a causal LM with a KV cache in Optimum's convention
(TorchScript exporter).

``torch`` is imported lazily (the ``export`` extra).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import os
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ExportInfo",
    "default_dynamic_axes",
    "export_decoder_with_past",
    "export_onnx",
    "flatten_outputs",
]

#: Weights above this many bytes go to an external data file (protobuf's limit is 2 GiB).
EXTERNAL_DATA_THRESHOLD = 2_000_000_000


@dataclass(frozen=True)
class ExportInfo:
    """What :func:`export_onnx` wrote.

    Attributes:
        path: the ONNX file.
        exporter: ``"dynamo"`` or ``"torchscript"``.
        input_names: graph input names, in order.
        output_names: graph output names, in order.
        external_data: whether the weights went to a separate file.
        seconds: wall time of ``torch.onnx.export``.
    """

    path: Path
    exporter: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    external_data: bool
    seconds: float


def default_dynamic_axes(inputs: Mapping[str, Any]) -> dict[str, dict[int, str]]:
    """Returns dynamic axes for example inputs: batch, and sequence for token inputs.

    Axis 0 is ``batch``; axis 1 of integer inputs with two or more dimensions (token ids,
    masks) is ``sequence``, or ``decoder_sequence`` for ``decoder_*`` inputs.

    Args:
        inputs: example inputs by name; non-tensors are skipped.
    """
    import torch

    axes: dict[str, dict[int, str]] = {}
    for name, value in inputs.items():
        if not isinstance(value, torch.Tensor) or value.ndim == 0:
            continue
        axes[name] = {0: "batch"}
        if value.ndim >= 2 and not value.is_floating_point():
            axes[name][1] = "decoder_sequence" if name.startswith("decoder_") else "sequence"
    return axes


def flatten_outputs(outputs: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yields ``(name, tensor)`` for a model's outputs in the order the exporters flatten them.

    A Hugging Face ``ModelOutput`` gives its field names (``logits``, ...), nested tuples
    ``name.0``, ``name.1``; a bare tensor is ``output``; ``None`` fields are skipped.

    Args:
        outputs: what ``module(**inputs)`` returned.
        prefix: the name so far (recursion).
    """
    import torch

    if isinstance(outputs, torch.Tensor):
        yield (prefix or "output"), outputs
    elif isinstance(outputs, Mapping):
        for key, value in outputs.items():
            if value is not None:
                yield from flatten_outputs(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(outputs, (tuple, list)):
        for i, value in enumerate(outputs):
            if value is not None:
                yield from flatten_outputs(value, f"{prefix}.{i}" if prefix else f"output_{i}")


def _output_axes(
    outputs: list[tuple[str, Any]],
    inputs: Mapping[str, Any],
    input_axes: Mapping[str, Mapping[int, str]],
) -> dict[str, dict[int, str]]:
    """Names output axes whose example size matches exactly one dynamic input axis."""
    sizes: dict[int, set[str]] = {}
    for name, axes in input_axes.items():
        for axis, label in axes.items():
            sizes.setdefault(int(inputs[name].shape[axis]), set()).add(label)
    out: dict[str, dict[int, str]] = {}
    for name, tensor in outputs:
        axes: dict[int, str] = {}
        for axis, size in enumerate(tensor.shape):
            labels = sizes.get(int(size), set())
            if axis == 0 and "batch" in labels:
                axes[0] = "batch"
            elif axis > 0 and len(labels) == 1 and "batch" not in labels:
                axes[axis] = next(iter(labels))
        if axes:
            out[name] = axes
    return out


def _dynamic_shapes(axes: Mapping[str, Mapping[int, str]], names: list[str]) -> dict[str, Any]:
    import torch

    dims: dict[str, Any] = {}
    shapes: dict[str, Any] = {}
    for name in names:
        spec = axes.get(name)
        if spec:
            shapes[name] = {
                a: dims.setdefault(label, torch.export.Dim(label)) for a, label in spec.items()
            }
        else:
            shapes[name] = None
    return shapes


def _weight_bytes(module: Any) -> int:
    seen: set[int] = set()
    total = 0
    for tensor in [*module.parameters(), *module.buffers()]:
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    return total


@contextlib.contextmanager
def _only_these_inputs(module: Any, names: list[str]) -> Iterator[None]:
    """Makes ``module.forward`` take exactly ``names``, for the TorchScript exporter.

    That exporter turns every ``forward`` argument with a non-None default (e.g. Llama's
    ``logits_to_keep=0``) into a graph input. A temporary instance attribute with the narrow
    signature avoids that without a wrapper module (which would rename every initializer).
    """
    original = module.forward

    def forward(*args: Any) -> Any:
        return original(**dict(zip(names, args, strict=True)))

    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    forward.__signature__ = inspect.Signature([inspect.Parameter(n, kind) for n in names])
    module.forward = forward
    try:
        yield
    finally:
        del module.forward


@contextlib.contextmanager
def _quiet(enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    torch_onnx_log = logging.getLogger("torch.onnx")
    level = torch_onnx_log.level
    torch_onnx_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        torch_onnx_log.setLevel(level)


def export_onnx(
    module: Any,
    path: str | os.PathLike,
    inputs: Mapping[str, Any],
    dynamo: bool = True,
    *,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
    opset_version: int | None = None,
    optimize: bool = True,
    external_data: bool | None = None,
    quiet: bool = True,
) -> ExportInfo:
    """Exports ``module(**inputs)`` to ONNX with either exporter.

    Args:
        module: a ``torch.nn.Module`` (put in eval mode by the caller).
        path: the ONNX file to write; its folder is created.
        inputs: example keyword inputs of ``module.forward``; the graph inputs get these names.
        dynamo: ``True`` for the ``torch.export`` based exporter, ``False`` for TorchScript.
        dynamic_axes: ``{input: {axis: label}}``; :func:`default_dynamic_axes` if None.
            Inputs with the same label share one dimension. Pass ``{}`` for static shapes.
        opset_version: ONNX opset; the exporter's default if None.
        optimize: dynamo only: run the exporter's ONNX optimizer (it may constant-fold
            small ``Transpose(W)`` nodes into transposed copies).
        external_data: weights in a separate file; only when they exceed 2 GB if None.
        quiet: hide the exporters' warnings and progress prints.

    Returns:
        What was written. Exceptions of the exporter propagate unchanged.
    """
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = dict(inputs)
    input_names = [n for n, v in kwargs.items() if isinstance(v, torch.Tensor)]
    with torch.no_grad():
        outputs = list(flatten_outputs(module(**kwargs)))
    axes = default_dynamic_axes(kwargs) if dynamic_axes is None else dict(dynamic_axes)
    if external_data is None:
        external_data = _weight_bytes(module) > EXTERNAL_DATA_THRESHOLD
    options = _exporter_options(
        dynamo=dynamo,
        kwargs=kwargs,
        input_names=input_names,
        outputs=outputs,
        axes=axes,
        opset_version=opset_version,
        external_data=external_data,
        optimize=optimize,
    )
    start = time.perf_counter()
    with _quiet(quiet), torch.no_grad():
        _call_exporter(module, path, kwargs, options)
    seconds = time.perf_counter() - start
    data_file = path.with_name(path.name + ".data")
    return ExportInfo(
        path=path,
        exporter="dynamo" if dynamo else "torchscript",
        input_names=tuple(input_names),
        output_names=tuple(options["output_names"]),
        external_data=data_file.exists() or external_data,
        seconds=seconds,
    )


def _exporter_options(
    *,
    dynamo: bool,
    kwargs: Mapping[str, Any],
    input_names: list[str],
    outputs: list[tuple[str, Any]],
    axes: Mapping[str, Mapping[int, str]],
    opset_version: int | None,
    external_data: bool,
    optimize: bool,
) -> dict[str, Any]:
    """Returns ``torch.onnx.export``'s keyword arguments for either exporter (not the inputs)."""
    options: dict[str, Any] = {
        "input_names": input_names,
        "output_names": [name for name, _ in outputs],
        "opset_version": opset_version,
        "dynamo": dynamo,
        "verbose": False,
    }
    if dynamo:
        options.update(
            dynamic_shapes=_dynamic_shapes(axes, list(kwargs)) if axes else None,
            external_data=external_data,
            optimize=optimize,
        )
    else:
        all_axes = {**axes, **_output_axes(outputs, kwargs, axes)} if axes else None
        options.update(dynamic_axes=all_axes, do_constant_folding=True)
    return options


def _call_exporter(
    module: Any, path: Path, kwargs: Mapping[str, Any], options: dict[str, Any]
) -> None:
    """Calls ``torch.onnx.export``: dynamo takes keyword inputs, TorchScript positional ones."""
    import torch

    if options["dynamo"]:
        torch.onnx.export(module, (), os.fspath(path), kwargs=dict(kwargs), **options)
        return
    names = options["input_names"]
    args = tuple(kwargs[n] for n in names)
    with _only_these_inputs(module, names):
        torch.onnx.export(module, args, os.fspath(path), **options)


def export_decoder_with_past(lm: Any, path: str | os.PathLike) -> None:
    """Exports a causal LM with a KV cache, as Optimum's with-past decoder reads it.

    Inputs ``input_ids``, ``attention_mask`` (past + new), ``position_ids`` and
    ``past_key_values.{i}.key|value`` ``[batch, kv_heads, past, head_dim]``; outputs ``logits``
    and ``present.{i}.key|value``, the dynamic dims under Optimum's names (``batch_size``,
    ``sequence_length``, ``past_sequence_length``, ``past_sequence_length + sequence_length``),
    which ``check`` reads. The past may be empty (a prefill). TorchScript exporter, weights
    inline.

    Args:
        lm: a ``transformers`` causal LM that takes a ``DynamicCache`` (Llama, Qwen2, ...), in
            eval mode; its config gives the layer and head counts.
        path: the ONNX file to write.
    """
    import torch
    from transformers.cache_utils import DynamicCache

    config = lm.config
    layers, kv_heads = config.num_hidden_layers, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads

    class WithPast(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lm = lm  # a submodule: its weights are exported as initializers

        def forward(self, input_ids, attention_mask, position_ids, *past):
            cache = DynamicCache()
            for i in range(layers):
                cache.update(past[2 * i], past[2 * i + 1], i)
            out = self.lm(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=cache,
                use_cache=True,
            )
            present = [
                t for layer in out.past_key_values.layers for t in (layer.keys, layer.values)
            ]
            return (out.logits, *present)

    kv = [f"{i}.{part}" for i in range(layers) for part in ("key", "value")]
    past_len, new = 3, 4
    args = (
        torch.randint(0, config.vocab_size, (1, new)),
        torch.ones(1, past_len + new, dtype=torch.long),
        torch.arange(past_len, past_len + new)[None],
        *[torch.zeros(1, kv_heads, past_len, head_dim) for _ in kv],
    )
    batch, seq, past_seq = "batch_size", "sequence_length", "past_sequence_length"
    total = f"{past_seq} + {seq}"  # Optimum's names: check gives the mask past + new tokens
    axes = {
        "input_ids": {0: batch, 1: seq},
        "attention_mask": {0: batch, 1: total},
        "position_ids": {0: batch, 1: seq},
        "logits": {0: batch, 1: seq},
        **{f"past_key_values.{n}": {0: batch, 2: past_seq} for n in kv},
        **{f"present.{n}": {0: batch, 2: total} for n in kv},
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with _quiet(True), torch.no_grad():
        torch.onnx.export(
            WithPast().eval(),
            args,
            os.fspath(path),
            input_names=["input_ids", "attention_mask", "position_ids"]
            + [f"past_key_values.{n}" for n in kv],
            output_names=["logits"] + [f"present.{n}" for n in kv],
            dynamic_axes=axes,
            dynamo=False,
            do_constant_folding=True,
        )
