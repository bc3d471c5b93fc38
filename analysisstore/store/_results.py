"""What a write reports per document: inserted, already stored, or an error."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import AnalysisStoreError

__all__ = ["INSERTED", "ALREADY_STORED", "ERROR", "ItemResult", "WriteOutcome"]

INSERTED = "inserted"
ALREADY_STORED = "already stored"
ERROR = "error"


@dataclass
class ItemResult:
    """What happened to one document of a write: inserted, already stored, or an error."""

    index: int
    uid: Any
    result: str = INSERTED
    error: AnalysisStoreError | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "uid": self.uid, "result": self.result}
        if self.error is not None:  # not written, whatever it would have been
            out.update(result=ERROR, status=self.error.status, type=self.error.type_name, message=self.error.message)
        return out


@dataclass
class WriteOutcome:
    """Per-item results of one write request, in request order."""

    items: list[ItemResult] = field(default_factory=list)
    #: True once anything reached the database; failures found before that wrote nothing.
    written: bool = False

    @property
    def failed(self) -> list[ItemResult]:
        return [item for item in self.items if item.error is not None]
