"""Keyset pages of a stream read in bounded time windows give exactly the pages of one open query."""
from __future__ import annotations

import requests

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
