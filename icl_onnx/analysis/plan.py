"""The SharePlan: what the analysis found and exactly what the rewrite will do.

``icl_onnx.analysis.analyze`` builds it, ``icl-onnx scan`` prints it, ``ApplySharePlanPass``
executes it. Its public fields are plain data (names, shapes, views, rule names), serialised by
``to_dict`` and compared by ``==``; the IR objects it was computed on (the values, the consumer
nodes, the rule objects, the graph a canonical tensor must live in) sit in fields marked
``ir_field()``: not serialised, not compared, not printed. A plan is applied only to the model
it was computed on.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import onnx_ir as ir

    from icl_onnx.rules.base import ConsumerRule

__all__ = [
    "View",
    "Consumer",
    "Member",
    "ShareGroup",
    "Skipped",
    "QuantizedNearCopy",
    "SharePlan",
    "CrossMember",
    "CrossGroup",
    "CrossPlan",
    "ir_field",
    "to_data",
]


def ir_field() -> Any:
    """A field that holds an IR object of the analysed model: not serialised, compared or shown."""
    return dataclasses.field(default=None, repr=False, compare=False, metadata={"ir": True})


def to_data(obj: Any) -> Any:
    """Returns ``obj`` as JSON-ready data: dataclasses become dicts without their IR fields."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: to_data(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if not f.metadata.get("ir")
        }
    if isinstance(obj, (list, tuple)):
        return [to_data(v) for v in obj]
    return obj


@dataclasses.dataclass(frozen=True)
class View:
    """How a member reads the canonical tensor: ``member == view(canonical)``.

    The fields mirror the ICL operators' attributes (docs/operators.md). Every field's default
    is the identity, so ``View()`` is an exact copy. To add a kind of view (a reshape, a
    block-quantized storage, a low-rank delta): add a field whose default is the identity,
    name its part in ``parts`` (and in ``kind`` if the name should read differently), express
    it in ``attributes`` or in the rule that writes the node, and let the rules that can read
    it list the part in their ``view_parts`` (``icl_onnx.rules``); rules that do not list it
    never claim such a view.
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

        A cast has no attribute of its own: IclMatMul infers it from ``A``'s type, and the pass
        sets IclGather's ``output_dtype``.
        """
        attrs: dict[str, int | float] = {}
        if self.transpose:
            attrs["transpose"] = 1
        if self.has_slice:
            attrs.update(slice_axis=self.slice_axis, slice_start=self.slice_start)
            attrs["slice_size"] = self.slice_size
        if self.scale != 1.0:
            attrs["scale"] = self.scale
        if self.rank and self.delta_transpose:
            attrs["delta_transpose"] = 1
        return attrs


@dataclasses.dataclass
class Consumer:
    """One use of a group's tensor: the node, which input, and the rule that rewrites it.

    ``rule`` names the consumer rule (``icl_onnx.rules``) that makes the node read the
    canonical tensor, and ``becomes`` the node's op type after it; a consumer no rule covers
    has ``rule == ""`` and a ``reason``.
    """

    node: str
    op_type: str
    input_index: int
    rule: str = ""  # the covering rule's name; "" when none covers it
    becomes: str = ""  # the node's op type after the rewrite
    reason: str = ""  # why no rule covers it
    target: ir.Node | None = ir_field()  # the consumer node
    covering: ConsumerRule | None = ir_field()  # the rule object named by ``rule``

    @property
    def covered(self) -> bool:
        """True when the consumer can read the canonical tensor after the rewrite."""
        return bool(self.rule)


@dataclasses.dataclass
class Member:
    """A tensor of a group: an initializer, or the output of a view node on one."""

    name: str
    source: str  # "initializer" or the view op type ("Transpose")
    shape: tuple[int, ...]
    dtype: str
    nbytes: int  # bytes the tensor holds (0 for a node output that is free in the file)
    view: View  # member == view(canonical)
    consumers: list[Consumer] = dataclasses.field(default_factory=list)
    kept_reason: str = ""  # why the member stays after the rewrite ("" when it goes)
    value: ir.Value | None = ir_field()  # the initializer, or the view node's output
    view_node: ir.Node | None = ir_field()  # the view node (Transpose, Reshape...) it comes from

    @property
    def freed_bytes(self) -> int:
        """Bytes the rewrite frees in the file (0 when the member stays)."""
        return 0 if self.kept_reason else self.nbytes


@dataclasses.dataclass
class ShareGroup:
    """Tensors that are all views of one canonical initializer.

    ``canonical`` is the tensor's name after the rewrite (it is renamed when it must be read
    across graphs under a name another value holds). With several models, ``origin`` names
    the model whose tensor the canonical is when this model holds no copy of it: the rewrite
    adds that tensor to this model, and the shared data file stores it once.
    """

    canonical: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    members: list[Member]
    canonical_consumers: list[Consumer] = dataclasses.field(default_factory=list)
    origin: str = ""  # the model that holds the canonical tensor, "" for this model
    value: ir.Value | None = ir_field()  # the canonical tensor (of ``origin`` when set)
    home: ir.Graph | None = ir_field()  # the graph the canonical tensor lives in afterwards

    @property
    def freed_bytes(self) -> int:
        """Initializer bytes the rewrite frees in the file."""
        return sum(m.freed_bytes for m in self.members)

    @property
    def session_copies_freed(self) -> int:
        """Copies ORT would hold at run time that the rewrite removes (view nodes included)."""
        return sum(1 for m in self.members if not m.kept_reason)


@dataclasses.dataclass
class Skipped:
    """An initializer left out of the analysis, and why."""

    name: str
    reason: str


@dataclasses.dataclass(frozen=True)
class QuantizedNearCopy:
    """A float table that a quantized weight of the same model approximates.

    Attributes:
        table: the float initializer's name.
        shape: its shape ``[V, H]``.
        table_bytes: its size, which sharing the quantized weight would free.
        quantized: the quantized weight's name.
        quantized_bytes: the quantized weight's bytes (data, scales and zero points).
        consumer: the node that reads the quantized weight.
        scheme: how it is quantized, e.g. ``MatMulNBits 4-bit, block 32``.
        transposed: the quantized weight holds ``table^T``.
        max_error: the largest ``|dequantized - table|``.
        mean_error: the mean ``|dequantized - table|``.
        max_abs: the largest ``|table|``, for scale.
        max_steps: the largest error in units of its block's quantization step (at most 1).
        shareable: whether ``--share-quantized`` can rewrite the table's readers.
        reason: why not, when it cannot.
    """

    table: str
    shape: tuple[int, int]
    table_bytes: int
    quantized: str
    quantized_bytes: int
    consumer: str
    scheme: str
    transposed: bool
    max_error: float
    mean_error: float
    max_abs: float
    max_steps: float
    shareable: bool = False
    reason: str = ""


@dataclasses.dataclass
class SharePlan:
    """Result of analysing one model: groups of shared tensors and what was left alone."""

    groups: list[ShareGroup]
    skipped: list[Skipped]
    initializer_count: int
    initializer_bytes: int
    #: float tables a quantized weight approximates: lossy, reported, never applied
    near_copies: list[QuantizedNearCopy] = dataclasses.field(default_factory=list)
    graph: ir.Graph | None = ir_field()  # the main graph of the model it was computed on

    @property
    def freed_bytes(self) -> int:
        """Initializer bytes the rewrite frees in the file."""
        return sum(g.freed_bytes for g in self.groups)

    @property
    def kept(self) -> list[Member]:
        """Members that keep their own copy, each with its reason."""
        return [m for g in self.groups for m in g.members if m.kept_reason]

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-serialisable dict (with derived totals)."""
        out = to_data(self)
        out["freed_bytes"] = self.freed_bytes
        for group, raw in zip(self.groups, out["groups"], strict=True):
            raw["freed_bytes"] = group.freed_bytes
            for member, raw_member in zip(group.members, raw["members"], strict=True):
                raw_member["kind"] = member.view.kind
                raw_member["freed_bytes"] = member.freed_bytes
        return out


@dataclasses.dataclass
class CrossMember:
    """A tensor of one model that is a view of a tensor held by another model.

    A low-rank member (``view.rank > 0``) is stored as its two factors: ``factor_bytes``, and
    the largest ``|view(canonical) + U·V - member|`` measured on every element (``max_error``,
    also in units in the last place of ``max|member|``: ``error_ulps``).
    """

    model: str
    name: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    view: View  # member == view(canonical)
    factor_bytes: int = 0
    max_error: float = 0.0
    error_ulps: float = 0.0

    @property
    def saved_bytes(self) -> int:
        """Bytes the member no longer takes (its factors still do)."""
        return self.nbytes - self.factor_bytes


@dataclasses.dataclass
class CrossGroup:
    """Tensors of several models that are all views of one canonical tensor."""

    model: str  # the model that holds the canonical tensor
    canonical: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    members: list[CrossMember]

    @property
    def models(self) -> list[str]:
        """Every model the group touches, the canonical's first."""
        return list(dict.fromkeys([self.model, *(m.model for m in self.members)]))


@dataclasses.dataclass
class CrossPlan:
    """Groups that cross model files, and each model's own plan."""

    models: list[str]
    plans: list[SharePlan]
    groups: list[CrossGroup]

    @property
    def shared_bytes(self) -> int:
        """Bytes of the members that read another model's tensor (low-rank ones: less factors)."""
        return sum(m.saved_bytes for g in self.groups for m in g.members)

    @property
    def low_rank(self) -> list[tuple[CrossGroup, CrossMember]]:
        """Every low-rank relation: (the group of the base tensor, the member)."""
        return [(g, m) for g in self.groups for m in g.members if m.view.rank]

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-serialisable dict."""
        out = {
            "models": self.models,
            "plans": [p.to_dict() for p in self.plans],
            "groups": to_data(self.groups),
            "shared_bytes": self.shared_bytes,
        }
        for group, raw in zip(self.groups, out["groups"], strict=True):
            for member, raw_member in zip(group.members, raw["members"], strict=True):
                raw_member["kind"] = member.view.kind
                raw_member["saved_bytes"] = member.saved_bytes
        return out
