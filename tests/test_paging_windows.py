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


class _FindFilters(monitoring.CommandListener):
    """The filter of every find sent, to count the documents each one makes the database fetch."""

    def __init__(self) -> None:
        self.filters: list[dict] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find" and event.command.get("find") == "data_reference":
            self.filters.append(event.command["filter"])

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def _in_range(t: float, condition: dict | None) -> bool:
    """Is ``t`` inside a find's time condition (None: no bound on time)?"""
    checks = {"$gt": t.__gt__, "$gte": t.__ge__, "$lt": t.__lt__, "$lte": t.__le__}
    return all(checks[op](bound) for op, bound in (condition or {}).items())


def _stream_with(service, times: list[float]) -> tuple[dict, list[dict]]:
    header = header_doc()
    stream = stream_doc(header["uid"])
    assert post(service, "analysis_header", header).status_code == 201
    assert post(service, "data_reference_header", stream).status_code == 201
    records = [record_doc(stream["uid"], seq_num=i, time=t) for i, t in enumerate(times)]
    for start in range(0, len(records), 1000):
        assert post(service, "data_reference", records[start:start + 1000]).ok
    return stream, records


def test_a_first_page_of_a_long_stream_fetches_about_one_page(service, service_loop, mongo_uri):
    """The first page of 20 records of a 3 000-record stream makes the database fetch a few dozen records
    (their index range), not the whole stream, and they are the first 20 in (time, uid) order."""
    stream, records = _stream_with(service, [stream_doc("x")["time"] + i * 0.5 for i in range(3000)])
    finds = _FindFilters()
    store = Store(AsyncMongoClient(mongo_uri, event_listeners=[finds]), service.config.database)

    async def first_page() -> list[dict]:
        docs, more = await store.find_page("data_reference", [{"data_reference_header": stream["uid"]}],
                                           [("time", 1), ("uid", 1)], 20)
        await store.close()
        assert more
        return docs

    docs = service_loop.run(first_page())
    expected = sorted(records, key=lambda r: (r["time"], r["uid"]))[:20]
    assert [d["uid"] for d in docs] == [r["uid"] for r in expected]
    fetched = sum(_in_range(r["time"], f.get("time")) for f in finds.filters for r in records)
    assert fetched <= 100, f"the first page made the database fetch {fetched} of {len(records)} records"


def _expected(records: list[dict]) -> list[str]:
    return [r["uid"] for r in sorted(records, key=lambda r: (r["time"], r["uid"]))]


def test_first_pages_read_records_stamped_before_their_stream_header(service):
    """Records older than the stream header (clock skew, back-filled data), ties across the header's time,
    a dense run and a far straggler: every page equals one open query's, in both directions."""
    header_time = stream_doc("x")["time"]
    times = [header_time - 86_400.0, header_time - 3.0, header_time - 3.0]  # a day early, and a tie
    times += [header_time] * 4                                              # ties on the header's own time
    times += [header_time + i * 0.001 for i in range(1, 40)]                # dense after it
    times += [header_time + 1e7]                                            # a straggler far beyond
    stream, records = _stream_with(service, times)
    for limit in (1, 3, 10):
        forward = _pages(service, stream["uid"], "time", limit)
        assert [uid for page in forward for uid in page] == _expected(records)
        assert all(len(page) == limit for page in forward[:-1])
        backward = _pages(service, stream["uid"], "-time", limit)
        assert [uid for page in backward for uid in page] == _expected(records)[::-1]


def test_a_stream_recorded_entirely_before_its_header_pages_whole(service):
    """Every record earlier than the header: the first window (no lower bound) holds them all."""
    header_time = stream_doc("x")["time"]
    stream, records = _stream_with(service, [header_time - 1000.0 + i for i in range(25)])
    pages = _pages(service, stream["uid"], "time", 10)
    assert [len(page) for page in pages] == [10, 10, 5]
    assert [uid for page in pages for uid in page] == _expected(records)


def test_streams_of_no_record_and_of_one_record_page_as_one_query(service):
    """An empty stream is one empty page; a stream of one record is one page with it; an unknown stream
    is an empty page, not an error."""
    empty, _ = _stream_with(service, [])
    assert _pages(service, empty["uid"], "time", 10) == [[]]
    single, records = _stream_with(service, [stream_doc("x")["time"] + 5.0])
    assert _pages(service, single["uid"], "time", 10) == [[records[0]["uid"]]]
    assert _pages(service, "no-such-stream", "time", 10) == [[]]


def test_a_listing_learned_then_changed_still_pages_exactly(service):
    """The windows' width is learnt from a dense first reading; records added later far before the
    header and in a burst of equal times must still be paged exactly, without gap or repeat."""
    header_time = stream_doc("x")["time"]
    stream, records = _stream_with(service, [header_time + i * 0.01 for i in range(50)])
    assert [u for page in _pages(service, stream["uid"], "time", 7) for u in page] == _expected(records)
    later = [record_doc(stream["uid"], seq_num=100 + i, time=t)
             for i, t in enumerate([header_time - 500.0] * 3 + [header_time + 0.25] * 12 + [header_time + 3e5])]
    assert post(service, "data_reference", later).ok
    records += later
    for limit in (4, 7, 30):
        assert [u for page in _pages(service, stream["uid"], "time", limit) for u in page] == _expected(records)


def test_listings_that_are_not_one_stream_keep_their_pages(service):
    """Records of several streams by time, a stream with another lookup, headers: unchanged pages."""
    header_time = stream_doc("x")["time"]
    first, records_a = _stream_with(service, [header_time - 2.0 + i for i in range(12)])
    second, records_b = _stream_with(service, [header_time + 0.5 + i for i in range(12)])
    body = requests.post(f"{service.url}/api/v1/data_reference/search", timeout=30, json={
        "filter": {"data_reference_header": {"$in": [first["uid"], second["uid"]]}}, "limit": 5,
        "order_by": ["time"]}).json()
    assert [d["uid"] for d in body["items"]] == _expected(records_a + records_b)[:5]
    body = requests.get(f"{service.url}/api/v1/data_reference", timeout=30, params={
        "data_reference_header": first["uid"], "seq_num__gte": 3, "limit": 4}).json()
    assert [d["uid"] for d in body["items"]] == _expected(records_a[3:])[:4]


def test_times_at_the_end_of_the_accepted_range_page_exactly(service):
    """Windows that would reach past the largest accepted time (1e120; larger ones are refused at write,
    tests/test_upper_bounds.py) end in one open read: a header stamped near it with records before it, and
    a stream whose records straddle ordinary and huge times."""
    header = header_doc()
    late = stream_doc(header["uid"], time=0.9e120)
    assert post(service, "analysis_header", header).status_code == 201
    assert post(service, "data_reference_header", late).status_code == 201
    records = [record_doc(late["uid"], seq_num=i, time=t) for i, t in enumerate([1.0, 2.0, 0.95e120, 1e120])]
    assert post(service, "data_reference", records).ok
    stream, more = _stream_with(service, [1_700_000_002.0 + i for i in range(6)] + [0.5e120, 1e120])
    for limit in (1, 3):
        assert [u for page in _pages(service, late["uid"], "time", limit) for u in page] == _expected(records)
        assert [u for page in _pages(service, stream["uid"], "time", limit) for u in page] == _expected(more)


def test_records_on_window_boundaries_are_not_lost(service):
    """Whole-second times, so a window's end (density 1.0 s × page) falls exactly on a record: the
    embedded database answers ``$lte`` on the stream index without the records equal to the bound, and
    a window ending there lost them."""
    gaps = [0, 0, 1, 3, 5, 7, 9, 12, 17, 25, 33, 41, 49]  # sparser as it goes: windows fall short on a record
    stream, records = _stream_with(service, [stream_doc("x")["time"] + g for g in gaps + list(range(50, 110))])
    for limit in (2, 3, 4, 19, 20):
        forward = _pages(service, stream["uid"], "time", limit)
        assert [u for page in forward for u in page] == _expected(records)
        backward = _pages(service, stream["uid"], "-time", limit)
        assert [u for page in backward for u in page] == _expected(records)[::-1]
