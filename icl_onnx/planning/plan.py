"""The SharePlan: what the analysis found and exactly what the rewrite will do.

``icl_onnx.planning.analyze`` builds it, ``icl-onnx scan`` prints it, ``ApplySharePlanPass``
executes it. Its public fields are plain data (names, shapes, views, rule names), serialised by
``to_dict`` and compared by ``==``; the IR objects it was computed on (the values, the consumer
nodes, the rule objects, the graph a canonical tensor must live in) sit in fields marked
``ir_field()``: not serialised, not compared, not printed. A plan is applied only to the model
it was computed on.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from icl_onnx.analysis.findings import QuantizedNearCopy, Skipped
from icl_onnx.views import View, ir_field

if TYPE_CHECKING:
    import onnx_ir as ir

    from icl_onnx.rules.base import ConsumerRule

__all__ = [
    "Consumer",
    "Member",
    "ShareGroup",
    "SharePlan",
    "CrossMember",
    "CrossGroup",
    "CrossPlan",
    "to_data",
]


def to_data(obj: Any) -> Any:
    """Returns ``obj`` as JSON-ready data: dataclasses become dicts without their IR fields.

    A field's key is its name, or its ``metadata["key"]`` (``Consumer.rule_name`` is ``rule``).
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.metadata.get("key", f.name): to_data(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if not f.metadata.get("ir")
        }
    if isinstance(obj, (list, tuple)):
        return [to_data(v) for v in obj]
    return obj


@dataclasses.dataclass
class Consumer:
    """One use of a group's tensor: the node, which input, and the rule that rewrites it.

    ``rule`` is the consumer rule (``icl_onnx.rules``) that makes the node read the canonical
    tensor, ``rule_name`` its name (``"rule"`` in ``to_dict``, as ``scan`` prints it), and
    ``becomes`` the node's op type after it; a consumer no rule covers has no ``rule``,
    ``rule_name == ""`` and a ``reason``.
    """

    node: str
    op_type: str
    input_index: int
    rule_name: str = dataclasses.field(default="", metadata={"key": "rule"})  # "": none covers it
    becomes: str = ""  # the node's op type after the rewrite
    reason: str = ""  # why no rule covers it
    target: ir.Node | None = ir_field()  # the consumer node
    rule: ConsumerRule | None = ir_field()  # the covering rule

    @property
    def covered(self) -> bool:
        """True when the consumer can read the canonical tensor after the rewrite."""
        return bool(self.rule_name)


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
