"""Parsing of ``check``'s ``NAME:value`` options; a malformed one raises ``IclUserError``."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TypeVar

from icl_onnx.errors import IclUserError

__all__ = ["parse_shapes", "parse_ranges", "parse_per_output", "parse_providers", "tolerance"]

T = TypeVar("T")

_RANGE = re.compile(r"^\[\s*([^,\]]+)\s*,\s*([^,\]]+)\s*\]$|^([^,\[\]]+),([^,\[\]]+)$")


def _split_name(spec: str) -> tuple[str | None, str]:
    """Splits ``NAME:value`` at the last colon (names may contain colons); no colon: no name."""
    if ":" not in spec:
        return None, spec
    name, value = spec.rsplit(":", 1)
    return (name or None), value


def parse_shapes(specs: Iterable[str]) -> dict[str, list[int]]:
    """Parses ``--input-shape NAME:1x128`` (also ``NAME:[1,128]``) into ``{name: [1, 128]}``."""
    out: dict[str, list[int]] = {}
    for spec in specs:
        name, value = _split_name(spec)
        text = value.strip().strip("[]()")
        parts = [p for p in re.split(r"[x,\s]+", text) if p] if text else []
        if name is None or not all(p.isdigit() for p in parts):
            raise IclUserError(f"--input-shape {spec!r}: write NAME:DIMxDIM, e.g. input_ids:1x128")
        out[name] = [int(p) for p in parts]
    return out


def parse_ranges(specs: Iterable[str]) -> dict[str | None, tuple[float, float]]:
    """Parses ``--val-range [NAME:][lo,hi]`` or ``[NAME:]lo,hi``; no name: the default range."""
    out: dict[str | None, tuple[float, float]] = {}
    for spec in specs:
        name, value = (None, spec) if spec.lstrip().startswith("[") else _split_name(spec)
        match = _RANGE.match(value.strip())
        try:
            if match is None:
                raise ValueError
            lo_text, hi_text = match.group(1, 2) if match.group(1) else match.group(3, 4)
            lo, hi = float(lo_text), float(hi_text)
        except ValueError:
            raise IclUserError(
                f"--val-range {spec!r}: write NAME:lo,hi or NAME:[lo,hi] (or no NAME for "
                "the default), e.g. input_ids:0,100"
            ) from None
        if lo > hi:
            raise IclUserError(f"--val-range {spec!r}: lo is greater than hi")
        out[name] = (lo, hi)
    return out


def parse_per_output(
    specs: Iterable[str], option: str, convert: Callable[[str], T]
) -> dict[str | None, T]:
    """Parses ``--atol 1e-3 --atol logits:1e-2`` into ``{None: 1e-3, "logits": 1e-2}``."""
    out: dict[str | None, T] = {}
    for spec in specs:
        name, value = _split_name(spec)
        try:
            out[name] = convert(value.strip())
        except ValueError as e:
            raise IclUserError(f"{option} {spec!r}: {e}; write VALUE or NAME:VALUE") from None
    return out


def tolerance(value: str) -> float:
    """Converts a tolerance; it must be a non-negative number."""
    number = float(value)
    if not number >= 0:
        raise ValueError(f"{value} is not a non-negative number")
    return number


def parse_providers(spec: str) -> list[str]:
    """Parses ``cpu,cuda`` into ``["cpu", "cuda"]``."""
    providers = [p.strip() for p in spec.split(",") if p.strip()]
    if not providers:
        raise IclUserError(f"--providers {spec!r}: write e.g. cpu or cuda,cpu")
    return providers
