"""A lineage as a W3C PROV document, built with the ``prov`` library (the model's reference implementation).

Each analysis is an activity (start: header time, end: tail time; name, parameters, code hash, software and
exit status as attributes) associated with the person who ran it (user@host). What it produced is an entity,
``result/{uid}``, a collection whose members are its streams (``stream/{uid}``, with their data keys). An
analysis ``used`` the result of each of its inputs, and its result ``wasDerivedFrom`` theirs. Identifiers are
the service's own URLs, so a PROV reader can follow them back.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from prov.model import PROV_TYPE, ProvDocument

__all__ = ["FORMATS", "prov_document", "serialize"]

#: Serialisation formats offered, with their media types.
FORMATS = {"json": "application/json", "provn": "text/provenance-notation", "xml": "application/xml"}
_PROVENANCE_ATTRIBUTES = ("analysis_name", "analysis_codehash", "host", "user")


def _local(kind: str, uid: str) -> str:
    return f"{kind}/{quote(uid, safe='-._~')}"


def _when(epoch: Any) -> datetime | None:
    return datetime.fromtimestamp(epoch, tz=timezone.utc) if isinstance(epoch, (int, float)) else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def prov_document(lineage: dict[str, Any], material: dict[str, Any], base_uri: str) -> ProvDocument:
    """The PROV document of the analyses of a lineage (see :func:`find_lineage`)."""
    doc = ProvDocument()
    ns = doc.add_namespace("asst", base_uri)
    headers, streams, tails = material["headers"], material["streams"], material["tails"]
    agents: dict[str, Any] = {}
    for node in lineage["nodes"]:
        uid = node["uid"]
        header = headers.get(uid, {})
        provenance = header.get("provenance") if isinstance(header.get("provenance"), dict) else {}
        tail = tails.get(uid)
        attributes: dict[Any, Any] = {ns["status"]: node["status"] or "unknown", ns["uid"]: uid}
        for key in _PROVENANCE_ATTRIBUTES:
            if provenance.get(key) is not None:
                attributes[ns[key]] = _text(provenance[key])
        for key in ("analysis_params", "params", "software"):
            if provenance.get(key) is not None:
                attributes[ns[key]] = _text(provenance[key])
        if tail is not None and tail.get("reason"):
            attributes[ns["reason"]] = _text(tail["reason"])
        activity = doc.activity(ns[_local("analysis", uid)], _when(header.get("time")),
                                _when(tail.get("time")) if tail else None, attributes)
        result = doc.entity(ns[_local("result", uid)], {PROV_TYPE: "prov:Collection"})
        doc.wasGeneratedBy(result, activity)
        for stream in streams.get(uid, []):
            member = doc.entity(ns[_local("stream", stream["uid"])], {
                ns["name"]: _text(stream.get("name", stream["uid"])), ns["data_keys"]: _text(stream.get("data_keys"))})
            doc.wasGeneratedBy(member, activity)
            doc.hadMember(result, member)
        person = "@".join(str(provenance[k]) for k in ("user", "host") if provenance.get(k))
        if person:
            if person not in agents:
                agents[person] = doc.agent(ns[_local("agent", person)], {PROV_TYPE: "prov:Person"})
            doc.wasAssociatedWith(activity, agents[person])
        # Inputs beyond the depth asked for, or not stored here, still appear: as results with no history.
        for used in provenance.get("inputs") or []:
            if isinstance(used, str):
                doc.used(activity, ns[_local("result", used)])
                doc.wasDerivedFrom(result, ns[_local("result", used)])
    return doc


def serialize(doc: ProvDocument, fmt: str) -> str:
    """The document as PROV-JSON, PROV-N or PROV-XML."""
    text = doc.serialize(format=fmt, indent=2) if fmt != "provn" else doc.serialize(format="provn")
    assert text is not None  # serialize() returns None only when given a stream to write to
    return text
