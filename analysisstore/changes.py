"""What a PATCH may change: parsed, checked against the immutable fields, applied to a copy."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from .errors import BadRequest, Finalized
from .queries import check_field
from .validation import prepare

__all__ = ["Changes", "IMMUTABLE_FIELDS", "MUTABLE_AFTER_TAIL", "REVISION_FIELD"]

#: Identity and provenance never change; neither do the parent links.
IMMUTABLE_FIELDS = frozenset({"uid", "time", "provenance", "analysis_header", "exit_status"})
#: Once an analysis has its tail, only these annotations may still change.
MUTABLE_AFTER_TAIL = frozenset({"invalid", "tags", "notes"})
#: How many times a document was updated; kept by the service.
REVISION_FIELD = "_revision"
MAX_CHANGES = 100


@dataclass
class Changes:
    """``{"$set": {...}, "$unset": [...]}`` of one PATCH."""

    set: dict[str, Any] = field(default_factory=dict)
    unset: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, body: Any) -> "Changes":
        if not isinstance(body, dict) or not body or set(body) - {"$set", "$unset"}:
            raise BadRequest('a PATCH body is {"$set": {field: value, ...}} and/or {"$unset": [field, ...]}')
        to_set, to_unset = body.get("$set", {}), body.get("$unset", [])
        if not isinstance(to_set, dict) or not isinstance(to_unset, list):
            raise BadRequest("$set takes an object, $unset a list of field names")
        if not to_set and not to_unset:
            raise BadRequest("the PATCH changes nothing")
        if len(to_set) + len(to_unset) > MAX_CHANGES:
            raise BadRequest(f"at most {MAX_CHANGES} fields per PATCH")
        for name in [*to_set, *to_unset]:
            check_field(name)
        both = set(to_set) & set(to_unset)
        if both:
            raise BadRequest(f"fields both set and unset: {sorted(both)}")
        return cls(dict(to_set), list(to_unset))

    def check_allowed(self, doc_type: str, finalized: bool, header_uid: str) -> None:
        tops = {name.split(".")[0] for name in [*self.set, *self.unset]}
        immutable = sorted(tops & (IMMUTABLE_FIELDS | {REVISION_FIELD}))
        if immutable:
            raise BadRequest(f"{', '.join(immutable)} cannot be changed: uid, time, provenance, parent links "
                             "and exit_status are immutable")
        if finalized and tops - MUTABLE_AFTER_TAIL:
            raise Finalized(
                f"analysis {header_uid!r} is finalized; only {', '.join(sorted(MUTABLE_AFTER_TAIL))} "
                f"may still change, not {', '.join(sorted(tops - MUTABLE_AFTER_TAIL))}"
            )

    def apply(self, doc_type: str, stored: dict[str, Any]) -> dict[str, Any]:
        """``stored`` (a ``doc_type``) as it will be, validated against its schema (422 if it would be invalid)."""
        updated = copy.deepcopy(stored)
        updated.pop(REVISION_FIELD, None)
        for name, value in self.set.items():
            *parents, leaf = name.split(".")
            target = updated
            for step in parents:
                target = target.setdefault(step, {})
                if not isinstance(target, dict):
                    raise BadRequest(f"cannot set {name!r}: {step!r} is not an object")
            target[leaf] = value
        for name in self.unset:
            *parents, leaf = name.split(".")
            parent: Any = updated
            for step in parents:
                parent = parent.get(step) if isinstance(parent, dict) else None
            if isinstance(parent, dict):
                parent.pop(leaf, None)
        return prepare(doc_type, updated, now=stored["time"])[0]
