"""Reproduce a stored analysis: the same class, the exact stored inputs and parameters, outputs compared.

The verdict per output key depends on its declared dtype:

* ``number`` and numeric ``array``: *identical* when equal (NaN equals NaN), *within tolerance* when
  ``|fresh - stored| <= atol + rtol * |stored|`` everywhere (the defaults, rtol 1e-9 and atol 0, admit only
  floating-point reordering noise), else *different*;
* ``integer``, ``string``, ``boolean``, ``object`` and non-numeric arrays: *identical* or *different*.

An analysis is reproduced when its code hash is unchanged and every key of every record is identical or
within tolerance, with the same streams and record counts. A stored analysis that failed is reproduced
when the re-run fails with the same reason (its location in the source may move). An analysis without
its tail, or aborted, has no final outputs: :class:`NothingToCompare`.
"""
from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Mapping

import numpy as np

from ..client import AnalysisClient
from ..analyses.base import BaseAnalysis, code_hash
from .driver import load_input, write_analysis

__all__ = ["Reproduction", "KeyVerdict", "NothingToCompare", "analysis_classes", "reproduce", "record_reproduction",
           "ENTRY_POINT_GROUP", "RTOL", "ATOL"]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "analysisstore.analyses"
RTOL, ATOL = 1e-9, 0.0
IDENTICAL, WITHIN, DIFFERENT = "identical", "within tolerance", "different"


class NothingToCompare(Exception):
    """The stored analysis has no final outputs (no tail yet, or aborted): a re-run has nothing to match."""


@dataclass
class KeyVerdict:
    """How one output key of one stream compares, over all its records."""

    stream: str
    key: str
    verdict: str
    detail: str = ""


@dataclass
class Reproduction:
    """The outcome of re-running one stored analysis."""

    uid: str
    analysis_name: str
    stored_codehash: str | None
    current_codehash: str
    keys: list[KeyVerdict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: How the stored analysis ended (``success`` or ``fail``) and the reason its tail gives.
    stored_status: str = "success"
    stored_reason: str | None = None
    #: Why the re-run failed (as the driver would record it), or None when it ran through.
    fresh_failure: str | None = None

    @property
    def code_same(self) -> bool:
        return self.stored_codehash == self.current_codehash

    @property
    def reproduced(self) -> bool:
        return self.code_same and not self.problems and all(k.verdict != DIFFERENT for k in self.keys)


def analysis_classes() -> dict[str, type[BaseAnalysis]]:
    """The shipped analyses and any registered under the ``analysisstore.analyses`` entry point group."""
    from ..analyses import ANALYSES

    classes = dict(ANALYSES)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        cls = entry.load()
        classes[getattr(cls, "analysis_name", entry.name)] = cls
    return classes


def _numeric(value: Any) -> np.ndarray | None:
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return None
    return array


def compare(dtype: str, stored: Any, fresh: Any, rtol: float = RTOL, atol: float = ATOL) -> tuple[str, float]:
    """The verdict for one value, and the largest absolute difference (0 when not numeric)."""
    if dtype in ("number", "array") and not isinstance(stored, (str, bool)) and not isinstance(fresh, (str, bool)):
        a, b = _numeric(stored), _numeric(fresh)
        if a is not None and b is not None and a.shape == b.shape:
            if np.array_equal(a, b, equal_nan=True):
                return IDENTICAL, 0.0
            both_nan = np.isnan(a) & np.isnan(b)
            gap = np.where(both_nan, 0.0, np.abs(a - b))
            worst = float(np.nanmax(gap)) if gap.size else 0.0
            close = np.isclose(b, a, rtol=rtol, atol=atol, equal_nan=True).all()
            return (WITHIN if close else DIFFERENT), (worst if not math.isnan(worst) else math.inf)
    same = isinstance(stored, bool) == isinstance(fresh, bool) and stored == fresh  # True is not 1.0 here
    return (IDENTICAL if same else DIFFERENT), 0.0


def _stored_outputs(client: AnalysisClient, uid: str) -> dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]:
    view = client.get_analysis(uid)
    outputs = {}
    for stream in view["streams"]:
        records = client.iter_data_reference(data_reference_header=stream["uid"], order_by=["seq_num", "time"])
        outputs[stream.get("name") or stream["uid"]] = (dict(stream["data_keys"]), [dict(r["data"]) for r in records])
    return outputs


def reproduce(client: AnalysisClient, uid: str, *, rtol: float = RTOL, atol: float = ATOL,
              classes: Mapping[str, type[BaseAnalysis]] | None = None) -> tuple[Reproduction, BaseAnalysis | None]:
    """Re-run analysis ``uid`` (nothing is written) and compare its outputs, or its failure, with the stored ones.

    Returns the verdict and the re-run analysis (None when it could not even be built from the stored
    parameters). Raises :class:`NothingToCompare` for an analysis without final outputs and LookupError
    when its class is not installed.
    """
    view = client.get_analysis(uid)
    header, status, tail = view["header"], view["status"], view.get("tail") or {}
    provenance = dict(header.get("provenance") or {})
    name = provenance.get("analysis_name")
    known = analysis_classes() if classes is None else dict(classes)
    if name not in known:
        raise LookupError(f"no analysis class named {name!r} is installed here (known: {', '.join(sorted(known))}); "
                          f"install the package that registers it under the {ENTRY_POINT_GROUP!r} entry points")
    if status not in ("success", "fail"):
        raise NothingToCompare(_why_nothing_to_compare(uid, status, tail.get("reason")))
    cls = known[name]
    inputs = [load_input(client, i) for i in provenance.get("inputs") or []]
    result = Reproduction(uid, name, provenance.get("analysis_codehash"), code_hash(cls), stored_status=status,
                          stored_reason=tail.get("reason"))
    analysis: BaseAnalysis | None = None
    try:
        analysis = cls(inputs, provenance.get("analysis_params") or {})
        analysis.run()
    except Exception as exc:  # noqa: BLE001 - the analysis's own failure is a result to compare, as the driver records it
        result.fresh_failure = analysis.failure_reason(exc) if analysis is not None else f"{type(exc).__name__}: {exc}"
    if status == "fail" or result.fresh_failure is not None:
        _compare_failures(result)
        return result, analysis
    assert analysis is not None
    stored = _stored_outputs(client, uid)
    for stream in sorted(set(stored) | set(analysis.outputs)):
        if stream not in analysis.outputs or stream not in stored:
            result.problems.append(f"stream {stream!r} is only in the {'stored' if stream in stored else 'new'} outputs")
            continue
        data_keys, old_rows = stored[stream]
        new_rows = analysis.outputs[stream]
        if len(old_rows) != len(new_rows):
            result.problems.append(f"stream {stream!r}: {len(old_rows)} records stored, {len(new_rows)} now")
            continue
        for key in sorted(data_keys):
            verdicts = [compare(data_keys[key].get("dtype", "object"), old.get(key), new.get(key), rtol, atol)
                        for old, new in zip(old_rows, new_rows)]
            worst = max((v for v in verdicts), key=lambda v: ([IDENTICAL, WITHIN, DIFFERENT].index(v[0]), v[1]),
                        default=(IDENTICAL, 0.0))
            result.keys.append(KeyVerdict(stream, key, worst[0], f"max |difference| {worst[1]:.3g}" if worst[1] else ""))
    return result, analysis


def _why_nothing_to_compare(uid: str, status: str, reason: str | None) -> str:
    because = f" ({reason})" if reason else ""
    if status == "abort":
        return f"analysis {uid} was aborted{because}: its outputs are not final, so there is nothing to compare"
    return (f"analysis {uid} has no tail yet (status {status}): its outputs are not final, so there is nothing "
            "to compare; reproduce it once it has finished")


def _same_failure(stored: str | None, fresh: str) -> bool:
    """Does the stored reason say what the re-run's does? The "(at file:line)" the driver adds may have moved."""
    if stored is None:
        return False
    return stored == fresh or stored.rsplit(" (at ", 1)[0] == fresh.rsplit(" (at ", 1)[0]


def _compare_failures(result: Reproduction) -> None:
    """The verdict when either run failed: the failure itself is the output compared."""
    fresh = result.fresh_failure
    if result.stored_status == "fail" and fresh is None:
        result.problems.append(f"the stored analysis failed ({result.stored_reason or 'no reason recorded'}), "
                               "but the re-run succeeds")
    elif result.stored_status != "fail" and fresh is not None:
        result.problems.append(f"the stored analysis succeeded, but the re-run fails: {fresh}")
    elif fresh is not None and not _same_failure(result.stored_reason, fresh):
        result.problems.append(f"the stored analysis failed ({result.stored_reason or 'no reason recorded'}), "
                               f"and the re-run fails differently: {fresh}")


def record_reproduction(client: AnalysisClient, original: str, analysis: BaseAnalysis,
                        failure: str | None = None) -> tuple[str, bool]:
    """Store a reproduction as a new analysis naming the original in ``provenance.reproduces``.

    ``failure``: why the re-run failed; the reproduction is then stored with a ``fail`` tail and that reason.

    Returns its uid and whether it was stored now (False: this code already recorded its reproduction; the
    uid is derived from the original's and the code's, so recording again adds nothing).
    """
    namespace = uuid.uuid5(uuid.UUID(analysis.analysis_uuid), f"reproduces/{original}")
    docs = analysis.export_analysis("fail", failure) if failure is not None else analysis.export_analysis()
    header_uid = str(uuid.uuid5(namespace, docs[0][1]["uid"]))
    if client.find_analysis_header(uid=header_uid, limit=1):
        return header_uid, False
    new_uid = {}
    for _, doc in docs:
        new_uid[doc["uid"]] = str(uuid.uuid5(namespace, doc["uid"]))
    for doc_type, doc in docs:
        doc["uid"] = new_uid[doc["uid"]]
        for parent in ("analysis_header", "data_reference_header"):
            if parent in doc:
                doc[parent] = new_uid[doc[parent]]
        if doc_type == "analysis_header":
            doc["provenance"] = {**doc["provenance"], "reproduces": original}
    write_analysis(client, docs)
    return header_uid, True
