"""One stored analysis as a bundle ``.zip``, built while it is read (``GET /api/v1/analysis/{uid}/bundle``).

A service function over the store's reads (``analysis``, ``iter_find``,
``revisions``, attached files): the bundle format itself is the contract's
(:mod:`analysisstore.contract.bundle`), the same the client writes.
"""
from __future__ import annotations

import asyncio
from contextlib import aclosing
from typing import Any, AsyncGenerator

from pymongo import ASCENDING

from .changes import REVISION_FIELD
from .contract.bundle import (
    HEADER, MANIFEST, TAIL, ZipStream, build_manifest, file_member, manifest_bytes, member_line, records_member,
    revisions_member, stream_member,
)
from .errors import NotFound
from .store import Store

__all__ = ["bundle_zip", "RECORD_BATCH"]

#: Records read (and compressed) at a time: memory holds about this many, whatever the analysis' size.
RECORD_BATCH = 5_000
_RECORD_ORDER = [("time", ASCENDING), ("uid", ASCENDING)]


def _line(doc: dict[str, Any]) -> bytes:
    return (member_line(doc) + "\n").encode()


def _current(doc: dict[str, Any]) -> dict[str, Any]:
    """A header or tail as a bundle holds it: the service's revision counter stays behind."""
    return {k: v for k, v in doc.items() if k != REVISION_FIELD}


async def bundle_zip(store: Store, uid: str, source: str) -> AsyncGenerator[bytes, None]:
    """The bundle ``.zip`` of analysis ``uid``, piece by piece as each is compressed; NotFound before any piece.

    The first piece (the header) comes out before any record is read; memory
    holds one batch of records (or of a file's chunks); nothing is written to
    disk; compressing runs off the event loop. ``source`` is the service's
    URL, for the manifest's creation info.
    """
    view = await store.analysis(uid, stale_after=float("inf"))
    archive = ZipStream()
    await asyncio.to_thread(archive.add, HEADER, _line(_current(view["header"])))
    yield archive.take()
    counts: dict[str, int] = {}
    for stream in view["streams"]:
        stream.pop("record_count", None)  # the view's, not part of the document
        archive.add(stream_member(stream["uid"]), _line(stream))
        counts[stream["uid"]] = 0
        async with aclosing(store.iter_find("data_reference", {"data_reference_header": stream["uid"]},
                                            _RECORD_ORDER, batch_size=RECORD_BATCH)) as batches:
            async for batch in batches:
                if not counts[stream["uid"]]:
                    archive.start(records_member(stream["uid"]))
                counts[stream["uid"]] += len(batch)
                await asyncio.to_thread(archive.append, b"".join(_line(doc) for doc in batch))
                yield archive.take()
        if counts[stream["uid"]]:
            archive.end()
    if view["tail"] is not None:
        archive.add(TAIL, _line(_current(view["tail"])))
    revisions = 0
    for doc_type, doc in (("analysis_header", view["header"]), ("analysis_tail", view["tail"])):
        history = await store.revisions(doc_type, doc["uid"]) if doc is not None else []
        if history:
            revisions += len(history)
            await asyncio.to_thread(archive.add, revisions_member(doc_type), b"".join(map(_line, history)))
    files = []
    for doc in await store.files.of_analysis(uid):
        member = file_member(doc["uid"], doc["name"])
        archive.start(member)
        stored = await store.files.get(doc["uid"])  # with its content's location
        async with aclosing(store.files.read(stored, 0, stored["size"])) as chunks:
            async for chunk in chunks:
                await asyncio.to_thread(archive.append, chunk)
                if piece := archive.take():
                    yield piece
        archive.end()
        if archive.checksums.pop(member) != doc["sha256"]:
            raise NotFound(f"file {doc['uid']!r} does not match its sha256 in the database")
        files.append({**doc, "member": member})
    manifest = build_manifest(
        header_uid=view["header"]["uid"], tail_uid=view["tail"]["uid"] if view["tail"] else None,
        streams=counts, members=dict(sorted(archive.checksums.items())), files=files, revisions=revisions,
        source=source)
    archive.add(MANIFEST, manifest_bytes(manifest))
    yield archive.take() + archive.close()

