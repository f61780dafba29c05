"""The view attributes of the ICL operators: their names, defaults, meaning and rules.

``view(W) = scale * cast(transpose?(slice(W)))`` for a stored 2-D ``W`` (docs/operators.md).
This module is the one Python statement of that contract; ``custom_ops/common/view.h`` is the
C++ one (``ViewAttrsError`` there and :meth:`ViewAttrs.error` here state the same rules). The
operator spec (``icl_onnx.opspec``), the numpy reference, the ONNX schemas, ``check``'s row
counts and the CUDA test harness read the attributes from here.

:class:`View` is how detection and planning describe a member of a share set as a view of the
set's canonical tensor: the attributes plus the parts a rule expresses otherwise (a cast, a
reshape, a low-rank delta); :attr:`View.view_attrs` and :meth:`View.from_attrs` convert to and
from :class:`ViewAttrs`. Standard library only, so any host can import it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import onnx_ir as ir

__all__ = [
    "DELTA_TRANSPOSE",
    "OUTPUT_DTYPE",
    "OUTPUT_DTYPES",
    "VIEW_ATTRIBUTES",
    "VIEW_DEFAULTS",
    "Attribute",
    "Dim",
    "View",
    "ViewAttrs",
    "ir_field",
]

#: A dimension: a size, a symbolic name, or None when unknown.
Dim = int | str | None


@dataclasses.dataclass(frozen=True)
class Attribute:
    """One attribute of the ICL operators: ONNX name, default (its type too) and meaning.

    A ``required`` attribute has no default: ``default`` only gives its type.
    """

    name: str
    default: int | float
    doc: str
    required: bool = False


#: The view attributes both operators take, in the order the C++ ViewAttrs declares them.
VIEW_ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("transpose", 0, "1 reads the (sliced) stored tensor transposed."),
    Attribute("slice_axis", 0, "Axis of the stored tensor that slice_start/slice_size cut."),
    Attribute("slice_start", 0, "First index of the slice."),
    Attribute("slice_size", -1, "Length of the slice; -1 reads to the end."),
    Attribute("scale", 1.0, "Factor applied to every element of the view."),
)

#: IclGather's element type of Y.
OUTPUT_DTYPE = Attribute("output_dtype", 0, "ONNX element type of Y; 0 means W's type.")

#: How the optional low-rank factors U, V read (both operators; docs/operators.md).
DELTA_TRANSPOSE = Attribute(
    "delta_transpose", 0, "1: the low-rank term added to view(W) is (U @ V)^T instead of U @ V."
)

#: The values output_dtype accepts: 0 (W's type), FLOAT, FLOAT16, BFLOAT16.
OUTPUT_DTYPES: tuple[int, ...] = (0, 1, 10, 16)

#: View attribute name -> default.
VIEW_DEFAULTS: dict[str, int | float] = {a.name: a.default for a in VIEW_ATTRIBUTES}


@dataclasses.dataclass(frozen=True)
class ViewAttrs:
    """The view attributes of one ICL node (defaults where absent)."""

    transpose: int = 0
    slice_axis: int = 0
    slice_start: int = 0
    slice_size: int = -1
    scale: float = 1.0

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any], *, allow_output_dtype: bool = True) -> ViewAttrs:
        """Builds the view from a node's attributes by name, checking them.

        Args:
            attrs: attribute name -> value; absent names take their defaults.
            allow_output_dtype: accept (and ignore) ``output_dtype``, IclGather's attribute,
                and ``delta_transpose``, the factors' orientation.

        Raises:
            TypeError: an attribute name that is not an ICL attribute.
            ValueError: a malformed value (see :meth:`error`).
        """
        extra = {OUTPUT_DTYPE.name, DELTA_TRANSPOSE.name} if allow_output_dtype else set()
        known = set(VIEW_DEFAULTS) | extra
        unknown = set(attrs) - known
        if unknown:
            raise TypeError(f"unknown ICL attributes: {sorted(unknown)}")
        view = cls(
            **{
                a.name: type(a.default)(attrs[a.name]) if a.name in attrs else a.default
                for a in VIEW_ATTRIBUTES
            }
        )
        problem = view.error(attrs.get(OUTPUT_DTYPE.name, 0), attrs.get(DELTA_TRANSPOSE.name, 0))
        if problem:
            raise ValueError(problem)
        return view

    def error(self, output_dtype: int = 0, delta_transpose: int = 0) -> str | None:
        """What is wrong with these attributes whatever W's shape, or None when well formed."""
        if self.transpose not in (0, 1):
            return f"transpose must be 0 or 1, got {self.transpose}"
        if self.slice_axis not in (0, 1):
            return f"slice_axis must be 0 or 1, got {self.slice_axis}"
        if self.slice_start < 0:
            return f"slice_start must be >= 0, got {self.slice_start}"
        if self.slice_size < -1:
            return f"slice_size must be >= 0, or -1 for the rest of the axis, got {self.slice_size}"
        if delta_transpose not in (0, 1):
            return f"delta_transpose must be 0 or 1, got {delta_transpose}"
        if output_dtype not in OUTPUT_DTYPES:
            return (
                "output_dtype must be 0, 1 (float), 10 (float16) or 16 (bfloat16), "
                f"got {output_dtype}"
            )
        return None

    def to_attrs(self) -> dict[str, int | float]:
        """The attributes that differ from their defaults, as a node carries them."""
        return {
            a.name: getattr(self, a.name)
            for a in VIEW_ATTRIBUTES
            if getattr(self, a.name) != a.default
        }

    def slice_bounds(self, w_shape: tuple[int, int]) -> tuple[int, int]:
        """``(start, stop)`` of the slice along ``slice_axis`` of a stored W of ``w_shape``.

        Raises:
            ValueError: the slice does not fit the axis.
        """
        axis_len = w_shape[self.slice_axis]
        stop = axis_len if self.slice_size < 0 else self.slice_start + self.slice_size
        if not 0 <= self.slice_start <= stop <= axis_len:
            raise ValueError(
                f"slice [{self.slice_start}:{stop}] out of range for an axis of {axis_len}"
            )
        return self.slice_start, stop

    def shape(self, w_dims: tuple[Dim, Dim] | list[Dim]) -> tuple[Dim, Dim]:
        """``(rows, cols)`` of view(W) for W's dims, which may be symbolic or unknown.

        A dim the slice shortens by an unknown amount becomes None.
        """
        dims: list[Dim] = list(w_dims)
        axis = self.slice_axis
        if self.slice_size >= 0:
            dims[axis] = self.slice_size
        elif self.slice_start:
            dims[axis] = dims[axis] - self.slice_start if isinstance(dims[axis], int) else None
        return (dims[1], dims[0]) if self.transpose else (dims[0], dims[1])

    def select(self, w: Any) -> Any:
        """``transpose?(slice(w))`` of a 2-D numpy array or torch tensor, without copying.

        The caller casts and applies :attr:`scale` in the precision it wants.

        Raises:
            ValueError: ``w`` is not 2-D, or the slice does not fit it.
        """
        if len(w.shape) != 2:
            raise ValueError(f"W must be 2-D, got shape {tuple(w.shape)}")
        start, stop = self.slice_bounds(tuple(w.shape))
        v = w[start:stop, :] if self.slice_axis == 0 else w[:, start:stop]
        return v.T if self.transpose else v


def ir_field() -> Any:
    """A field that holds an IR object of the analysed model: not serialised, compared or shown."""
    return dataclasses.field(default=None, repr=False, compare=False, metadata={"ir": True})


@dataclasses.dataclass(frozen=True)
class View:
    """How a member reads the canonical tensor: ``member == view(canonical)``.

    The first five fields are :class:`ViewAttrs` (the ICL operators' attributes). Every field's
    default is the identity, so ``View()`` is an exact copy. To add a kind of view (a reshape, a
    block-quantized storage, a low-rank delta): add a field whose default is the identity,
    name its part in ``parts`` (and in ``kind`` if the name should read differently), express
    it in ``VIEW_ATTRIBUTES`` or in the rule that writes the node, and let the rules that can
    read it list the part in their ``view_parts`` (``icl_onnx.rules``); rules that do not list
    it never claim such a view.
    """

    transpose: bool = False
    slice_axis: int = 0
    slice_start: int = 0
    slice_size: int = -1
    scale: float = 1.0
    dtype: str = ""  # the member's element type (ONNX name) when it differs: a cast view
    shape: tuple[int, ...] = ()  # the member's dims when a reshape reads the same bytes
    # A low-rank delta added to the view: member == view(canonical) + U·V (or (U·V)^T when
    # ``delta_transpose``); ``factors`` holds the initializers U and V the rewrite adds.
    rank: int = 0
    delta_transpose: bool = False
    factors: tuple[ir.Value, ir.Value] | None = ir_field()

    @classmethod
    def from_attrs(cls, attrs: ViewAttrs) -> View:
        """The view a node's attributes describe (no cast, reshape or low-rank part)."""
        values = dataclasses.asdict(attrs)
        return cls(**{**values, "transpose": bool(values["transpose"])})

    @property
    def view_attrs(self) -> ViewAttrs:
        """The view's :class:`ViewAttrs`: its slice, transpose and scale."""
        return ViewAttrs(
            **{a.name: type(a.default)(getattr(self, a.name)) for a in VIEW_ATTRIBUTES}
        )

    @property
    def has_slice(self) -> bool:
        """True when the view cuts a slice of the canonical tensor."""
        return self.slice_size >= 0 or self.slice_start != 0

    @property
    def is_identity(self) -> bool:
        """True when the member is an exact copy."""
        return self == View()

    @property
    def parts(self) -> tuple[str, ...]:
        """The view's non-identity parts, in the order they apply; empty for an exact copy.

        The parts are ``slice``, ``transpose``, ``scale``, ``cast``, ``reshape`` (the same
        elements in row-major order with the dims ``shape``, applied last) and ``low-rank``.
        """
        present = {
            "slice": self.has_slice,
            "transpose": self.transpose,
            "scale": self.scale != 1.0,
            "cast": bool(self.dtype),
            "reshape": bool(self.shape),
            "low-rank": self.rank > 0,
        }
        return tuple(name for name, on in present.items() if on)

    @property
    def kind(self) -> str:
        """A short name: ``exact``, or the view's parts joined by ``+`` (e.g. ``transpose``)."""
        slice_name = "row-slice" if self.slice_axis == 0 else "col-slice"
        names = [slice_name if part == "slice" else part for part in self.parts]
        return "+".join(names) or "exact"

    def then_transpose(self) -> View:
        """Returns this view followed by a transpose (a low-rank delta is transposed too)."""
        delta_transpose = self.delta_transpose != (self.rank > 0)
        return dataclasses.replace(
            self, transpose=not self.transpose, delta_transpose=delta_transpose
        )

    def on_transposed(self) -> View:
        """Returns this view re-expressed on ``W`` when it was a view of ``W^T``.

        A slice along axis ``a`` of ``W^T`` is the transpose of a slice along ``1 - a`` of ``W``.
        """
        axis = 1 - self.slice_axis if self.has_slice else self.slice_axis
        return dataclasses.replace(self, slice_axis=axis, transpose=not self.transpose)

    def attributes(self) -> dict[str, int | float]:
        """Returns the ICL node attributes that express this view (defaults omitted).

        A cast has no attribute of its own: IclMatMul infers it from ``A``'s type, and the rule
        sets IclGather's ``output_dtype``. A slice states all three of its attributes.
        """
        attrs = self.view_attrs.to_attrs()
        if self.has_slice:
            attrs.update(
                slice_axis=self.slice_axis, slice_start=self.slice_start, slice_size=self.slice_size
            )
        if self.rank and self.delta_transpose:
            attrs[DELTA_TRANSPOSE.name] = 1
        return attrs
