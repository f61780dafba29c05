"""Export a PyTorch module to ONNX, share its weights, and verify the result against PyTorch.

:func:`export` runs ``torch.onnx.export`` (the dynamo exporter first, the TorchScript exporter
when dynamo fails), then the ICL pipeline (:func:`icl_onnx.optimize_file`), then runs the
optimized model in ONNX Runtime with the ICL op library on the example inputs and compares
every output with PyTorch's. It returns only when they match.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from icl_onnx.errors import IclArgumentError, IclUserError
from icl_onnx.pipeline import OptimizeResult, optimize_file
from icl_onnx.tolerance import errors, within_tolerance
from icl_onnx.torch_export import ExportInfo, export_onnx, flatten_outputs

__all__ = ["ExportMismatchError", "ExportResult", "OutputMatch", "export"]

logger = logging.getLogger(__name__)


class ExportMismatchError(IclUserError):
    """The exported model's outputs differ from PyTorch's beyond the tolerance (exit 1)."""

    exit_code = 1


@dataclasses.dataclass(frozen=True)
class OutputMatch:
    """One output compared with PyTorch's.

    Attributes:
        name: the graph output.
        max_abs_error: the largest ``|onnx - torch|``.
        ok: every element within tolerance (:mod:`icl_onnx.tolerance`) and finite.
    """

    name: str
    max_abs_error: float
    ok: bool


@dataclasses.dataclass
class ExportResult:
    """What :func:`export` wrote and measured.

    Attributes:
        path: the optimized ONNX file.
        files: every file written (the model, and its external data if any).
        exporter: ``"dynamo"`` or ``"torchscript"``, the one that produced the file.
        fallback_reason: why dynamo was not used ("" when it was, or was not asked for).
        export_info: details of the raw export.
        optimize: the ICL pipeline's result (its ``plan`` says what was shared).
        outputs: each output compared with PyTorch's.
    """

    path: Path
    files: list[Path]
    exporter: str
    fallback_reason: str
    export_info: ExportInfo
    optimize: OptimizeResult
    outputs: list[OutputMatch]


def _bind_inputs(model: Any, args: Sequence[Any], kwargs: Mapping[str, Any] | None) -> dict:
    """Names positional example inputs after ``model.forward``'s parameters."""
    kwargs = dict(kwargs or {})
    if not args:
        return kwargs
    try:
        bound = inspect.signature(model.forward).bind_partial(*args, **kwargs)
    except TypeError as e:
        raise IclUserError(f"example inputs do not fit {type(model).__name__}.forward: {e}") from e
    if any(p.kind is p.VAR_POSITIONAL for p in bound.signature.parameters.values()):
        raise IclUserError("forward(*args) has no argument names; pass the inputs as kwargs")
    return dict(bound.arguments)


def _export_raw(
    model: Any, path: Path, inputs: dict, dynamo: bool, fallback: bool, **options: Any
) -> tuple[ExportInfo, str]:
    """Exports with dynamo (falling back to TorchScript) or TorchScript alone."""
    if not dynamo:
        return export_onnx(model, path, inputs, dynamo=False, **options), ""
    try:
        return export_onnx(model, path, inputs, dynamo=True, **options), ""
    except Exception as e:  # the dynamo exporter raises many types; the fallback covers all
        if not fallback:
            raise
        reason = f"dynamo export failed ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
        logger.info("%s; falling back to the TorchScript exporter", reason)
        try:
            return export_onnx(model, path, inputs, dynamo=False, **options), reason
        except Exception as e2:
            raise IclUserError(
                f"both exporters failed: {reason}; TorchScript export failed "
                f"({type(e2).__name__}: {str(e2).splitlines()[0][:200] if str(e2) else ''})"
            ) from e2


def _run_onnx(path: Path, inputs: Mapping[str, Any], names: Sequence[str]) -> list[np.ndarray]:
    from icl_onnx._runtime import create_session

    session = create_session(path)
    feeds = {k: v.detach().cpu().numpy() for k, v in inputs.items() if k in set(names)}
    return session.run(None, feeds)


def _compare(
    names: Sequence[str], got: Sequence[np.ndarray], want: Sequence[Any], atol: float, rtol: float
) -> list[OutputMatch]:
    matches = []
    for name, a, b in zip(names, got, want, strict=True):
        b = b.detach().cpu().numpy()
        if a.shape != b.shape:
            matches.append(OutputMatch(name, float("inf"), False))
            continue
        absolute, relative = errors(b, a)
        ok = bool(within_tolerance(absolute, relative, atol, rtol).all())
        ok = ok and bool(np.isfinite(a).all())
        matches.append(OutputMatch(name, float(absolute.max()) if absolute.size else 0.0, ok))
    return matches


def _describe(matches: Sequence[OutputMatch]) -> str:
    return ", ".join(f"{m.name} max |error| {m.max_abs_error:.3g}" for m in matches if not m.ok)


def export(
    model: Any,
    path: str | os.PathLike,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    dynamo: bool = True,
    *,
    fallback: bool = True,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
    opset_version: int | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    keep_original: str | os.PathLike | None = None,
) -> ExportResult:
    """Exports ``model``, shares its copied and transposed weights, and verifies the outputs.

    Args:
        model: a ``torch.nn.Module``; it is put in eval mode.
        path: the optimized ONNX file to write.
        args: positional example inputs, named after ``model.forward``'s parameters.
        kwargs: keyword example inputs; the graph inputs get these names.
        dynamo: try the dynamo exporter first; False uses the TorchScript exporter only.
        fallback: when dynamo fails, export with TorchScript instead of raising.
        dynamic_axes: ``{input: {axis: label}}``; batch and sequence axes if None.
        opset_version: ONNX opset; the exporter's default if None.
        atol: absolute tolerance of the output check.
        rtol: relative tolerance of the output check. An element passes when its absolute
            error is at most ``atol`` or its relative error at most ``rtol``
            (:mod:`icl_onnx.tolerance`, the rule of ``check``).
        keep_original: also keep the exporter's file (before sharing) at this path.

    Returns:
        The files, the exporter used, the applied SharePlan, and the output comparison.

    Raises:
        ExportMismatchError: outputs differ beyond the tolerance; the message says whether
            the exporter or the sharing changed them. Nothing is left at ``path``.
        IclArgumentError: ``path`` is a folder, or ``keep_original`` cannot be kept.
        IclUserError: the inputs do not fit the model or a file cannot be written.
    """
    import torch

    model.eval()
    inputs = _bind_inputs(model, args, kwargs)
    path = Path(path)
    if path.is_dir():
        raise IclArgumentError("path", f"{path} is a folder; give a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        want = [tensor for _, tensor in flatten_outputs(model(**inputs))]
    options = {"dynamic_axes": dynamic_axes, "opset_version": opset_version}
    work = Path(tempfile.mkdtemp(prefix=".icl-export.", dir=path.parent))
    try:
        raw = work / path.name
        info, reason = _export_raw(model, raw, inputs, dynamo, fallback, **options)
        if len(info.output_names) != len(want):
            raise IclUserError(f"expected {len(want)} outputs, the export has {info.output_names}")
        result = optimize_file(raw, path)
        matches = _verify(path, info, inputs, want, atol, rtol)
        if not all(m.ok for m in matches):
            for f in result.files:
                f.unlink(missing_ok=True)
            raise _mismatch(raw, info, inputs, want, matches, atol, rtol)
        if keep_original is not None:
            _move_model(raw, Path(keep_original))
        return ExportResult(path, result.files, info.exporter, reason, info, result, matches)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _verify(
    path: Path,
    info: ExportInfo,
    inputs: Mapping[str, Any],
    want: Sequence[Any],
    atol: float,
    rtol: float,
) -> list[OutputMatch]:
    """Compares the ONNX model at ``path`` with PyTorch's outputs ``want``."""
    got = _run_onnx(path, inputs, info.input_names)
    return _compare(info.output_names, got, want, atol, rtol)


def _mismatch(
    raw: Path,
    info: ExportInfo,
    inputs: Mapping[str, Any],
    want: Sequence[Any],
    matches: Sequence[OutputMatch],
    atol: float,
    rtol: float,
) -> ExportMismatchError:
    """Returns the error for outputs that differ, blaming the exporter or the ICL rewrite."""
    raw_ok = all(m.ok for m in _verify(raw, info, inputs, want, atol, rtol))
    culprit = (
        "the ICL rewrite changed them" if raw_ok else f"the {info.exporter} export already differs"
    )
    return ExportMismatchError(
        f"ONNX outputs differ from PyTorch's ({_describe(matches)}; {culprit}); "
        "raise atol/rtol if the difference is acceptable"
    )


def _move_model(src: Path, dst: Path) -> None:
    """Moves an ONNX file and its ``.data`` file (if any) to ``dst``."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    data = src.with_name(src.name + ".data")
    if data.exists():
        raise IclArgumentError(
            "keep_original", "cannot keep an export with external data (a model over 2 GB)"
        )
    shutil.move(src, dst)
