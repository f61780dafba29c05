"""The registered consumer rules, and the choice of the one that covers a use."""

from __future__ import annotations

from icl_onnx.rules.base import ConsumerRule, Outcome, Use
from icl_onnx.rules.exact_copy import RewireExactCopy

__all__ = ["register", "unregister", "registered", "cover", "EXACT_COPY"]

_RULES: list[ConsumerRule] = []
#: The fallback for exact copies no registered rule claims.
EXACT_COPY = RewireExactCopy()


def register(cls: type[ConsumerRule]) -> type[ConsumerRule]:
    """Class decorator: registers one instance of the rule ``cls`` (names are unique)."""
    if any(rule.name == cls.name for rule in _RULES):
        raise ValueError(f"a consumer rule named {cls.name!r} is registered already")
    _RULES.append(cls())
    return cls


def unregister(name: str) -> None:
    """Removes the rule called ``name`` (for tests that register a rule of their own)."""
    _RULES[:] = [rule for rule in _RULES if rule.name != name]


def registered() -> list[ConsumerRule]:
    """The registered rules, in registration order."""
    return list(_RULES)


def cover(use: Use) -> Outcome | None:
    """Returns the outcome of the one rule that claims ``use``, or ``None`` when none does.

    Exact copies no registered rule claims are covered by ``EXACT_COPY``.

    Raises:
        RuntimeError: two registered rules claim the same use (their matches must not overlap).
    """
    claims = [(rule, outcome) for rule in _RULES if (outcome := rule.claim(use)) is not None]
    if len(claims) > 1:
        names = ", ".join(rule.name for rule, _ in claims)
        raise RuntimeError(f"consumer rules {names} all claim {use.node.op_type} input {use.index}")
    if claims:
        return claims[0][1]
    return EXACT_COPY.claim(use)
