"""What one serving replica holds: the sessions of a model, file or folder, and their requests.

Independent of Ray: :class:`ServedModel` opens the model as a replica does (every session with
``share_across_processes=True``), turns a JSON request into checked numpy inputs
(:meth:`ServedModel.parse`), runs a list of requests with as few ONNX Runtime runs as their
shapes allow (:meth:`ServedModel.run`) and generates greedily (:meth:`ServedModel.generate`).

What a path may be:

- an ``.onnx`` file: one session (:func:`icl_onnx.create_session`), one variant named after
  the file's stem;
- a folder written by ``icl-onnx optimize A.onnx B.onnx --out-dir DIR`` (fine-tuned variants
  of one base): a :class:`icl_onnx.SessionGroup` over every ``.onnx`` file, so the variants
  read one copy of what they share; a request names its variant (the file's stem);
- a GenAI or Optimum folder (:func:`icl_onnx.folders.read_folder`): the same, one variant per
  model file, and greedy generation through its decoder.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from icl_onnx.errors import IclUserError

__all__ = ["RequestError", "InferRequest", "ServedModel", "can_generate", "check_model_path"]

#: ONNX Runtime's element type names and the numpy type a request's values are read as.
_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


class RequestError(Exception):
    """A request the replica cannot serve; its message is one line for the client.

    Attributes:
        status: the HTTP status to answer with (400 bad request, 404 unknown variant).
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclasses.dataclass
class InferRequest:
    """A checked ``/infer`` request.

    Attributes:
        variant: the model it runs.
        inputs: the model's inputs, typed and shaped as the model declares.
    """

    variant: str
    inputs: dict[str, np.ndarray]

    def batch_key(self) -> tuple:
        """Requests with equal keys can be stacked along the batch dimension."""
        return (
            self.variant,
            tuple((n, a.dtype.str, a.shape[1:]) for n, a in sorted(self.inputs.items())),
        )


@dataclasses.dataclass
class _Variant:
    session: Any
    inputs: dict[str, Any]  # name -> onnxruntime NodeArg
    batchable: bool


def _batch_symbol(shape: Sequence[Any]) -> str | None:
    """The symbolic name of a dynamic first dimension, or None when it is fixed or absent."""
    if not shape or isinstance(shape[0], int):
        return None
    return str(shape[0])


def _batchable(session: Any) -> bool:
    """Whether runs can be stacked along dim 0: every input and output starts with one symbol.

    Unnamed dynamic dims (None) are not trusted to be the batch dimension.
    """
    args = [*session.get_inputs(), *session.get_outputs()]
    symbols = {_batch_symbol(a.shape) if a.shape and a.shape[0] is not None else None for a in args}
    return len(symbols) == 1 and None not in symbols


def _line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[-1] if text else type(error).__name__)[:300]


class ServedModel:
    """The sessions one replica serves (see the module docstring for what ``path`` may be).

    Attributes:
        path: the model file or folder.
        kind: ``"model"``, ``"variants"``, ``"genai"`` or ``"optimum"``.
        variants: the sessions by variant name.
        default: the variant a request without ``"variant"`` runs (None: it must name one).
    """

    def __init__(self, path: str | os.PathLike, *, threads: int = 0) -> None:
        """Opens every session with ``share_across_processes=True``.

        Args:
            path: an ``.onnx`` file, an ``optimize --out-dir`` folder, a GenAI or Optimum folder.
            threads: ONNX Runtime intra-op threads per session (0: its default).

        Raises:
            IclUserError: nothing to serve at ``path``.
        """
        self.path = Path(path)
        files, self.kind = _model_files(self.path)
        self._threads = threads
        sessions = self._open(files)
        self.variants = {
            f.stem: _Variant(s, {a.name: a for a in s.get_inputs()}, _batchable(s))
            for f, s in zip(files, sessions, strict=True)
        }
        self.default = next(iter(self.variants)) if len(self.variants) == 1 else None
        self._decoder = _decoder_variant(self.path, self.kind, files)
        self._geometry = None
        if self._decoder is not None:
            from icl_onnx.check.dims import cache_geometry

            self._geometry = cache_geometry(next(f for f in files if f.stem == self._decoder))

    def _options(self) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if self._threads:
            options.intra_op_num_threads = self._threads
            options.inter_op_num_threads = 1
        return options

    def _open(self, files: list[Path]) -> list[Any]:
        from icl_onnx._runtime import create_session

        if self.kind == "model":
            return [create_session(files[0], options=self._options(), share_across_processes=True)]
        from icl_onnx.session_group import SessionGroup

        group = SessionGroup(files, options=self._options, share_across_processes=True)
        return group.sessions

    # --- requests ---------------------------------------------------------------------------

    def variant(self, body: dict[str, Any]) -> str:
        """The variant a request names (or the default); RequestError when unknown."""
        name = body.get("variant", self.default)
        if name is None:
            raise RequestError(f"name a variant: one of {', '.join(self.variants)}")
        if not isinstance(name, str) or name not in self.variants:
            raise RequestError(
                f"unknown variant {name!r}; variants: {', '.join(self.variants)}", 404
            )
        return name

    def parse(self, body: Any) -> InferRequest:
        """Checks an ``/infer`` body ``{"inputs": {name: nested list}, "variant": ...}``.

        Raises:
            RequestError: not an object, unknown variant, missing or unknown inputs, values of
                the wrong type, or a shape the model does not accept.
        """
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), dict):
            raise RequestError('the body must be a JSON object {"inputs": {name: nested list}}')
        name = self.variant(body)
        declared = self.variants[name].inputs
        given = body["inputs"]
        unknown = sorted(set(given) - set(declared))
        missing = sorted(set(declared) - set(given))
        if unknown or missing:
            parts = [f"unknown input(s) {', '.join(unknown)}"] if unknown else []
            parts += [f"missing input(s) {', '.join(missing)}"] if missing else []
            raise RequestError(f"{'; '.join(parts)}; {name} takes {', '.join(declared)}")
        return InferRequest(name, {k: _array(declared[k], v) for k, v in given.items()})

    def run(self, requests: Sequence[InferRequest]) -> list[dict[str, Any] | RequestError]:
        """Runs requests, stacking those with equal :meth:`InferRequest.batch_key`.

        Returns one result per request: its outputs as nested lists, or the RequestError ONNX
        Runtime's run raised for it (a stacked run that fails is retried one request at a
        time, so a bad request fails alone).
        """
        results: list[dict[str, Any] | RequestError | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, request in enumerate(requests):
            key = request.batch_key() if self.variants[request.variant].batchable else (i,)
            groups.setdefault(key, []).append(i)
        for members in groups.values():
            if len(members) > 1:
                stacked = self._run_stacked([requests[i] for i in members])
                if stacked is not None:
                    for i, out in zip(members, stacked, strict=True):
                        results[i] = out
                    continue
            for i in members:
                results[i] = self._run_one(requests[i])
        return results  # type: ignore[return-value]

    def _run_one(self, request: InferRequest) -> dict[str, Any] | RequestError:
        session = self.variants[request.variant].session
        try:
            values = session.run(None, request.inputs)
        except Exception as e:  # noqa: BLE001 - ORT's errors carry no common type
            return RequestError(f"the model rejected the inputs: {_line(e)}")
        names = [o.name for o in session.get_outputs()]
        return {n: v.tolist() for n, v in zip(names, values, strict=True)}

    def _run_stacked(self, requests: list[InferRequest]) -> list[dict[str, Any]] | None:
        """One run over requests stacked along dim 0; None when it fails."""
        session = self.variants[requests[0].variant].session
        sizes = [next(iter(r.inputs.values())).shape[0] for r in requests]
        feeds = {
            name: np.concatenate([r.inputs[name] for r in requests]) for name in requests[0].inputs
        }
        try:
            values = session.run(None, feeds)
        except Exception:  # noqa: BLE001 - retried one by one, which names the culprit
            return None
        if any(v.shape[:1] != (sum(sizes),) for v in values):
            return None
        bounds = np.cumsum([0, *sizes])
        names = [o.name for o in session.get_outputs()]
        return [
            {n: v[lo:hi].tolist() for n, v in zip(names, values, strict=True)}
            for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
        ]

    # --- generation -------------------------------------------------------------------------

    @property
    def can_generate(self) -> bool:
        """Whether ``/generate`` is served (a GenAI or Optimum folder with a decoder)."""
        return self._decoder is not None

    def generate(self, body: Any) -> dict[str, Any]:
        """Greedy decoding: ``{"input_ids": [ids], "max_new_tokens": n}`` -> the new ids.

        Raises:
            RequestError: not a generating folder, or a malformed body.
        """
        from icl_onnx.serve.generate import (
            MAX_NEW_TOKENS,
            MAX_NEW_TOKENS_UNCACHED,
            greedy,
            has_cache,
        )

        if self._decoder is None:
            raise RequestError(
                f"/generate needs a GenAI or Optimum folder with a decoder; {self.path} is not",
                404,
            )
        if not isinstance(body, dict):
            raise RequestError('the body must be a JSON object {"input_ids": [...]}')
        ids, new = body.get("input_ids"), body.get("max_new_tokens", 16)
        if (
            not isinstance(ids, list)
            or not ids
            or not all(isinstance(t, int) and not isinstance(t, bool) for t in ids)
        ):
            raise RequestError("input_ids must be a non-empty list of token ids")
        session = self.variants[self._decoder].session
        cached = has_cache(session)
        most = MAX_NEW_TOKENS if cached else MAX_NEW_TOKENS_UNCACHED
        if not isinstance(new, int) or isinstance(new, bool) or not 0 < new <= most:
            why = (
                "" if cached else " (this decoder has no KV cache: each step re-runs the sequence)"
            )
            raise RequestError(f"max_new_tokens must be an integer from 1 to {most}{why}")
        try:
            tokens = greedy(session, ids, new, self._geometry)
        except ValueError as e:
            raise RequestError(_line(e)) from None
        except Exception as e:  # noqa: BLE001 - ORT's errors carry no common type
            raise RequestError(f"the model rejected the prompt: {_line(e)}") from None
        return {"tokens": tokens}


def _array(arg: Any, value: Any) -> np.ndarray:
    """A request's nested list as the numpy array the model's input ``arg`` takes."""
    dtype = _DTYPES.get(arg.type)
    if dtype is None:
        raise RequestError(f"input {arg.name} has type {arg.type}, which JSON cannot carry")
    try:
        array = np.asarray(value)
    except ValueError:
        raise RequestError(f"input {arg.name}: not a rectangular nested list") from None
    if array.dtype == object or array.dtype.kind in "USV":
        raise RequestError(f"input {arg.name}: not a rectangular nested list of numbers")
    kind = np.dtype(dtype).kind
    if (kind in "iub" and array.dtype.kind == "f") or (kind == "b" and array.dtype.kind != "b"):
        raise RequestError(f"input {arg.name} takes {arg.type}; got {array.dtype.name} values")
    shape = arg.shape or []
    if array.ndim != len(shape) or any(
        isinstance(d, int) and d != n for d, n in zip(shape, array.shape, strict=True)
    ):
        want = "[" + ", ".join(str(d) for d in shape) + "]"
        raise RequestError(
            f"input {arg.name} has shape {list(array.shape)}; the model takes {want}"
        )
    try:
        with np.errstate(over="raise", invalid="raise"):
            return array.astype(dtype, casting="unsafe" if kind == "f" else "same_kind")
    except (TypeError, OverflowError, FloatingPointError):
        raise RequestError(f"input {arg.name}: values do not fit {arg.type}") from None


def check_model_path(path: str | os.PathLike) -> list[Path]:
    """The .onnx files a replica would open at ``path``, each checked as ``scan`` checks one.

    Raises:
        IclUserError: nothing to serve at ``path``, or a file that
            :func:`icl_onnx.model_io.check_model_file` refuses (not ONNX, hostile tensors or
            external data).
    """
    from icl_onnx.model_io import check_model_file

    files, _ = _model_files(Path(path))
    for file in files:
        check_model_file(file)
    return files


def can_generate(path: str | os.PathLike) -> bool:
    """Whether a replica of ``path`` serves ``/generate`` (:attr:`ServedModel.can_generate`).

    Raises:
        IclUserError: nothing to serve at ``path``.
    """
    files, kind = _model_files(Path(path))
    return _decoder_variant(Path(path), kind, files) is not None


def _model_files(path: Path) -> tuple[list[Path], str]:
    """The .onnx files to open at ``path`` and what ``path`` is."""
    from icl_onnx.folders import GENAI_CONFIG, HF_CONFIG, read_folder

    if path.is_file():
        return [path], "model"
    if not path.is_dir():
        raise IclUserError(f"{path}: no such file or folder")
    if (path / GENAI_CONFIG).is_file() or (path / HF_CONFIG).is_file():
        folder = read_folder(path)
        return [path / m for m in folder.models], folder.kind
    files = sorted(path.glob("*.onnx"))
    if not files:
        raise IclUserError(f"{path} holds no .onnx model; give a model file or a model folder")
    return files, "variants" if len(files) > 1 else "model"


def _decoder_variant(path: Path, kind: str, files: list[Path]) -> str | None:
    """The variant ``/generate`` runs: GenAI's decoder, or Optimum's decoder-only model."""
    names = {f.name: f.stem for f in files}
    if kind == "genai":
        config = json.loads((path / "genai_config.json").read_text())
        filename = config.get("model", {}).get("decoder", {}).get("filename")
        return names.get(filename)
    if kind == "optimum":
        if "encoder_model.onnx" in names:
            return None  # encoder-decoder: not served by /generate
        for candidate in ("decoder_model_merged.onnx", "model.onnx", "decoder_model.onnx"):
            if candidate in names:
                return names[candidate]
    return None
