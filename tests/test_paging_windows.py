"""Keyset pages of a stream read in bounded time windows give exactly the pages of one open query."""
from __future__ import annotations

import requests
from pymongo import AsyncMongoClient, monitoring

from analysisstore.store import Store
from helpers import header_doc, post, record_doc, stream_doc


def _pages(service, stream_uid: str, order_by: str, limit: int) -> list[list[str]]:
    pages, params = [], {"data_reference_header": stream_uid, "order_by": order_by, "limit": limit}
    while True:
        body = requests.get(f"{service.url}/api/v1/data_reference", params=params, timeout=30).json()
        pages.append([doc["uid"] for doc in body["items"]])
        if not body["meta"]["has_more"]:
            return pages
        params["cursor"] = body["meta"]["next_cursor"]


def test_pages_of_an_uneven_stream_visit_every_record_once_in_order(service):
    """Dense runs, ties on time, a long gap and a lone straggler: both directions, every record exactly once."""
    header = header_doc()
    stream = stream_doc(header["uid"])
    assert post(service, "analysis_header", header).status_code == 201
    assert post(service, "data_reference_header", stream).status_code == 201
    times = [1000.0 + i * 0.01 for i in range(60)]          # a dense run: the windows learn its density
    times += [1001.0] * 7                                   # ties on one time, split only by uid
    times += [5000.0 + i for i in range(25)]                # after a gap far wider than any first window
    times += [9_000_000.0]                                  # a straggler beyond every window
    records = [record_doc(stream["uid"], seq_num=i, time=t) for i, t in enumerate(times)]
    assert post(service, "data_reference", records).ok
    expected = [r["uid"] for r in sorted(records, key=lambda r: (r["time"], r["uid"]))]
    for limit in (7, 10):
        forward = _pages(service, stream["uid"], "time", limit)
        assert [uid for page in forward for uid in page] == expected
        assert all(len(page) == limit for page in forward[:-1])
        backward = _pages(service, stream["uid"], "-time", limit)
        assert [uid for page in backward for uid in page] == expected[::-1]
        assert all(len(page) == limit for page in backward[:-1])


class _Finds(monitoring.CommandListener):
    def __init__(self) -> None:
        self.count = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.count += event.command_name == "find"

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def test_a_first_page_bounded_by_its_own_time_is_one_query(service, service_loop, mongo_uri):
    """`time__gt=…` or status=running (whose bound is the stale cutoff) on a first page: one find, even once the
    listing's density is known and the data lies far past the bound (windows are for pages after a cursor)."""
    header = header_doc()
    stream = stream_doc(header["uid"])
    assert post(service, "analysis_header", header).status_code == 201
    assert post(service, "data_reference_header", stream).status_code == 201
    assert post(service, "data_reference", [record_doc(stream["uid"], seq_num=i, time=1e6 + i)
                                            for i in range(30)]).ok
    finds = _Finds()
    store = Store(AsyncMongoClient(mongo_uri, event_listeners=[finds]), service.config.database)
    query = {"data_reference_header": stream["uid"], "time": {"$gt": 0.0}}

    async def first_pages() -> list[list[dict]]:
        pages = []
        for _ in range(2):  # the first one teaches the listing's density
            docs, _ = await store.find_page("data_reference", [query], [("time", 1), ("uid", 1)], 10)
            pages.append(docs)
        await store.close()
        return pages

    pages = service_loop.run(first_pages())
    assert finds.count == 2, "a first page was read in time windows"
    assert [d["seq_num"] for d in pages[1]] == list(range(10))
