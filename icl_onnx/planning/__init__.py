"""Planning: the SharePlan of a model, or of several models planned together (changes nothing).

Above detection (``icl_onnx.analysis``) and the consumer rules (``icl_onnx.rules``): it chooses
each group's canonical tensor and the rule of every consumer (``groups.py``), plans the groups
that cross models (``crossmodel.py``) and the low-rank variants (``variants.py``), and returns
the plan (``plan.py``) that ``ApplySharePlanPass`` executes.

Names. A *group* (share set) is the tensors that are all views of one canonical tensor; each
tensor other than the canonical one is a *member*. One noun each, with the stage in front:
detection finds a group's tensors, canonical candidates included, as ``Reader``s
(``analysis/readers.py``); planning plans a group in one model as a ``PlannedGroup`` of
``PlannedMember``s and a group across models as a ``PlannedCrossGroup`` (one ``PlannedGroup``
per model); the plan reports a group of one model as a ``ShareGroup`` of ``Member``s and one
across models as a ``CrossGroup`` of ``CrossMember``s (public names, which the JSON and the API
keep). A *rule* is a ``ConsumerRule`` object (``icl_onnx.rules``): ``Consumer.rule`` is the
one covering a consumer and ``Consumer.rule_name`` its name, as the plan prints it.
"""

from icl_onnx.analysis.findings import QuantizedNearCopy, Skipped
from icl_onnx.analysis.readers import DEFAULT_MIN_ELEMENTS
from icl_onnx.planning.plan import (
    Consumer,
    CrossGroup,
    CrossMember,
    CrossPlan,
    Member,
    ShareGroup,
    SharePlan,
)
from icl_onnx.planning.planner import analyze, plan_models, plan_sharing
from icl_onnx.views import View

__all__ = [
    "DEFAULT_MIN_ELEMENTS",
    "analyze",
    "plan_models",
    "plan_sharing",
    "Consumer",
    "CrossGroup",
    "CrossMember",
    "CrossPlan",
    "Member",
    "QuantizedNearCopy",
    "ShareGroup",
    "SharePlan",
    "Skipped",
    "View",
]
