"""``AnalysisClient``: what analysis scripts use to record their provenance.

Keeps every member of the 0.x client API (``insert_*``, ``find_*``,
``find``, ``insert``, the ``*_url`` properties, ``get``/``post``,
``connection_status``) and talks to the v1 API underneath.
"""
from __future__ import annotations

import itertools
import logging
import os
import time as _time
import uuid as _uuid
from typing import Any, Iterable, Iterator, Mapping
from urllib.parse import quote

import requests
from doct import Document

from ._transport import Transport, dumps, loads
from .errors import ServiceUnavailable, ServiceUnreachable, TooManyRequests
from .spool import Spool

__all__ = ["AnalysisClient", "DEFAULT_URL"]

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8999"
_CONFIG_KEYS = {"host", "port", "url", "token", "timeout", "retries", "spool_dir"}
_DOCUMENT_NAMES = {
    "analysis_header": "AnalysisHeader",
    "analysis_tail": "AnalysisTail",
    "data_reference_header": "DataReferenceHeader",
    "data_reference": "DataReference",
}
_PAGE_SIZE = 5_000
#: One update call touches at most this many documents.
MAX_UPDATE_MATCHES = 1_000
NDJSON = "application/x-ndjson"
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


class AnalysisClient:
    """Client of one analysisstore service.

    ``config`` is ``{"host": ..., "port": ...}`` as in 0.x, or ``{"url": ...}``;
    optional ``token``, ``timeout`` (seconds), ``retries``. Without a config
    the ``ASST_URL`` environment variable, else http://127.0.0.1:8999, is used.
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
        parsed = requests.utils.urlparse(url)
        self.host: str = parsed.hostname or "127.0.0.1"
        self.port: int = parsed.port or (443 if parsed.scheme == "https" else 80)
        self._spool = Spool(config["spool_dir"]) if config.get("spool_dir") else None
        # With a spool, what this client wrote of each analysis is remembered, so
        # an analysis interrupted by an outage can be spooled whole.
        self._headers: dict[str, dict[str, Any]] = {}
        self._streams: dict[str, dict[str, Any]] = {}
        self._transport = Transport(
            url,
            token=config.get("token") or os.environ.get("ASST_TOKEN"),
            timeout=float(config.get("timeout", 60.0)),
            retries=int(config.get("retries", 5)),
        )
        self._insert_dict = {
            "analysis_header": self.insert_analysis_header,
            "analysis_tail": self.insert_analysis_tail,
            "data_reference_header": self.insert_data_reference_header,
            "data_reference": self.insert_data_reference,
            "bulk_data_reference": self.insert_bulk_data_reference,
        }

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
        if self._spool is None:
            self._transport.json("POST", f"api/v1/{doc_type}", body=body)
            return
        header_uid = self._analysis_of(doc_type, docs[0])
        self._remember(doc_type, docs)
        if header_uid is not None and self._spool.holds(header_uid):
            self._spool.add(header_uid, doc_type, [_with_time(d) for d in docs])
            return
        try:
            self._transport.json("POST", f"api/v1/{doc_type}", body=body)
        except (ServiceUnreachable, ServiceUnavailable, TooManyRequests):
            header = self._headers.get(header_uid) if header_uid is not None else None
            if header is None:
                raise  # nothing known of this analysis to spool it with
            streams = [s for s in self._streams.values() if s["analysis_header"] == header_uid]
            self._spool.begin(_with_time(header), [_with_time(s) for s in streams])
            if doc_type != "analysis_header":
                self._spool.add(header_uid, doc_type, [_with_time(d) for d in docs])

    def _analysis_of(self, doc_type: str, doc: dict[str, Any]) -> str | None:
        if doc_type == "analysis_header":
            return doc["uid"]
        if doc_type == "data_reference":
            stream = self._streams.get(doc.get("data_reference_header"))
            return stream["analysis_header"] if stream else None
        return doc.get("analysis_header")

    def _remember(self, doc_type: str, docs: list[dict[str, Any]]) -> None:
        if doc_type == "analysis_header":
            self._headers[docs[0]["uid"]] = _with_time(docs[0])
        elif doc_type == "data_reference_header":
            self._streams[docs[0]["uid"]] = _with_time(docs[0])
        elif doc_type == "analysis_tail":
            header_uid = docs[0]["analysis_header"]
            self._headers.pop(header_uid, None)
            for uid in [u for u, s in self._streams.items() if s["analysis_header"] == header_uid]:
                del self._streams[uid]

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

        ``data`` is any iterable (a generator is consumed lazily) of records
        with ``data`` and ``timestamps`` and optionally ``uid``, ``time``,
        ``seq_num``. A rejected chunk raises; the chunks before it are stored,
        and re-sending them is harmless.
        """
        if kwargs:
            raise TypeError(f"insert_bulk_data_reference() got unexpected arguments {sorted(kwargs)}")
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
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

    def insert_many(self, doc_type: str, docs: list[Mapping[str, Any]]) -> dict[str, Any]:
        """Send complete documents of one type as one bulk request; the service's per-item answer.

        For tools that move whole documents (sync, import): nothing is filled in.
        """
        _document_name(doc_type)
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
        body: dict[str, Any] = {"filter": dict(query or {})}
        if order_by is not None:
            body["order_by"] = order_by
        if not paged:
            yield from self._iter_ndjson(doc_type, name, body, limit)
            return
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

    def _iter_ndjson(self, doc_type: str, name: str, body: dict[str, Any],
                     limit: int | None) -> Iterator[Document]:
        if limit is not None:
            body["limit"] = limit
        response = self._transport.request("POST", f"api/v1/{doc_type}/search", body=body,
                                           stream=True, accept=NDJSON)
        received = 0
        with response:
            try:
                for line in response.iter_lines(chunk_size=64 * 1024):
                    if line:
                        received += 1
                        yield Document(name, loads(line))
            except requests.RequestException as exc:
                raise ServiceUnreachable(
                    f"the result stream broke after {received} documents: {exc}; "
                    "use paged=True to resume page by page") from exc

    def find(self, doc_type: str, query: Mapping[str, Any] | None = None, *,
             order_by: str | list[str] | None = None, limit: int | None = None,
             stream: bool = False) -> Any:
        """Documents of ``doc_type`` matching ``query`` (field: value, or the allowed operators).

        A list, as in 0.x; with ``stream=True`` an iterator instead.
        """
        found = self.iter_find(doc_type, query, order_by=order_by, limit=limit)
        return found if stream else list(found)

    def find_analysis_header(self, order_by: Any = None, limit: int | None = None, **kwargs: Any) -> list[Document]:
        """Analysis headers matching the keyword filter, e.g. ``uid=...`` or ``project="x"``."""
        return self.find("analysis_header", kwargs, order_by=order_by, limit=limit)

    def find_analysis_tail(self, order_by: Any = None, limit: int | None = None, **kwargs: Any) -> list[Document]:
        """Analysis tails matching the keyword filter, e.g. ``analysis_header=uid``."""
        return self.find("analysis_tail", kwargs, order_by=order_by, limit=limit)

    def find_data_reference_header(self, order_by: Any = None, limit: int | None = None,
                                   **kwargs: Any) -> list[Document]:
        """Streams matching the keyword filter, e.g. ``analysis_header=uid``."""
        return self.find("data_reference_header", kwargs, order_by=order_by, limit=limit)

    def find_data_reference(self, order_by: Any = None, limit: int | None = None, **kwargs: Any) -> list[Document]:
        """Records matching the keyword filter, e.g. ``data_reference_header=uid``."""
        return self.find("data_reference", kwargs, order_by=order_by, limit=limit)

    def iter_analysis_header(self, order_by: Any = None, **kwargs: Any) -> Iterator[Document]:
        """Like ``find_analysis_header`` but lazy, for any number of results."""
        return self.iter_find("analysis_header", kwargs, order_by=order_by)

    def iter_analysis_tail(self, order_by: Any = None, **kwargs: Any) -> Iterator[Document]:
        """Like ``find_analysis_tail`` but lazy."""
        return self.iter_find("analysis_tail", kwargs, order_by=order_by)

    def iter_data_reference_header(self, order_by: Any = None, **kwargs: Any) -> Iterator[Document]:
        """Like ``find_data_reference_header`` but lazy."""
        return self.iter_find("data_reference_header", kwargs, order_by=order_by)

    def iter_data_reference(self, order_by: Any = None, **kwargs: Any) -> Iterator[Document]:
        """Like ``find_data_reference`` but lazy: walks millions of records in constant memory."""
        return self.iter_find("data_reference", kwargs, order_by=order_by)

    def iter_lookup(self, doc_type: str, lookups: Mapping[str, str], *, order_by: str | None = None,
                    fields: list[str] | None = None) -> Iterator[Document]:
        """Documents matching query-string lookups (``{"time__gte": "2026-01-01", "project": "x"}``), page by page."""
        name = _document_name(doc_type)
        params: dict[str, Any] = {**lookups, "limit": _PAGE_SIZE}
        if order_by:
            params["order_by"] = order_by
        if fields:
            params["fields"] = ",".join(fields)
        while True:
            page = self._transport.json("GET", f"api/v1/{doc_type}", params=params)
            for doc in page["items"]:
                yield Document(name, doc)
            if not page["meta"]["next_cursor"]:
                return
            params["cursor"] = page["meta"]["next_cursor"]

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


def _with_time(doc: dict[str, Any]) -> dict[str, Any]:
    """A spooled document carries its own time (no server is there to fill it)."""
    return doc if doc.get("time") is not None else {**doc, "time": _time.time()}


def _document_name(doc_type: str) -> str:
    try:
        return _DOCUMENT_NAMES[doc_type]
    except KeyError:
        raise ValueError(f"unknown document type {doc_type!r}; expected one of {sorted(_DOCUMENT_NAMES)}") from None
