"""``AnalysisClient``: what analysis scripts use to record their provenance.

Keeps every member of the 0.x client API (``insert_*``, ``find_*``,
``find``, ``insert``, the ``*_url`` properties, ``get``/``post``,
``connection_status``) and talks to the v1 API underneath.
"""
from __future__ import annotations

import hashlib
import itertools
import logging
import mimetypes
import os
import time as _time
import uuid as _uuid
from dataclasses import dataclass
from typing import Any, Callable, Generator, Iterable, Iterator, Mapping, Sequence
from urllib.parse import quote, urlparse

import requests
from doct import Document

from ._fallback import FallbackTransport
from ._transport import RetryPolicy, Transport, dumps, loads
from ..contract.vocabulary import EXPECT_REVISION_HEADER, RESTORE_TIME_HEADER
from .errors import TRANSIENT_ERRORS, IncompleteStream, InvalidLookup, NotFound, ServiceUnreachable, error_from_body
from .mirror import MirrorMixin
from .limits import MAX_BULK_ITEMS
from .lookups import RESERVED_PARAMS, is_lookup_query, plain_value, query_params
from .spool import Spool, SpoolingWrites, with_time as _with_time

__all__ = ["AnalysisClient", "DEFAULT_URL", "Page", "RetryPolicy"]

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8999"
_CONFIG_KEYS = {"host", "port", "url", "token", "timeout", "retries", "spool_dir", "fallback_url"}
_DOCUMENT_NAMES = {
    "analysis_header": "AnalysisHeader",
    "analysis_tail": "AnalysisTail",
    "data_reference_header": "DataReferenceHeader",
    "data_reference": "DataReference",
}
_PAGE_SIZE = 5_000
#: Keywords of ``iter_find`` that a ``find_*``/``iter_*`` call would otherwise take for fields.
_READ_OPTIONS = frozenset({"paged", "page_size"})
#: One update call touches at most this many documents.
MAX_UPDATE_MATCHES = 1_000
NDJSON = "application/x-ndjson"
#: ``Prefer: stream-end`` asks the service to end an NDJSON stream with ``{"$end": {"count": n}}``.
_END_PREFERENCE = "stream-end"
#: Longer than the service's keep-alive interval on an idle event stream.
_EVENTS_READ_TIMEOUT = 60.0
#: Bytes read after a stream's end line to keep its connection (a well-formed stream has only a few).
_AFTER_END_BYTES = 64 * 1024
#: connection_status() answers quickly rather than waiting out retries.
_PROBE_TIMEOUT = (2.0, 5.0)


def _uid_of(doc_or_uid: Any) -> str:
    """A parent given as a uid or as a document → its uid."""
    if isinstance(doc_or_uid, Mapping):
        return str(doc_or_uid["uid"])
    return str(doc_or_uid)


def _plain(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A document as sent to the service (doct.Document carries a '_name' key of its own)."""
    return {k: v for k, v in doc.items() if k != "_name"}


class AnalysisClient(MirrorMixin):
    """Client of one analysisstore service.

    ``config`` is ``{"host": ..., "port": ...}`` as in 0.x, or ``{"url": ...}``;
    optional ``token``, ``timeout`` (read timeout in seconds, or a
    ``(connect, read)`` pair), ``retries`` (a number of retries, a
    :class:`RetryPolicy` or a mapping of its fields; the client's policy is the
    only retrying in the project), ``spool_dir``, ``fallback_url`` (a second
    service, e.g. a local mirror, that answers reads when this one cannot:
    see :attr:`answered_by`). Without a config the
    ``ASST_URL`` environment variable, else http://127.0.0.1:8999, is used.
    """

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        config = dict(config or {})
        ignored = sorted(set(config) - _CONFIG_KEYS)
        if ignored:
            log.debug("ignoring config keys the client does not use: %s", ignored)
        if config.get("url"):
            url = str(config["url"])
        elif "host" in config:
            url = f"http://{config['host']}:{config.get('port', 8999)}"
        else:
            url = os.environ.get("ASST_URL", DEFAULT_URL)
        parsed = urlparse(url)
        self.host: str = parsed.hostname or "127.0.0.1"
        self.port: int = parsed.port or (443 if parsed.scheme == "https" else 80)
        self._spool = SpoolingWrites(Spool(config["spool_dir"])) if config.get("spool_dir") else None
        transport_options = dict(token=config.get("token") or os.environ.get("ASST_TOKEN"),
                                 timeout=config.get("timeout", 60.0), retries=config.get("retries"))
        if config.get("fallback_url"):
            self._transport: Transport = FallbackTransport(url, str(config["fallback_url"]), **transport_options)
        else:
            self._transport = Transport(url, **transport_options)
        self._insert_dict: dict[str, Callable[..., Any]] = {
            "analysis_header": self.insert_analysis_header,
            "analysis_tail": self.insert_analysis_tail,
            "data_reference_header": self.insert_data_reference_header,
            "data_reference": self.insert_data_reference,
            "bulk_data_reference": self.insert_bulk_data_reference,
        }

    @property
    def answered_by(self) -> str:
        """The base URL of the service that answered the last read (``fallback_url``'s after a fallback)."""
        return (getattr(self._transport, "answered_by", None) or self._transport.base_url).rstrip("/")

    # ---- the 0.x URL properties -------------------------------------------------

    @property
    def _host_url(self) -> str:
        return self._transport.base_url

    @property
    def aheader_url(self) -> str:
        """URL of the analysis_header collection (legacy face)."""
        return self._host_url + "analysis_header"

    @property
    def atail_url(self) -> str:
        """URL of the analysis_tail collection (legacy face)."""
        return self._host_url + "analysis_tail"

    @property
    def dref_header_url(self) -> str:
        """URL of the data_reference_header collection (legacy face)."""
        return self._host_url + "data_reference_header"

    @property
    def dref_url(self) -> str:
        """URL of the data_reference collection (legacy face)."""
        return self._host_url + "data_reference"

    def _doc_or_uid_to_uid(self, doc_or_uid: Any) -> str:
        return _uid_of(doc_or_uid)

    def close(self) -> None:
        """Close the keep-alive connections."""
        self._transport.close()

    def __enter__(self) -> "AnalysisClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- connection and raw legacy calls ----------------------------------------

    def connection_status(self) -> bool:
        """True if an analysisstore service answers, False otherwise (never raises for that)."""
        return self._transport.probe("is_connected", _PROBE_TIMEOUT)

    def get(self, url: str, query: Mapping[str, Any]) -> Any:
        """0.x raw GET: ``query`` (``{"signature", "payload"}``) sent as the JSON query string."""
        return self._transport.json("GET", url, params=dumps(query).decode())

    def post(self, url: str, params: Mapping[str, Any]) -> Any:
        """0.x raw POST: ``params`` (``{"signature", "payload"}``) sent as the JSON body."""
        return self._transport.json("POST", url, data=dumps(params))

    # ---- writes -------------------------------------------------------------------

    def _insert_one(self, doc_type: str, doc: dict[str, Any]) -> str:
        doc = {k: v for k, v in doc.items() if v is not None or k not in ("uid", "time")}
        doc.setdefault("uid", str(_uuid.uuid4()))
        if self._spool is not None:
            doc = _with_time(doc)  # what is sent and what may be spooled must be the same document
        self._send(doc_type, [doc], doc)
        return doc["uid"]

    def _send(self, doc_type: str, docs: list[dict[str, Any]], body: Any) -> None:
        """POST ``body``; with a spool, divert to it when the service cannot be reached."""
        def post() -> None:
            self._transport.json("POST", f"api/v1/{doc_type}", body=body)

        if self._spool is None:
            post()
        else:
            self._spool.send(doc_type, docs, post)

    def insert_analysis_header(self, uid: str | None = None, time: float | None = None,
                               provenance: Mapping[str, Any] | None = None, **kwargs: Any) -> str:
        """Record the start of an analysis; returns its uid (generated if not given)."""
        return self._insert_one("analysis_header", dict(uid=uid, time=time, provenance=provenance, **kwargs))

    def insert_analysis_tail(self, analysis_header: Any, uid: str | None = None, time: float | None = None,
                             exit_status: str | None = None, **kwargs: Any) -> str:
        """Record how an analysis ended (``success``/``fail``/``abort``); finalizes it."""
        return self._insert_one("analysis_tail", dict(
            analysis_header=_uid_of(analysis_header), uid=uid, time=time, exit_status=exit_status, **kwargs))

    def insert_data_reference_header(self, analysis_header: Any, uid: str | None = None,
                                     time: float | None = None, data_keys: Mapping[str, Any] | None = None,
                                     **kwargs: Any) -> str:
        """Declare an output stream of an analysis and the keys its records carry."""
        return self._insert_one("data_reference_header", dict(
            analysis_header=_uid_of(analysis_header), uid=uid, time=time, data_keys=data_keys, **kwargs))

    def insert_data_reference(self, data_header: Any, uid: str | None = None, time: float | None = None,
                              data: Mapping[str, Any] | None = None,
                              timestamps: Mapping[str, Any] | None = None, **kwargs: Any) -> str:
        """Record one record of a stream (``seq_num`` may be passed as a keyword)."""
        return self._insert_one("data_reference", dict(
            data_reference_header=_uid_of(data_header), uid=uid, time=time, data=data,
            timestamps=timestamps, **kwargs))

    def insert_bulk_data_reference(self, data_header: Any, data: Iterable[Mapping[str, Any]],
                                   chunk_size: int = 500, **kwargs: Any) -> list[str]:
        """Record many records of one stream, ``chunk_size`` per request; returns their uids.

        ``chunk_size`` is capped at ``MAX_BULK_ITEMS``, the most the service
        accepts by default in one request.

        ``data`` is any iterable (a generator is consumed lazily) of records
        with ``data`` and ``timestamps`` and optionally ``uid``, ``time``,
        ``seq_num``. A rejected chunk raises; the chunks before it are stored,
        and re-sending them is harmless.
        """
        if kwargs:
            raise TypeError(f"insert_bulk_data_reference() got unexpected arguments {sorted(kwargs)}")
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        chunk_size = min(chunk_size, MAX_BULK_ITEMS)
        stream = _uid_of(data_header)
        uids: list[str] = []
        records = iter(data)
        while chunk := list(itertools.islice(records, chunk_size)):
            body = [self._record_for(stream, record) for record in chunk]
            self._send("data_reference", body, body)
            uids.extend(record["uid"] for record in body)
        return uids

    @staticmethod
    def _record_for(stream: str, record: Mapping[str, Any]) -> dict[str, Any]:
        doc = _plain(record)
        given = doc.setdefault("data_reference_header", stream)
        if _uid_of(given) != stream:
            raise ValueError(f"record {doc.get('uid')!r} names stream {given!r}, not {stream!r}")
        doc["data_reference_header"] = stream
        if doc.get("uid") is None:
            doc["uid"] = str(_uuid.uuid4())
        if doc.get("time") is None:
            doc["time"] = _time.time()
        return doc

    def insert_many(self, doc_type: str, docs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Send complete documents of one type as one bulk request; the service's per-item answer.

        For tools that move whole documents (sync, import): nothing is filled in.
        At most ``MAX_BULK_ITEMS`` documents: more raise ValueError before anything is sent.
        """
        _document_name(doc_type)
        if len(docs) > MAX_BULK_ITEMS:
            raise ValueError(f"{len(docs)} documents in one request; the service takes at most {MAX_BULK_ITEMS}: "
                             "send them in chunks")
        return self._transport.json("POST", f"api/v1/{doc_type}", body=[_plain(d) for d in docs])

    def insert(self, doc_type: str, **kwargs: Any) -> Any:
        """``insert("analysis_header", uid=..., ...)``: dispatch to the matching ``insert_*``."""
        try:
            method = self._insert_dict[doc_type]
        except KeyError:
            raise ValueError(f"unknown document type {doc_type!r}; expected one of {sorted(self._insert_dict)}") from None
        return method(**kwargs)

    # ---- reads --------------------------------------------------------------------

    def iter_find(self, doc_type: str, query: Mapping[str, Any] | None = None, *,
                  order_by: str | list[str] | None = None, limit: int | None = None,
                  paged: bool = False, page_size: int = _PAGE_SIZE) -> Iterator[Document]:
        """Every match (or the first ``limit``) as ``doct.Document``, in ``order_by`` order (oldest first).

        Reads one NDJSON stream (fastest), or with ``paged=True`` fetches
        ``page_size`` documents per request by keyset cursor (each request
        short and retried on its own). Memory stays flat either way.
        """
        name = _document_name(doc_type)
        body: dict[str, Any] = {"filter": plain_value(dict(query or {}))}
        if order_by is not None:
            body["order_by"] = order_by
        if not paged:
            yield from self._iter_ndjson(doc_type, name, body, limit, page_size)
            return
        yield from self._iter_pages(doc_type, name, body, limit, page_size)

    def _iter_pages(self, doc_type: str, name: str, body: dict[str, Any], limit: int | None,
                    page_size: int) -> Iterator[Document]:
        remaining = limit
        while True:
            body["limit"] = page_size if remaining is None else min(page_size, remaining)
            page = self._transport.json("POST", f"api/v1/{doc_type}/search", body=body)
            for doc in page["items"]:
                yield Document(name, doc)
            if remaining is not None:
                remaining -= len(page["items"])
            cursor = page["meta"]["next_cursor"]
            if not cursor or (remaining is not None and remaining <= 0):
                return
            body["cursor"] = cursor

    def _iter_ndjson(self, doc_type: str, name: str, body: dict[str, Any], limit: int | None,
                     page_size: int) -> Iterator[Document]:
        """One NDJSON stream, trusted only once its end line has come (see docs/streams.md)."""
        response = self._transport.request("POST", f"api/v1/{doc_type}/search",
                                           body={**body, "limit": limit} if limit is not None else body,
                                           stream=True, accept=NDJSON, headers={"Prefer": _END_PREFERENCE})
        with response:
            if _END_PREFERENCE not in response.headers.get("Preference-Applied", ""):
                # A service older than this client: its streams cannot prove they are whole, pages can.
                log.warning("the service at %s does not confirm stream end lines; reading page by page",
                            self._host_url)
                response.close()
                yield from self._iter_pages(doc_type, name, body, limit, page_size)
                return
            received, last = 0, None
            try:
                for line in response.iter_lines(chunk_size=64 * 1024):
                    if not line:
                        continue
                    doc = loads(line)
                    if "$end" in doc or "$error" in doc:  # documents never have '$' keys: this is the last line
                        last = doc
                        _read_to_the_end(response)
                        break
                    received += 1
                    yield Document(name, doc)
            except requests.RequestException as exc:
                raise IncompleteStream(
                    f"the result stream broke after {received} documents: {exc}; "
                    "use paged=True to resume page by page", received) from exc
        _check_end(last, received)

    def find(self, doc_type: str, query: Mapping[str, Any] | None = None, *,
             order_by: str | list[str] | None = None, limit: int | None = None,
             stream: bool = False) -> Any:
        """Documents of ``doc_type`` matching ``query`` (field: value, or the allowed operators).

        A list, as in 0.x; with ``stream=True`` an iterator instead.
        """
        uid = _only_uid(query or {}, order_by, limit)
        found = self._by_uid(doc_type, uid) if uid is not None else self.iter_find(doc_type, query, order_by=order_by,
                                                                                    limit=limit)
        return found if stream else list(found)

    def _find_by_keywords(self, doc_type: str, keywords: dict[str, Any], order_by: Any,
                          limit: int | None) -> Iterator[Document]:
        """``find_*``/``iter_*`` keywords: plain fields as a JSON filter, lookups (``__op``, ``a__b__op``) as HTTP's."""
        reserved = sorted(set(keywords) & RESERVED_PARAMS)
        if reserved:
            raise InvalidLookup(f"{reserved} shape the page, they are not fields to filter on; "
                                "use find_page() for cursor, fields and counts")
        options = sorted(set(keywords) & _READ_OPTIONS)
        if options:  # as a filter they would match nothing, silently
            raise InvalidLookup(f"{options} are options of iter_find(), not fields to filter on; "
                                "use iter_find(doc_type, query, paged=True, page_size=...)")
        uid = _only_uid(keywords, order_by, limit)
        if uid is not None:
            return self._by_uid(doc_type, uid)
        if is_lookup_query(keywords):
            return self._iter_lookup_pages(doc_type, query_params(keywords), order_by=order_by, limit=limit)
        return self.iter_find(doc_type, keywords, order_by=order_by, limit=limit)

    def _by_uid(self, doc_type: str, uid: str) -> Iterator[Document]:
        """``find_*(uid=...)``: the one document with that uid, or none, by one GET (no search, no stream)."""
        name = _document_name(doc_type)
        try:
            doc = self._transport.json("GET", f"api/v1/{doc_type}/{quote(uid, safe='')}")
        except NotFound:
            return
        yield Document(name, doc)

    def find_analysis_header(self, order_by: Any = None, limit: int | None = None, **kwargs: Any) -> list[Document]:
        """Analysis headers matching the keywords: ``uid=...``, ``project="x"``, ``time__gte=datetime(...)``.

        Keywords are the lookups of the HTTP API (``field__op=value``, operators
        in :data:`analysisstore.client.lookups.OPERATORS`); a nested field is
        written ``provenance__run__id__gte=5``. Lists go to ``in``/``nin``/
        ``contains``/``overlap``/``range``; datetimes are compared as epoch
        seconds (naive = UTC). An unknown operator raises InvalidLookup.
        """
        return list(self._find_by_keywords("analysis_header", kwargs, order_by, limit))

    def find_analysis_tail(self, order_by: Any = None, limit: int | None = None, **kwargs: Any) -> list[Document]:
        """Analysis tails matching the keyword lookups, e.g. ``analysis_header=uid``."""
        return list(self._find_by_keywords("analysis_tail", kwargs, order_by, limit))

    def find_data_reference_header(self, order_by: Any = None, limit: int | None = None,
                                   **kwargs: Any) -> list[Document]:
        """Streams matching the keyword lookups, e.g. ``analysis_header=uid``."""
        return list(self._find_by_keywords("data_reference_header", kwargs, order_by, limit))

    def find_data_reference(self, order_by: Any = None, limit: int | None = None, **kwargs: Any) -> list[Document]:
        """Records matching the keyword lookups, e.g. ``data_reference_header=uid, seq_num__gte=10``."""
        return list(self._find_by_keywords("data_reference", kwargs, order_by, limit))

    def iter_analysis_header(self, order_by: Any = None, **kwargs: Any) -> Iterator[Document]:
        """Like ``find_analysis_header`` but lazy, for any number of results."""
        return self._find_by_keywords("analysis_header", kwargs, order_by, None)

    def iter_analysis_tail(self, order_by: Any = None, **kwargs: Any) -> Iterator[Document]:
        """Like ``find_analysis_tail`` but lazy."""
        return self._find_by_keywords("analysis_tail", kwargs, order_by, None)

    def iter_data_reference_header(self, order_by: Any = None, **kwargs: Any) -> Iterator[Document]:
        """Like ``find_data_reference_header`` but lazy."""
        return self._find_by_keywords("data_reference_header", kwargs, order_by, None)

    def iter_data_reference(self, order_by: Any = None, **kwargs: Any) -> Iterator[Document]:
        """Like ``find_data_reference`` but lazy: walks millions of records in constant memory."""
        return self._find_by_keywords("data_reference", kwargs, order_by, None)

    def iter_lookup(self, doc_type: str, lookups: Mapping[str, Any], *, order_by: str | None = None,
                    fields: list[str] | None = None) -> Iterator[Document]:
        """Documents matching query-string lookups (``{"time__gte": "2026-01-01", "project": "x"}``), page by page."""
        return self._iter_lookup_pages(doc_type, query_params(lookups), order_by=order_by, fields=fields)

    def find_page(self, doc_type: str, query: Mapping[str, Any] | None = None, *, limit: int | None = None,
                  cursor: str | None = None, order_by: str | list[str] | None = None,
                  include_count: bool = False, fields: list[str] | None = None) -> "Page":
        """One page of the lookups ``query`` with its ``meta``: ``next_cursor``, ``has_more``, ``count``.

        ``query`` takes the same lookups as ``find_*`` keywords (dotted names
        too). Pass ``page.next_cursor`` back as ``cursor`` for the next page;
        ``include_count=True`` adds the exact number of matches.
        """
        params = query_params(query or {})
        params += _page_params(order_by=order_by, limit=limit, fields=fields, cursor=cursor,
                               include_count=include_count)
        page = self._transport.json("GET", f"api/v1/{doc_type}", params=params)
        name = _document_name(doc_type)
        return Page([Document(name, doc) for doc in page["items"]], page["meta"])

    def _iter_lookup_pages(self, doc_type: str, params: list[tuple[str, str]], *, order_by: Any = None,
                    limit: int | None = None, fields: list[str] | None = None) -> Iterator[Document]:
        """Every match of query-string lookups (or the first ``limit``), ``_PAGE_SIZE`` per request by cursor."""
        name = _document_name(doc_type)
        remaining, cursor = limit, None
        while remaining is None or remaining > 0:
            size = _PAGE_SIZE if remaining is None else min(_PAGE_SIZE, remaining)
            page = self._transport.json("GET", f"api/v1/{doc_type}", params=params + _page_params(
                order_by=order_by, limit=size, fields=fields, cursor=cursor))
            for doc in page["items"]:
                yield Document(name, doc)
            if remaining is not None:
                remaining -= len(page["items"])
            cursor = page["meta"]["next_cursor"]
            if not cursor:
                return

    def events(self, lookups: Mapping[str, str] | None = None, *, doc_type: str | Iterable[str] | None = None,
               last_event_id: str | None = None, on_open: Callable[[], None] | None = None,
               ) -> Generator[dict[str, Any], None, None]:
        """Inserts and updates as they happen (the service's Server-Sent Events), until you stop iterating.

        Each event is ``{"id", "operation", "doc_type", "uid", "document"}``. ``lookups`` filter the documents
        like query-string lookups; ``doc_type`` limits the types. A dropped connection raises
        :class:`ServiceUnreachable`: call again with ``last_event_id`` set to the last event's ``id`` and
        nothing in between is missed. ``on_open`` is called once the service has opened the stream: anything
        written after that is delivered.
        """
        params: dict[str, Any] = dict(lookups or {})
        if doc_type:
            params["doc_type"] = doc_type if isinstance(doc_type, str) else ",".join(doc_type)
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        response = self._transport.request("GET", "api/v1/events", params=params, stream=True,
                                           accept="text/event-stream", timeout=(5.0, _EVENTS_READ_TIMEOUT),
                                           headers=headers)
        with response:
            if on_open is not None:
                on_open()
            try:
                yield from _server_sent_events(response)
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                raise ServiceUnreachable(f"the event stream from {self._host_url} was cut: {exc}") from exc

    def insert_file(self, analysis_header: Any, path_or_file: Any, name: str | None = None,
                    content_type: str | None = None, *, uid: str | None = None, sha256: str | None = None,
                    restore_time: float | None = None) -> str:
        """Attach a file (a path, or a binary file object) to a running analysis; returns the file's uid.

        The content is streamed, with its sha256 announced so the service refuses a damaged transfer. The same
        name with the same content again is harmless (the stored file's uid is returned); another content under
        that name is a Conflict. ``uid`` chooses the file's uid (default: a new one). With a ``spool_dir``,
        a file of an analysis being spooled, or one the service cannot take now, goes into the spool and
        is delivered by ``analysisstore sync``. ``sha256`` (when known) spares reading the file twice;
        ``restore_time`` keeps an import's original time (needs the restore scope).
        """
        if isinstance(path_or_file, (str, os.PathLike)):
            with open(path_or_file, "rb") as handle:
                return self.insert_file(analysis_header, handle, name or os.path.basename(os.fspath(path_or_file)),
                                        content_type, uid=uid, sha256=sha256, restore_time=restore_time)
        handle = path_or_file
        if name is None:
            name = os.path.basename(getattr(handle, "name", "") or "") or None
        if not name:
            raise ValueError("insert_file needs a name= for a file object without one")
        header_uid = _uid_of(analysis_header)
        uid = uid or str(_uuid.uuid4())  # chosen here, so a spooled file keeps the uid returned now
        content_type = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        if self._spool is not None and self._spool.holds(header_uid):
            return self._spool.add_file(header_uid, uid, name, content_type, handle)
        start = handle.tell() if self._spool is not None or sha256 is None else 0
        if sha256 is None:
            digest = hashlib.sha256()
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
            handle.seek(start)
            sha256 = digest.hexdigest()
        headers = {"Content-Type": content_type}
        if restore_time is not None:
            headers[RESTORE_TIME_HEADER] = repr(float(restore_time))
        try:
            response = self._transport.request(
                "POST", f"api/v1/analysis/{quote(header_uid, safe='')}/files",
                params={"name": name, "sha256": sha256, "uid": uid}, data=handle, headers=headers)
        except TRANSIENT_ERRORS:
            if self._spool is None or not self._spool.begin(header_uid):
                raise  # no spool, or nothing known of this analysis to spool it with
            handle.seek(start)
            return self._spool.add_file(header_uid, uid, name, content_type, handle)
        return loads(response.content)["uid"]

    def files(self, analysis_header: Any) -> list[dict[str, Any]]:
        """The documents of the files attached to an analysis (uid, name, size, sha256, content_type, time)."""
        view = self._transport.json("GET", f"api/v1/analysis/{quote(_uid_of(analysis_header), safe='')}")
        return view.get("files", [])

    def get_file(self, file_uid: str, dest: Any) -> dict[str, Any]:
        """Download a file to ``dest`` (a path, or a binary file object), checking its sha256; its document."""
        if isinstance(dest, (str, os.PathLike)):
            with open(dest, "wb") as handle:
                return self.get_file(file_uid, handle)
        response = self._transport.request("GET", f"api/v1/files/{quote(file_uid, safe='')}", stream=True)
        digest, size = hashlib.sha256(), 0
        with response:
            for block in response.iter_content(1 << 20):
                digest.update(block)
                size += len(block)
                dest.write(block)
        expected = response.headers.get("ETag", "").strip('"')
        if digest.hexdigest() != expected:
            raise ValueError(f"file {file_uid} arrived damaged: sha256 {digest.hexdigest()}, expected {expected}")
        return {"uid": file_uid, "size": size, "sha256": expected,
                "content_type": response.headers.get("Content-Type")}

    def status(self) -> dict[str, Any]:
        """The service's version, database name and approximate document counts."""
        return self._transport.json("GET", "api/v1/status")

    def get_analysis(self, uid: str) -> dict[str, Any]:
        """One analysis whole: ``header``, ``streams`` (each with ``record_count``), ``tail``, ``status``."""
        view = self._transport.json("GET", f"api/v1/analysis/{quote(_uid_of(uid), safe='')}")
        return {
            "header": Document("AnalysisHeader", view["header"]),
            "streams": [Document("DataReferenceHeader", s) for s in view["streams"]],
            "tail": Document("AnalysisTail", view["tail"]) if view["tail"] else None,
            "status": view["status"],
        }

    def lineage(self, uid: Any, direction: str = "ancestors", depth: int = 10) -> dict[str, Any]:
        """The analyses ``uid`` was derived from (``ancestors``) or that used it (``descendants``).

        Returns ``{"nodes": [{uid, depth, analysis_name, time, status}], "edges": [{input, analysis}], ...}``;
        the analysis itself is the node of depth 0.
        """
        return self._transport.json("GET", f"api/v1/analysis/{quote(_uid_of(uid), safe='')}/lineage",
                                    params={"direction": direction, "depth": depth})

    def prov(self, uid: Any, depth: int = 10, format: str = "json") -> str:
        """The analysis and its ancestors as a W3C PROV document (``json``, ``provn`` or ``xml``), as text."""
        response = self._transport.request("GET", f"api/v1/analysis/{quote(_uid_of(uid), safe='')}/prov",
                                           params={"depth": depth, "format": format})
        return response.content.decode("utf-8")

    # ---- updates ------------------------------------------------------------------

    def _update(self, doc_type: str, query: Mapping[str, Any], update: Mapping[str, Any]) -> list[Document]:
        if not query:
            raise ValueError("an update needs a query selecting the documents, e.g. {'uid': ...}")
        body = dict(update) if set(update) <= {"$set", "$unset"} and update else {"$set": dict(update)}
        matches = self.find(doc_type, query, limit=MAX_UPDATE_MATCHES + 1)
        if len(matches) > MAX_UPDATE_MATCHES:
            raise ValueError(f"the query matches more than {MAX_UPDATE_MATCHES} {doc_type} documents; "
                             "narrow it (one call updates at most that many)")
        name = _document_name(doc_type)
        return [Document(name, self._transport.json(
                    "PATCH", f"api/v1/{doc_type}/{quote(doc['uid'], safe='')}", body=body))
                for doc in matches]

    def update_analysis_header(self, query: Mapping[str, Any], update: Mapping[str, Any]) -> list[Document]:
        """Change fields of the headers ``query`` selects; returns them as updated.

        ``update`` is ``{"$set": {...}}`` / ``{"$unset": [...]}`` or a plain dict of fields to set.
        The service keeps every previous version; uid, time and provenance
        cannot change, and after the tail only invalid, tags and notes can.
        """
        return self._update("analysis_header", query, update)

    def update_analysis_tail(self, query: Mapping[str, Any], update: Mapping[str, Any]) -> list[Document]:
        """Change the annotations (invalid, tags, notes) of the tails ``query`` selects."""
        return self._update("analysis_tail", query, update)

    def revisions(self, doc_type: str, uid: str) -> list[dict[str, Any]]:
        """Earlier versions of a header or tail, oldest first."""
        return self._transport.json("GET", f"api/v1/{doc_type}/{quote(_uid_of(uid), safe='')}/revisions")["items"]

    def document(self, doc_type: str, uid: str) -> dict[str, Any]:
        """One document as stored, with the service's ``_revision`` counter (a plain dict)."""
        _document_name(doc_type)
        return self._transport.json("GET", f"api/v1/{doc_type}/{quote(_uid_of(uid), safe='')}")

    def restore_revision(self, doc_type: str, uid: str, update: Mapping[str, Any], *, revision: int,
                         replaced_at: float, request_id: str) -> dict[str, Any]:
        """Replay one recorded update: ``update`` applied only if the document is at ``revision``.

        The revision it leaves behind records ``replaced_at`` and ``request_id`` as the original did,
        so a history comes back identical (needs a token with the restore scope).
        """
        headers = {EXPECT_REVISION_HEADER: str(revision), RESTORE_TIME_HEADER: repr(float(replaced_at)),
                   "X-Request-ID": request_id}
        return self._transport.json("PATCH", f"api/v1/{doc_type}/{quote(_uid_of(uid), safe='')}",
                                    body=dict(update), headers=headers)


@dataclass
class Page:
    """One page of a listing: its documents and the service's ``meta``."""

    items: list[Document]
    meta: dict[str, Any]

    @property
    def next_cursor(self) -> str | None:
        """Give it as ``cursor`` to get the next page; None on the last page."""
        return self.meta.get("next_cursor")

    @property
    def has_more(self) -> bool:
        return bool(self.meta.get("has_more"))

    @property
    def count(self) -> int | None:
        """Every match of the query (not just this page), when asked with ``include_count=True``."""
        return self.meta.get("count")


def _page_params(*, order_by: Any = None, limit: int | None = None, fields: list[str] | None = None,
                 cursor: str | None = None, include_count: bool = False) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = []
    if order_by:
        params.append(("order_by", order_by if isinstance(order_by, str) else ",".join(order_by)))
    if limit is not None:
        params.append(("limit", str(limit)))
    if fields:
        params.append(("fields", ",".join(fields)))
    if cursor:
        params.append(("cursor", cursor))
    if include_count:
        params.append(("include_count", "true"))
    return params


def _read_to_the_end(response: requests.Response) -> None:
    """Read what follows a stream's end line (the empty last chunk of the transfer) so that its kept-alive
    connection goes back to the pool: left unread, the connection was closed, and every ``find_*`` and
    ``iter_*`` call opened a new one. More than ``_AFTER_END_BYTES`` is not read: the connection is closed."""
    left = _AFTER_END_BYTES
    try:
        for chunk in response.iter_content(chunk_size=8192):
            left -= len(chunk)
            if left <= 0:
                return
    except requests.RequestException:
        return  # the answer is whole already; only this connection is lost


def _check_end(line: dict[str, Any] | None, received: int) -> None:
    """The last line of a stream: ``$end`` with the count received, or raise what went wrong."""
    if line is None:
        raise IncompleteStream(f"the result stream ended after {received} documents without its end line: "
                               "the answer is incomplete; retry, or use paged=True", received)
    if "$error" in line:
        error = error_from_body(line["$error"] if isinstance(line["$error"], dict) else {})
        raise IncompleteStream(f"the result stream failed after {received} documents: {error}; "
                               "the answer is incomplete", received, error)
    end = line["$end"]
    count = end.get("count") if isinstance(end, dict) else None
    if count != received:
        raise IncompleteStream(f"the result stream ended after {received} documents but the service "
                               f"sent {count}: the answer is incomplete", received)


def _only_uid(query: Mapping[str, Any], order_by: Any, limit: int | None) -> str | None:
    """The uid a query asks for when it asks for nothing else, so that one GET by uid answers it; else None.

    Not for a uid ``GET /api/v1/{doc_type}/{uid}`` cannot name: a non-string, a path step of its own
    ("", ".", "..": URL normalisation would change the path), or the name of the search route.
    """
    uid = query.get("uid")
    if (query.keys() == {"uid"} and isinstance(uid, str) and uid not in ("", ".", "..", "search")
            and order_by is None and (limit is None or limit > 0)):
        return uid
    return None


def _document_name(doc_type: str) -> str:
    try:
        return _DOCUMENT_NAMES[doc_type]
    except KeyError:
        raise ValueError(f"unknown document type {doc_type!r}; expected one of {sorted(_DOCUMENT_NAMES)}") from None


def _server_sent_events(response: requests.Response) -> Iterator[dict[str, Any]]:
    """Parse ``text/event-stream``: one dict per event (comments and keep-alives skipped)."""
    buffer = b""
    fields: dict[str, str] = {}
    for chunk in response.iter_content(chunk_size=None):  # each chunk as it arrives: no waiting for a full block
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8").rstrip("\r")
            if not line:
                if "data" in fields:
                    yield {"id": fields.get("id"), **loads(fields["data"])}
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value
