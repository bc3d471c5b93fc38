"""Bring a database written by the 0.x service or an older analysisstore to today's layout: plan, then apply.

:func:`plan_upgrade` only reads: it finds duplicate uids, values outside
today's schemas, missing or obstructive indexes, and returns an
:class:`UpgradePlan` (what it found, and the writes that would fix it).
:func:`apply_plan` makes those writes. Nothing is deleted without being kept:
a document taken out of a collection, and the original of every document a
mapping changes, is first copied into ``upgrade_aside``; only re-sent copies
identical to the one kept are dropped. Applying twice changes nothing the
second time, because the plan of an upgraded database is empty.

Layout 2 stores each document under ``_id`` = its uid. Documents stored under
an ObjectId (layouts 0 and 1) are moved in place: every copy is inserted
first, then the originals are removed, so every document is always stored at
least once. A run stopped half-way leaves some documents in both forms; the
next run's plan recognises such a pair (same content, one already under its
uid) and finishes the move, without reporting it as a duplicate.

This is a one-off maintenance job run while the service is stopped, so it
uses PyMongo's synchronous API.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from bson import ObjectId
from pymongo import ASCENDING, DeleteOne, IndexModel, UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from .._version import __version__
from ..validation import prepare
from ..errors import AnalysisStoreError
from ..schemas import DOC_TYPES, PARENT_FIELD
from ._database_errors import _DUPLICATE_KEY
from ._indexes import RETIRED_INDEXES, index_models
from ._layout import (
    ASIDE_COLLECTION,
    LAYOUT_VERSION,
    META_COLLECTION,
    LayoutError,
    layout_record,
    obstructive_unique_index,
)
from ._upgrade_values import (
    MISSING,
    Unmappable,
    map_data_keys,
    map_exit_status,
    map_parent_link,
    map_provenance,
    map_time,
    value_dtype,
)

__all__ = ["UpgradePlan", "Finding", "plan_upgrade", "apply_plan"]

log = logging.getLogger(__name__)

#: Findings list this many example uids (differing duplicates list every uid).
EXAMPLES = 10
_MAX_DETAILS = 40  # distinct messages per check before the rest are counted together
_REVISIONS_INDEX = IndexModel([("doc_type", ASCENDING), ("uid", ASCENDING), ("revision", ASCENDING)], unique=True)
_ZERO_X_EXTRAS = {"file_lookup": "0.x file uploads (the files stayed on the 0.x server's disk)",
                  "event_header": "an early 0.x collection no version of the service reads"}


@dataclass
class Finding:
    """One kind of problem in one collection, with how many documents have it and which."""

    check: str
    doc_type: str
    action: str  # "collapse", "set aside", "map", "create", "drop", "record" (changes) or "flag" (left as is)
    detail: str
    count: int = 0
    uids: list[Any] = field(default_factory=list)
    list_all: bool = False

    @property
    def is_change(self) -> bool:
        return self.action != "flag"

    def as_json(self) -> dict[str, Any]:
        return {"check": self.check, "collection": self.doc_type, "action": self.action, "detail": self.detail,
                "count": self.count, "uids": self.uids}


@dataclass
class UpgradePlan:
    """What a database needs, and the writes that bring it to today's layout."""

    database: str
    layout_before: Any = None
    findings: dict[tuple[str, str, str, str], Finding] = field(default_factory=dict)
    collapse: dict[str, list[ObjectId]] = field(default_factory=lambda: defaultdict(list))
    #: (collection, original document, aside entry) — copied aside, then removed from the collection.
    aside: list[tuple[str, dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    #: (collection, original document, fields to set, rules applied) — original copied aside first.
    updates: list[tuple[str, dict[str, Any], dict[str, Any], list[str]]] = field(default_factory=list)
    create_indexes: dict[str, list[IndexModel]] = field(default_factory=dict)
    drop_indexes: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    #: collections holding documents stored under an ObjectId, to be moved to ``_id`` = uid
    convert: set[str] = field(default_factory=set)
    stamp: bool = False

    def note(self, check: str, doc_type: str, action: str, detail: str, uid: Any = None,
             list_all: bool = False, count: int = 1) -> None:
        if (check, doc_type, action, detail) not in self.findings:
            kinds = sum(1 for key in self.findings if key[:3] == (check, doc_type, action))
            if kinds >= _MAX_DETAILS:
                detail = "other values of the same kind"
        finding = self.findings.setdefault((check, doc_type, action, detail),
                                           Finding(check, doc_type, action, detail, list_all=list_all))
        finding.count += count
        if uid is not None and (finding.list_all or len(finding.uids) < EXAMPLES):
            finding.uids.append(uid)

    @property
    def changes(self) -> list[Finding]:
        return [f for f in self.findings.values() if f.is_change]

    @property
    def notices(self) -> list[Finding]:
        return [f for f in self.findings.values() if not f.is_change]

    @property
    def change_count(self) -> int:
        return sum(f.count for f in self.changes)


def _inserted_at(doc: dict[str, Any]) -> float | None:
    oid = doc.get("_id")
    return oid.generation_time.timestamp() if isinstance(oid, ObjectId) else None


def _content(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "_id"}


def _moved(doc: dict[str, Any]) -> bool:
    """Is ``doc`` stored in layout 2's form, under its uid?"""
    return doc.get("_id") == doc.get("uid")


def _stored_order(doc: dict[str, Any]) -> tuple[int, str]:
    """Oldest first: ObjectIds in the order they were made (their hex sorts alike), then moved documents."""
    return (1 if _moved(doc) else 0, str(doc["_id"]))


class _Planner:
    """One read-only pass over a database, filling an UpgradePlan."""

    def __init__(self, db: Database, exit_status_map: dict[str, str] | None) -> None:
        self.db = db
        self.exit_status_map = exit_status_map or {}
        self.plan = UpgradePlan(db.name)
        self.uids: dict[str, set[str]] = {"analysis_header": set(), "data_reference_header": set()}
        #: uid → (stream as stored, fields to set, rules, flagged): finished once its records are seen
        self.streams: dict[str, tuple[dict[str, Any], dict[str, Any], list[str], bool]] = {}
        self.seen_dtypes: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))

    def run(self) -> UpgradePlan:
        layout = self.db[META_COLLECTION].find_one({"_id": "layout"})
        self.plan.layout_before = layout.get("version") if layout else None
        before = self.plan.layout_before
        if isinstance(before, int) and before > LAYOUT_VERSION:
            raise LayoutError(f"database {self.db.name!r} is at layout version {before}, newer than this "
                              f"analysisstore ({__version__}, layout {LAYOUT_VERSION}); run a newer analysisstore")
        names = set(self.db.list_collection_names())
        self._documents("analysis_header", self._scan("analysis_header", names))
        self._tails(names)
        self._documents("data_reference_header", self._scan("data_reference_header", names))
        self._documents("data_reference", self._scan("data_reference", names))
        self._stream_keys()
        self._indexes(names)
        for name, what in _ZERO_X_EXTRAS.items():
            if name in names and (count := self.db[name].estimated_document_count()):
                self.plan.note("unused collection", name, "flag", f"{what}; left as it is", count=count)
        if before != LAYOUT_VERSION:
            self.plan.stamp = True
            self.plan.note("layout", META_COLLECTION, "record",
                           f"layout version {before if before is not None else 'none (0.x)'} → {LAYOUT_VERSION}")
        return self.plan

    # ---- duplicate uids -------------------------------------------------------

    def _scan(self, doc_type: str, names: set[str]) -> Iterator[dict[str, Any]]:
        """Every document of a collection once, duplicate uids resolved: one copy of each uid comes out.

        The database counts the uids first; only the copies of duplicated uids
        are held in memory until the scan ends. Of the copies, the first stored
        (lowest ObjectId) is kept; identical later copies are collapsed, differing
        ones set aside.
        """
        if doc_type not in names:
            return
        duplicated = {group["_id"] for group in self.db[doc_type].aggregate([
            {"$group": {"_id": "$uid", "n": {"$sum": 1}}}, {"$match": {"n": {"$gt": 1}}},
        ], allowDiskUse=True) if isinstance(group["_id"], str) and group["_id"]}
        held: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for doc in self.db[doc_type].find({}, batch_size=2_000):
            if duplicated and doc.get("uid") in duplicated:
                held[doc["uid"]].append(doc)
            else:
                yield doc
        for uid, copies in held.items():
            moved = [d for d in copies if _moved(d)]
            copies = moved + sorted((d for d in copies if not _moved(d)), key=_stored_order)
            kept = copies[0]
            for doc in copies[1:]:
                if moved and _content(doc) == _content(kept):
                    self._note_move(doc_type, doc)  # a stopped move: the move removes the original
                elif _content(doc) == _content(kept):
                    self.plan.collapse[doc_type].append(doc["_id"])
                    self.plan.note("duplicate uid", doc_type, "collapse", "re-sent identical copies: one is kept", uid)
                else:
                    self._set_aside(doc_type, doc, "duplicate uid",
                                    "same uid, different content: the first stored is kept, "
                                    "the others are set aside", kept=kept["_id"], list_all=True)
            yield kept

    def _set_aside(self, doc_type: str, doc: dict[str, Any], check: str, reason: str, kept: Any = None,
                   list_all: bool = False) -> None:
        entry = {"_id": f"{check}:{doc_type}:{doc['_id']}", "check": check, "collection": doc_type,
                 "uid": doc.get("uid"), "reason": reason, "kept": kept}
        self.plan.aside.append((doc_type, doc, entry))
        self.plan.note(check, doc_type, "set aside", reason, doc.get("uid", repr(doc["_id"])), list_all)

    def _note_move(self, doc_type: str, doc: dict[str, Any]) -> None:
        self.plan.convert.add(doc_type)
        self.plan.note("layout", doc_type, "move", "stored under an ObjectId: moved to _id = uid (layout 2)")

    # ---- values ---------------------------------------------------------------

    def _tails(self, names: set[str]) -> None:
        """One tail per analysis: the first stored stays, later ones are set aside."""
        first_tail: dict[str, Any] = {}
        tails = sorted(self._scan("analysis_tail", names), key=_stored_order)
        staying = []
        for tail in tails:
            if not isinstance(tail.get("uid"), str) or not tail["uid"]:
                staying.append(tail)  # set aside as uid-less below; it does not count as the tail
                continue
            link = tail.get("analysis_header", MISSING)
            try:
                mapped = map_parent_link(link, "analysis_header")
            except Unmappable:
                staying.append(tail)  # reported when the tail's values are checked
                continue
            header = mapped[0] if mapped else link
            if header in first_tail:
                self._set_aside("analysis_tail", tail, "second tail",
                                "a later tail of an analysis that already had one (only the first counts)",
                                kept=first_tail[header])
            else:
                first_tail[header] = tail["_id"]
                staying.append(tail)
        self._documents("analysis_tail", staying)

    def _documents(self, doc_type: str, docs: Iterable[dict[str, Any]]) -> None:
        for doc in docs:
            uid = doc.get("uid")
            if not isinstance(uid, str) or not uid:
                self._set_aside(doc_type, doc, "no uid",
                                f"uid {uid!r}: no document can refer to it" if "uid" in doc else "no uid at all")
                continue
            if doc_type in self.uids:  # only parents: a record's uid is never looked up
                self.uids[doc_type].add(uid)
            if not _moved(doc):
                self._note_move(doc_type, doc)
            changes, rules, flagged = self._map_values(doc_type, doc)
            if doc_type == "data_reference_header":
                self.streams[uid] = (doc, changes, rules, flagged)
                continue  # data_keys need the records first: finished in _stream_keys
            if doc_type == "data_reference":
                self._observe_record({**doc, **changes})
            self._finish(doc_type, doc, changes, rules, flagged)

    def _map_values(self, doc_type: str, doc: dict[str, Any]) -> tuple[dict[str, Any], list[str], bool]:
        """The documented mappings of one document's fields: (fields to set, rules, anything flagged)."""
        changes: dict[str, Any] = {}
        rules: list[str] = []
        flagged = False
        mappers: list[tuple[str, Any]] = [("time", lambda v: map_time(v, _inserted_at(doc)))]
        if doc_type == "analysis_header":
            mappers.append(("provenance", map_provenance))
        if doc_type in PARENT_FIELD:
            parent = PARENT_FIELD[doc_type]
            mappers.append((parent, lambda v, p=parent: map_parent_link(v, p)))
        if doc_type == "analysis_tail":
            mappers.append(("exit_status", lambda v: map_exit_status(v, self.exit_status_map)))
        for name, mapper in mappers:
            try:
                mapped = mapper(doc.get(name, MISSING))
            except Unmappable as exc:
                self.plan.note(name, doc_type, "flag", f"{exc}; left as it is", doc["uid"])
                flagged = True
                continue
            if mapped is not None:
                changes[name], rule = mapped
                rules.append(rule)
        parent_field = PARENT_FIELD.get(doc_type)
        link = changes.get(parent_field, doc.get(parent_field)) if parent_field else None
        if parent_field and isinstance(link, str) and link not in self.uids[parent_field]:
            self.plan.note("missing parent", doc_type, "flag",
                           f"its {parent_field} is not stored; kept, readable by uid", doc["uid"])
        return changes, rules, flagged

    def _finish(self, doc_type: str, doc: dict[str, Any], changes: dict[str, Any], rules: list[str],
                flagged: bool) -> None:
        if changes:
            self.plan.updates.append((doc_type, doc, changes, rules))
            for rule in rules:
                self.plan.note("value", doc_type, "map", rule, doc["uid"])
        if not flagged:
            problem = _schema_problem(doc_type, {**doc, **changes})
            if problem:
                self.plan.note("schema", doc_type, "flag", f"{problem}; left as it is", doc["uid"])

    def _observe_record(self, record: dict[str, Any]) -> None:
        stream = record.get("data_reference_header")
        if not isinstance(stream, str):
            return
        seen = self.seen_dtypes[stream]
        data, timestamps = record.get("data"), record.get("timestamps")
        for key, value in (data.items() if isinstance(data, dict) else ()):
            kind = value_dtype(value)
            seen[key]  # declared-by-use even when every value is null
            if kind:
                seen[key].add(kind)
        for key in (timestamps if isinstance(timestamps, dict) else ()):
            seen[key]

    def _stream_keys(self) -> None:
        """Map each stream's data_keys now that its records' keys and dtypes are known."""
        for uid, (doc, changes, rules, flagged) in self.streams.items():
            seen = {key: set(kinds) for key, kinds in self.seen_dtypes.get(uid, {}).items()}
            mapped, problems = map_data_keys(doc.get("data_keys", MISSING), seen)
            for problem in problems:
                self.plan.note("data_keys", "data_reference_header", "flag", f"{problem}; left as it is", uid)
            if mapped is not None:
                changes["data_keys"], data_key_rules = mapped
                rules = rules + data_key_rules
            self._finish("data_reference_header", doc, changes, rules, flagged or bool(problems))

    # ---- indexes --------------------------------------------------------------

    def _indexes(self, names: set[str]) -> None:
        wanted = {t: index_models(t) for t in DOC_TYPES}
        wanted["revisions"] = [_REVISIONS_INDEX]
        for collection, models in wanted.items():
            existing = self.db[collection].index_information() if collection in names else {}
            have = {(tuple(info["key"]), bool(info.get("unique"))): name for name, info in existing.items()}
            missing = [m for m in models
                       if (tuple(m.document["key"].items()), bool(m.document.get("unique"))) not in have]
            if missing:
                self.plan.create_indexes[collection] = missing
                self.plan.note("index", collection, "create",
                               f"missing: {', '.join(m.document['name'] for m in missing)}", count=len(missing))
            for name, info in existing.items():
                if obstructive_unique_index(collection, info):
                    self.plan.drop_indexes.append((collection, name, info))
                    self.plan.note("index", collection, "drop",
                                   f"0.x unique index {name} would refuse valid writes (definition kept aside)")
                elif _key(info) in RETIRED_INDEXES.get(collection, ()):
                    self.plan.drop_indexes.append((collection, name, info))
                    self.plan.note("index", collection, "drop",
                                   f"{name}: not needed in layout 2, where _id is the uid (definition kept aside)")


def _key(info: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """An index's key as ``index_information`` gives it, directions as ints."""
    return tuple((field, int(direction) if isinstance(direction, (int, float)) else direction)
                 for field, direction in info["key"])


def _schema_problem(doc_type: str, doc: dict[str, Any]) -> str | None:
    """Today's schema's complaint about ``doc`` (service-kept ``_`` fields aside), or None."""
    candidate = {k: v for k, v in doc.items() if not k.startswith("_")}
    try:
        prepare(doc_type, candidate, now=0.0)
    except AnalysisStoreError as exc:
        return exc.message
    return None


def plan_upgrade(db: Database, exit_status_map: dict[str, str] | None = None) -> UpgradePlan:
    """Read ``db`` and return what it needs to be in today's layout (writes nothing)."""
    return _Planner(db, exit_status_map).run()


def _write(db: Database, collection: str, ops: list[Any], batch: int = 500) -> None:
    """Unordered bulk writes in batches (one round trip per batch, not per document)."""
    for start in range(0, len(ops), batch):
        db[collection].bulk_write(ops[start:start + batch], ordered=False)


def _by_collection(updates: list[tuple[str, dict[str, Any], dict[str, Any], list[str]]]) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = defaultdict(list)
    for collection, doc, changes, _ in updates:
        grouped[collection].append(UpdateOne({"_id": doc["_id"]}, {"$set": changes}))
    return grouped


def _move_to_uid_ids(db: Database, collection: str, batch: int = 1_000) -> int:
    """Store every document of ``collection`` kept under an ObjectId under ``_id`` = its uid; how many moved.

    First every copy is inserted (in batches, from one pass over the
    originals), then the originals are removed with one delete: a document is
    always stored at least once, and the originals go only once every copy is
    in. A copy already there was made by a stopped run from the same original
    (the plan set aside any original that differs from it), so its
    duplicate-key error is expected. (One delete by type is some ten times
    faster on the embedded database than deleting each batch by ``_id``.)
    The collection's secondary indexes are dropped first and built again
    after the move: a copy would trip the one-tail index while its original
    is still there, and one build at the end is cheaper than updating them
    for every document twice.
    """
    coll = db[collection]
    wanted = {tuple(m.document["key"].items()) for m in index_models(collection)}
    for name, info in coll.index_information().items():
        if name != "_id_" and _key(info) in wanted:
            coll.drop_index(name)
    originals = {"_id": {"$type": "objectId"}, "uid": {"$type": "string"}}
    pending: list[dict[str, Any]] = []
    copied = 0
    for doc in coll.find(originals, batch_size=batch):
        pending.append({**doc, "_id": doc["uid"]})
        if len(pending) >= batch:
            copied += _insert_copies(coll, pending)
            pending = []
    copied += _insert_copies(coll, pending)
    removed = coll.delete_many(originals).deleted_count
    log.info("%s: %d documents moved to _id = uid (%d copies made by this run)", collection, removed, copied)
    return removed


def _refuse_foreign_ids(coll: Any, collection: str) -> None:
    """LayoutError, before anything is moved, for a document stored under an ``_id`` that is neither an
    ObjectId nor its uid: the 0.x service stored what clients sent, and such a document may hold the
    place another document's copy moves to. An operator decides which one is which."""
    for doc in coll.find({"_id": {"$not": {"$type": "objectId"}}}, {"uid": 1}):
        if doc["_id"] != doc.get("uid"):
            raise LayoutError(f"{collection} has a document stored under _id {doc['_id']!r} with uid "
                              f"{doc.get('uid')!r}; the upgrade moves documents to _id = uid and stops here, "
                              "before changing anything: give it _id = its uid (or an "
                              "ObjectId) by hand, then run the upgrade again")


def _insert_copies(coll: Any, copies: list[dict[str, Any]]) -> int:
    """Insert ``copies``, those already stored identically (by a stopped run) aside; how many were new.

    A different document already under a copy's ``_id`` is a LayoutError: its original must not be removed.
    """
    if not copies:
        return 0
    try:
        return len(coll.insert_many(copies, ordered=False).inserted_ids)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != _DUPLICATE_KEY for e in errors):
            raise
        clashing = {copies[e["index"]]["_id"]: copies[e["index"]] for e in errors}
        for stored in coll.find({"_id": {"$in": list(clashing)}}):
            if stored != clashing[stored["_id"]]:
                raise LayoutError(f"{coll.name}: another document is already stored under _id {stored['_id']!r}; "
                                  "the upgrade stops before removing the original with that uid") from None
        return len(copies) - len(errors)


def apply_plan(db: Database, plan: UpgradePlan, now: float | None = None) -> None:
    """Make the plan's writes, keeping every original in ``upgrade_aside`` before changing or removing it.

    The order makes an interrupted run safe to repeat: every aside entry is
    written (insert-once, keyed by the document's ObjectId) before any
    document is changed or removed; documents move to ``_id`` = uid after
    their values are mapped (see :func:`_move_to_uid_ids`); the indexes are
    built, and the layout recorded, last.
    """
    now = time.time() if now is None else now
    stamp = {"at": now, "by": f"analysisstore {__version__}"}
    for collection in sorted(plan.convert):
        _refuse_foreign_ids(db[collection], collection)

    def keep(entry_id: str, fields: dict[str, Any]) -> UpdateOne:
        return UpdateOne({"_id": entry_id}, {"$setOnInsert": {**fields, **stamp}}, upsert=True)

    for collection, name, info in plan.drop_indexes:
        _write(db, ASIDE_COLLECTION, [keep(f"index:{collection}:{name}", {
            "check": "index", "collection": collection, "name": name,
            "definition": {k: v for k, v in info.items() if k != "key"},
            "key": [list(pair) for pair in info["key"]]})])
        db[collection].drop_index(name)
    _write(db, ASIDE_COLLECTION, [keep(entry["_id"], {**{k: v for k, v in entry.items() if k != "_id"},
                                                      "original": doc}) for _, doc, entry in plan.aside])
    _write(db, ASIDE_COLLECTION, [keep(f"mapped:{collection}:{doc['_id']}", {
        "check": "value", "collection": collection, "uid": doc.get("uid"), "rules": rules, "original": doc})
        for collection, doc, _, rules in plan.updates])
    removals: dict[str, list[Any]] = defaultdict(list)
    for collection, doc, _ in plan.aside:
        removals[collection].append(DeleteOne({"_id": doc["_id"]}))
    for collection, ids in plan.collapse.items():
        removals[collection].extend(DeleteOne({"_id": oid}) for oid in ids)
    # Removals before value changes: an interrupted run leaves copies that still compare identical.
    for collection, ops in removals.items():
        _write(db, collection, ops)
    for collection, changes in _by_collection(plan.updates).items():
        _write(db, collection, changes)
    for collection in sorted(plan.convert):
        _move_to_uid_ids(db, collection)
    for collection, models in plan.create_indexes.items():
        db[collection].create_indexes(models)
    for collection in plan.convert:  # the indexes the move took down (creating an existing one is a no-op)
        db[collection].create_indexes(index_models(collection))
    if plan.stamp:
        db[META_COLLECTION].update_one({"_id": "layout"}, {"$set": layout_record(now)}, upsert=True)
    log.info("upgrade of %r applied: %d changes", db.name, plan.change_count)
