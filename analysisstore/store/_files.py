"""Files attached to analyses: content in GridFS, one document per file in ``analysis_file``.

An upload streams into GridFS as it arrives and is hashed on the way; only
when it is complete and its sha256 checked does its document appear, so a
broken upload leaves nothing visible. A file is named within its analysis:
the same name with the same content again is "already stored", with other
content a conflict; nothing is attached after the tail.

Chunks are written and read here in the GridFS layout (``files.chunks`` and
``files.files``, readable by any GridFS driver) rather than through PyMongo's
GridIn/GridOut, which buffer up to 32 MiB per upload and read 16 MiB batches:
the service holds a few megabytes per transfer instead.
"""
from __future__ import annotations

import hashlib
import logging
import time
import uuid
from datetime import datetime, timezone
from dataclasses import dataclass, field
from typing import Any, AsyncGenerator

from bson import Binary, ObjectId
from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from ..errors import Conflict, Finalized, NotFound, PayloadTooLarge, ValidationFailed
from ._database_errors import _database_errors
from ._results import ALREADY_STORED, INSERTED
from ._fence import Fence

__all__ = ["AttachmentStore", "Upload", "FILE_COLLECTION", "FILE_INDEXES"]

log = logging.getLogger(__name__)

FILE_COLLECTION = "analysis_file"
CHUNKS, FILES = "files.chunks", "files.files"
CHUNK_SIZE = 255 * 1024  # GridFS's default
_CHUNKS_PER_WRITE = 4  # ~1 MiB per insert
_CHUNKS_PER_READ = 16  # ~4 MiB per batch: fewer round trips, still bounded
FILE_INDEXES = [IndexModel([("uid", ASCENDING)], unique=True),
                # one name per analysis; also serves "the files of this analysis"
                IndexModel([("analysis_header", ASCENDING), ("name", ASCENDING)], unique=True)]
_PUBLIC = {"_id": 0, "gridfs_id": 0}


@dataclass
class Upload:
    """One file arriving: written in GridFS chunks as they fill, hashed and counted on the way."""

    db: AsyncDatabase
    analysis_header: str
    name: str
    content_type: str
    limit: int
    uid: str | None = None  # the file's uid when the client chose it (a spooled or archived file)
    time: float | None = None  # an import's original time; default: when the upload completes
    #: The file already stored under this name: the body is only hashed, to tell "already stored"
    #: from a conflict (so an identical re-send works after the tail too, and stores nothing twice).
    stored: dict[str, Any] | None = None
    files_id: ObjectId = field(default_factory=ObjectId)
    digest: Any = field(default_factory=hashlib.sha256)
    size: int = 0
    buffer: bytearray = field(default_factory=bytearray)
    chunks: int = 0
    closed: bool = False
    #: Its document may be stored: from then on the chunks are the file's content and are never removed.
    publishing: bool = False

    async def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise PayloadTooLarge(f"file larger than {self.limit} bytes (the max_file_bytes setting)")
        self.digest.update(data)
        if self.stored is not None:
            return
        self.buffer += data
        if len(self.buffer) >= CHUNK_SIZE * _CHUNKS_PER_WRITE:
            await self._flush(final=False)

    async def _flush(self, final: bool) -> None:
        docs = []
        while len(self.buffer) >= CHUNK_SIZE or (final and self.buffer):
            docs.append({"files_id": self.files_id, "n": self.chunks, "data": Binary(bytes(self.buffer[:CHUNK_SIZE]))})
            del self.buffer[:CHUNK_SIZE]
            self.chunks += 1
        if docs:
            with _database_errors():
                await self.db[CHUNKS].insert_many(docs)

    async def close(self) -> None:
        """Write the last chunk and the GridFS file document."""
        await self._flush(final=True)
        with _database_errors():
            await self.db[FILES].insert_one({
                "_id": self.files_id, "length": self.size, "chunkSize": CHUNK_SIZE, "filename": self.name,
                "uploadDate": datetime.now(timezone.utc), "metadata": {"analysis_header": self.analysis_header,
                                                                       "content_type": self.content_type}})
        self.closed = True

    async def abort(self) -> None:
        """Remove whatever was written (safe to call more than once), unless its document may be stored."""
        self.buffer.clear()
        if self.publishing:
            return
        with _database_errors():
            await self.db[CHUNKS].delete_many({"files_id": self.files_id})
            await self.db[FILES].delete_one({"_id": self.files_id})


class AttachmentStore:
    """Files of analyses: the only code that touches GridFS."""

    def __init__(self, db: AsyncDatabase, max_time_ms: int, fence: Fence) -> None:
        self.db = db
        self.max_time_ms = max_time_ms
        self.fence = fence

    async def ensure_indexes(self) -> None:
        with _database_errors():
            await self.db[FILE_COLLECTION].create_indexes(FILE_INDEXES)
            await self.db[CHUNKS].create_index([("files_id", ASCENDING), ("n", ASCENDING)], unique=True)

    async def _check_open(self, analysis_header: str) -> None:
        if await self.db.analysis_header.find_one({"_id": analysis_header}, {"_id": 1},
                                                  max_time_ms=self.max_time_ms) is None:
            raise NotFound(f"analysis_header {analysis_header!r} does not exist; write it before its files")
        if await self.db.analysis_tail.find_one({"analysis_header": analysis_header}, {"_id": 1},
                                                max_time_ms=self.max_time_ms) is not None:
            raise Finalized(f"analysis {analysis_header!r} is finalized (it has a tail); no new files may be added")

    async def begin(self, analysis_header: str, name: str, content_type: str, limit: int,
                    uid: str | None = None, time: float | None = None) -> Upload:
        """Check the analysis takes files (or has this name already); the upload that the body is written to."""
        with _database_errors():
            stored = await self.db[FILE_COLLECTION].find_one({"analysis_header": analysis_header, "name": name},
                                                             _PUBLIC, max_time_ms=self.max_time_ms)
            if stored is None:
                await self._check_open(analysis_header)
        return Upload(self.db, analysis_header, name, content_type, limit, uid=uid, time=time, stored=stored)

    async def finish(self, upload: Upload, expected_sha256: str | None) -> tuple[dict[str, Any], str]:
        """Close the upload and publish its document; (document, inserted/already stored).

        The caller hands the upload over: whatever fails here removes what was written, except once
        the document may be stored (a hang-up or error after that leaves the file whole, never empty).
        """
        try:
            return await self._finish(upload, expected_sha256)
        except BaseException:
            await upload.abort()
            raise

    async def _finish(self, upload: Upload, expected_sha256: str | None) -> tuple[dict[str, Any], str]:
        sha256 = upload.digest.hexdigest()
        if expected_sha256 is not None and expected_sha256.lower() != sha256:
            await upload.abort()
            raise ValidationFailed(f"the file's sha256 is {sha256}, not {expected_sha256} as announced; "
                                   "it was not stored (a transfer error?)")
        if upload.stored is not None:
            return await self._resolve_same_name({"analysis_header": upload.analysis_header, "name": upload.name,
                                                  "sha256": sha256, "size": upload.size})
        await upload.close()
        with _database_errors():
            doc = {"uid": upload.uid or str(uuid.uuid4()), "analysis_header": upload.analysis_header,
                   "name": upload.name, "size": upload.size, "sha256": sha256, "content_type": upload.content_type,
                   "time": time.time() if upload.time is None else upload.time, "gridfs_id": upload.files_id}
            try:
                await self._check_open(upload.analysis_header)  # a tail may have come while the body arrived
                await self._publish(doc, upload)
            except DuplicateKeyError:  # not stored: the name or uid is taken
                upload.publishing = False
                await upload.abort()
                return await self._resolve_same_name(doc)
            except (NotFound, Finalized):  # refused before the insert
                upload.publishing = False
                await upload.abort()
                raise
        return {k: v for k, v in doc.items() if k not in _PUBLIC}, INSERTED

    async def _publish(self, doc: dict[str, Any], upload: Upload) -> None:
        """Insert the file's document inside the analysis's write fence, as records are: none after the tail."""
        token, _ = await self.fence.enter(doc["analysis_header"])
        if token is None:
            raise Finalized(f"analysis {doc['analysis_header']!r} is finalized or its tail is being stored; "
                            "no new files may be added")
        try:
            upload.publishing = True  # an insert whose answer is lost may still have stored the document
            await self.db[FILE_COLLECTION].insert_one(doc)
        finally:
            await self.fence.leave(doc["analysis_header"], token)

    async def _resolve_same_name(self, doc: dict[str, Any]) -> tuple[dict[str, Any], str]:
        stored = await self.db[FILE_COLLECTION].find_one(
            {"analysis_header": doc["analysis_header"], "name": doc["name"]}, _PUBLIC)
        if stored is not None and stored["sha256"] == doc["sha256"] and stored["size"] == doc["size"]:
            return stored, ALREADY_STORED
        if stored is None:  # the name is free, so the uid the client chose belongs to another file
            raise Conflict(f"another file already has the uid {doc['uid']!r}; file uids are unique")
        raise Conflict(f"analysis {doc['analysis_header']!r} already has a different file named {doc['name']!r}; "
                       "file names are immutable, use another name")

    async def get(self, file_uid: str) -> dict[str, Any]:
        """A file's document (with its GridFS id, for :meth:`open`)."""
        with _database_errors():
            doc = await self.db[FILE_COLLECTION].find_one({"uid": file_uid}, {"_id": 0},
                                                          max_time_ms=self.max_time_ms)
        if doc is None:
            raise NotFound(f"no file with uid {file_uid!r}")
        return doc

    async def read(self, doc: dict[str, Any], start: int, end: int) -> AsyncGenerator[bytes, None]:
        """Bytes ``start`` to ``end`` (exclusive) of a file, a chunk at a time."""
        first = start // CHUNK_SIZE
        skip = start - first * CHUNK_SIZE
        remaining = end - start
        with _database_errors():
            cursor = self.db[CHUNKS].find({"files_id": doc["gridfs_id"], "n": {"$gte": first}}, {"_id": 0, "data": 1},
                                          batch_size=_CHUNKS_PER_READ).sort("n", ASCENDING)
            async with cursor:
                async for chunk in cursor:
                    data = bytes(chunk["data"])[skip:skip + remaining]
                    skip = 0
                    remaining -= len(data)
                    yield data
                    if remaining <= 0:
                        return
        if remaining > 0:
            raise NotFound(f"file {doc['uid']!r} is missing {remaining} bytes of its content in the database")

    async def of_analysis(self, analysis_header: str) -> list[dict[str, Any]]:
        """The files of one analysis, by name."""
        with _database_errors():
            return await self.db[FILE_COLLECTION].find({"analysis_header": analysis_header}, _PUBLIC,
                                                       max_time_ms=self.max_time_ms).sort("name").to_list(None)
