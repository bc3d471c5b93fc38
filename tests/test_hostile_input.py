"""Hostile input: forged cursors, impossible values, odd uids and field names get a 4xx, never a 500."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
import math
import re
import uuid
import zipfile
from urllib.parse import quote, unquote

import pytest
import requests

from analysisstore.client import AnalysisClient
from analysisstore.client.bundle import Bundle, read_bundle
from analysisstore.config import ConfigError, load_config
from analysisstore.drivers.archive import export_analyses, import_archives
from analysisstore.errors import BadRequest
from analysisstore.queries import check_field, decode_cursor, encode_cursor, parse_order_by
from analysisstore.store import Store
from helpers import as_stored, assert_error, header_doc, post, record_doc, stream_doc, tail_doc
from serving import Serve

SECRET = "a-test-secret-of-enough-length-0123456789"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _payload(cursor: str) -> dict:
    return json.loads(_unb64(cursor.split(".")[0]))


def _signed(payload_text: str, secret: str = SECRET) -> str:
    """A cursor in the documented format: base64url(payload) "." base64url(HMAC-SHA256(secret, payload))."""
    raw = payload_text.encode()
    return _b64(raw) + "." + _b64(hmac.new(secret.encode(), raw, hashlib.sha256).digest())


def _list(service, doc_type="analysis_header", **params):
    return requests.get(f"{service.url}/api/v1/{doc_type}", params=params, timeout=30)


def _search(service, body, doc_type="analysis_header"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(f"{service.url}/api/v1/{doc_type}/search", data=data,
                         headers={"Content-Type": "application/json"}, timeout=30)


# ---- 1. cursors: authenticated, scalar, bound to the caller's request --------------------------------


@pytest.fixture
def genuine_cursors(start_service):
    """Cursors issued by a service with SECRET for project=a (page 1) and status=running."""
    service = start_service(cursor_secret=SECRET, stale_after_seconds=1e12)
    post(service, "analysis_header", [header_doc(project="a", time=1_700_000_000.0 + i) for i in range(3)])
    by_project = _list(service, project="a", limit=1).json()["meta"]["next_cursor"]
    by_status = _list(service, status="running", limit=1).json()["meta"]["next_cursor"]
    assert by_project and by_status
    return {"project": by_project, "status": by_status}


def _forgeries(genuine: dict) -> dict[str, tuple[dict, str]]:
    """Name → (query params, cursor) of cursors no caller may use."""
    fingerprint = _payload(genuine["project"])["f"]
    unkeyed = _b64(json.dumps({"v": [{"$gt": 0}, {"$regex": ""}], "f": fingerprint}).encode())
    flipped = genuine["project"][:-2] + ("AA" if not genuine["project"].endswith("AA") else "BB")
    project_a = {"project": "a", "limit": "1"}

    def signed(values_json: str) -> str:
        return _signed('{"v":' + values_json + ',"f":"' + fingerprint + '"}')

    return {
        "unkeyed operator cursor": (project_a, unkeyed),
        "wrong mac": (project_a, flipped),
        "signed with another secret": (project_a, _signed(_unb64(genuine["project"].split(".")[0]).decode(),
                                                          secret="another-secret-of-enough-length-000")),
        "operator value": (project_a, signed('[{"$regex": ""}, "u"]')),
        "$where value": (project_a, signed('[1, {"$where": "sleep(1000)"}]')),
        "list value": (project_a, signed('[[1, 2], "u"]')),
        "values not a list": (project_a, signed("5")),
        "too few values": (project_a, signed("[1.0]")),
        "too many values": (project_a, signed('[1.0, "u", 3]')),
        "integer beyond 64 bits": (project_a, signed('[1180591620717411303424, "u"]')),
        "NaN": (project_a, signed('[NaN, "u"]')),
        "swapped filter": ({"project": "b", "limit": "1"}, genuine["project"]),
        "other doc type": ({"project": "a", "limit": "1", "_doc_type": "analysis_tail"}, genuine["project"]),
        "status cursor with another status": ({"status": "success", "limit": "1"}, genuine["status"]),
        "status cursor without status": ({"limit": "1"}, genuine["status"]),
        "garbage": (project_a, "garbage!!"),
        "not base64": (project_a, "%%%.%%%"),
        "huge": (project_a, "A" * 40_000),
    }


@pytest.mark.parametrize("name", list(_forgeries({"project": _signed('{"v":[],"f":"x"}'),
                                                  "status": "x"})))
def test_forged_cursor_is_400_and_never_reaches_the_database(start_service, closed_port, genuine_cursors, name):
    """A forged, altered, non-scalar or foreign cursor is a 400 from a service whose database is down."""
    params, cursor = _forgeries(genuine_cursors)[name]
    doc_type = params.pop("_doc_type", "analysis_header")
    dead = start_service(mongo_uri_override=f"mongodb://127.0.0.1:{closed_port}/?serverSelectionTimeoutMS=300",
                         cursor_secret=SECRET, db_timeout_ms=300)
    # The database is unreachable: reaching it would answer 503, so a 400 proves the cursor stopped first.
    assert_error(_list(dead, doc_type, **params, cursor=cursor), 400, "BadRequest", contains="cursor")
    body = {"filter": {k: v for k, v in params.items() if k not in ("limit", "status")}, "limit": 1,
            "cursor": cursor, **({"status": params["status"]} if "status" in params else {})}
    assert_error(_search(dead, body, doc_type), 400, "BadRequest", contains="cursor")


@pytest.mark.parametrize("values", [
    [{"$regex": ""}, "u"], [1.0], [1.0, "u", 2], [[1], "u"], 5, {"a": 1}, [2 ** 64, "u"], [-(2 ** 63) - 1, "u"],
    [math.inf, "u"], [math.nan, "u"], ["\ud800", "u"],
])
def test_decoded_cursor_values_must_be_json_scalars_matching_the_sort(values):
    """Even correctly signed, a cursor decodes only to finite JSON scalars, one per sort key."""
    sort = parse_order_by("time")
    request = {"filter": {}, "status": None, "doc_type": "analysis_header"}
    genuine = encode_cursor({"time": 1.0, "uid": "u"}, request, sort, secret=SECRET)
    fingerprint = _payload(genuine)["f"]
    forged = _signed(json.dumps({"v": values, "f": fingerprint}))
    with pytest.raises(BadRequest, match="cursor"):
        decode_cursor(forged, request, sort, secret=SECRET)
    assert decode_cursor(genuine, request, sort, secret=SECRET) == [1.0, "u"]


def test_cursor_is_not_issued_for_a_non_scalar_sort_value(service):
    """Paging by a field holding objects is refused loudly (400), not answered with a cursor that cannot work."""
    post(service, "analysis_header", [header_doc() for _ in range(3)])
    assert_error(_list(service, order_by="provenance", limit=1), 400, contains="provenance")
    assert len(_list(service, order_by="provenance", limit=10).json()["items"]) == 3  # one page needs no cursor


def _walk(service, params, search=False):
    seen, cursor = [], None
    for _ in range(50):
        if search:
            body = {"filter": {}, "status": params["status"], "limit": params["limit"],
                    **({"cursor": cursor} if cursor else {})}
            response = _search(service, body)
        else:
            response = _list(service, **params, **({"cursor": cursor} if cursor else {}))
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [d["uid"] for d in page["items"]]
        cursor = page["meta"]["next_cursor"]
        if not cursor:
            return seen
    raise AssertionError("paging did not end")


def test_paging_through_status_running_by_listing_and_search(start_service):
    """Several pages of status=running, by GET and by search, each running analysis exactly once, in order."""
    service = start_service(stale_after_seconds=1e12)  # nothing is stale: every analysis without tail runs
    running = [header_doc(time=1_700_000_000.0 + i) for i in range(7)]
    finished = [header_doc(time=1_700_000_000.5 + i) for i in range(3)]
    post(service, "analysis_header", running + finished)
    for header in finished:
        assert post(service, "analysis_tail", tail_doc(header["uid"])).status_code == 201
    expected = [h["uid"] for h in running]
    assert _walk(service, {"status": "running", "limit": 2}) == expected
    assert _walk(service, {"status": "running", "limit": 3}, search=True) == expected
    assert _walk(service, {"status": "success", "limit": 1}) == [h["uid"] for h in finished]


def test_the_generated_cursor_secret_is_shared_by_every_service_on_the_database(start_service):
    """Without a configured secret, services on one database (workers, hosts) accept each other's cursors."""
    first = start_service()
    post(first, "analysis_header", [header_doc(time=1_700_000_000.0 + i) for i in range(3)])
    cursor = _list(first, limit=1).json()["meta"]["next_cursor"]
    second = start_service(database=first.config.database)  # another worker, host or a restart
    page = _list(second, limit=1, cursor=cursor)
    assert page.status_code == 200 and len(page.json()["items"]) == 1
    stored = list(first.database["service"].find({}))
    assert len(stored) == 1 and len(stored[0]["secret"]) >= 32
    other = start_service(database=first.config.database, cursor_secret=SECRET)  # a different secret
    assert_error(_list(other, limit=1, cursor=cursor), 400, contains="cursor")


def test_workers_starting_together_agree_on_one_generated_secret(service_loop, mongo_uri, mongo):
    """Six stores racing to create the secret of a fresh database all end up with the same one."""
    name = f"asst_test_{uuid.uuid4().hex[:12]}"

    async def race():
        stores = [Store.connect(mongo_uri, name) for _ in range(6)]
        try:
            return await asyncio.gather(*(store.cursor_secret() for store in stores))
        finally:
            for store in stores:
                await store.close()

    try:
        secrets = service_loop.run(race())
    finally:
        mongo.drop_database(name)
    assert len(set(secrets)) == 1 and len(secrets[0]) == 64


@pytest.mark.subprocess
@pytest.mark.timeout(300)
def test_cursors_page_across_worker_processes(mongo_uri, mongo):
    """`serve --processes 2` without a configured secret: 30 pages, each on a new connection, all follow."""
    name = f"asst_cursor_{uuid.uuid4().hex[:8]}"
    server = Serve("--mongo-uri", mongo_uri, "--database", name, "--processes", "2", "--log-level", "warning")
    try:
        server.wait_ready()
        headers = [header_doc(time=1_700_000_000.0 + i) for i in range(30)]
        assert requests.post(f"{server.url}/api/v1/analysis_header", json=headers, timeout=60).status_code == 200
        seen, cursor = [], None
        for _ in range(40):  # a new connection per page, so both workers answer some of them
            params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
            page = requests.get(f"{server.url}/api/v1/analysis_header", params=params,
                                headers={"Connection": "close"}, timeout=30)
            assert page.status_code == 200, page.text
            seen += [d["uid"] for d in page.json()["items"]]
            cursor = page.json()["meta"]["next_cursor"]
            if not cursor:
                break
        assert seen == [h["uid"] for h in headers]
        assert mongo[name].service.count_documents({}) == 1
        code, output = server.terminate()
        assert code == 0, output
    finally:
        server.kill()
        mongo.drop_database(name)


def test_cursor_secret_setting():
    """cursor_secret comes from the environment or the file, must be long enough, and is never shown."""
    config = load_config(environ={"ASST_CURSOR_SECRET": SECRET})
    assert config.cursor_secret == SECRET and config.sources["cursor_secret"] == "env:ASST_CURSOR_SECRET"
    assert SECRET not in json.dumps(config.describe())
    with pytest.raises(ConfigError, match="cursor_secret"):
        load_config(environ={"ASST_CURSOR_SECRET": "short"})


# ---- 3. values the database or HTTP cannot carry: 4xx up front, nothing stored --------------------------


def test_lone_surrogates_in_bodies_and_filters_are_refused(service, analysis):
    """A lone surrogate (\\ud800) in a document, a bulk, a PATCH or a filter is a 4xx; nothing is stored."""
    doc = json.dumps(header_doc(notes="SURROGATE")).replace("SURROGATE", "\\ud800").encode()
    response = requests.post(f"{service.url}/api/v1/analysis_header", data=doc, timeout=30)
    assert_error(response, 422)
    uid_doc = json.dumps([header_doc(uid="SURROGATE"), header_doc()]).replace("SURROGATE", "a\\udfff").encode()
    assert_error(requests.post(f"{service.url}/api/v1/analysis_header", data=uid_doc, timeout=30), 422)
    assert service.count("analysis_header") == 1
    patch = b'{"$set": {"notes": "\\ud800"}}'
    url = f"{service.url}/api/v1/analysis_header/{analysis['header']['uid']}"
    assert_error(requests.patch(url, data=patch, timeout=30), 422)
    assert "notes" not in requests.get(url, timeout=30).json()
    assert_error(_search(service, b'{"filter": {"project": "\\ud800"}}'), 400)
    assert_error(_search(service, b'{"filter": {"tags": {"$in": ["ok", "\\udc00"]}}}'), 400)
    legacy = quote('{"signature": "find_analysis_header", "payload": {"project": "\\ud800"}}')
    assert_error(requests.get(f"{service.url}/analysis_header?{legacy}", timeout=30), 400)


@pytest.mark.parametrize("value", ["2026-13-45", "2026-02-30", "2026-01-01T00:00:00+99:99", "2026-01-01T25:00",
                                   "2026-04-31", "2026-00-10T10:00Z"])
def test_impossible_dates_in_query_strings_are_400(service, value):
    """An ISO date that does not exist is a 400 naming it, not a 500."""
    assert_error(_list(service, time__gte=value), 400)
    assert_error(_list(service, time__range=f"2026-01-01,{value}"), 400)


@pytest.mark.parametrize("params", [{"seq_num": str(2 ** 64)}, {"seq_num__gt": str(-(2 ** 63) - 1)},
                                    {"seq_num__in": f"1,{2 ** 70}"}, {"seq_num__range": f"0,{2 ** 63}"},
                                    {"seq_num__ne": str(2 ** 100)}])
def test_integers_beyond_64_bits_in_query_strings_are_400(service, params):
    """The database cannot hold an integer beyond 64 bits: such a lookup is a 400 before the database."""
    assert_error(_list(service, "data_reference", **params), 400, contains="64")


@pytest.mark.parametrize("filt", [{"seq_num": 2 ** 63}, {"seq_num": {"$in": [1, 2 ** 64 - 1]}},
                                  {"$or": [{"seq_num": {"$gt": -(2 ** 63) - 1}}]}])
def test_integers_beyond_64_bits_in_json_filters_are_400(service, filt):
    """The same for the JSON filter of a search and of the legacy face."""
    assert_error(_search(service, {"filter": filt}, "data_reference"), 400, contains="64")
    legacy = quote(json.dumps({"signature": "find_data_reference", "payload": filt}))
    assert_error(requests.get(f"{service.url}/data_reference?{legacy}", timeout=30), 400, contains="64")


@pytest.mark.parametrize("uid", ["a\r\nLocation: x", "tab\there", "nul\x00", "del\x7f", "c1\x85", "ls\u2028",
                                 ".", "..", "x" * 257])
def test_uids_outside_the_contract_are_422_and_nothing_is_stored(service, analysis, uid):
    """Control characters, line separators, "." / ".." and over-long uids are refused for every doc type."""
    header = analysis["header"]["uid"]
    stream = analysis["stream"]["uid"]
    for doc_type, doc in [("analysis_header", header_doc(uid=uid)),
                          ("data_reference_header", stream_doc(header, uid=uid)),
                          ("data_reference", record_doc(stream, uid=uid)),
                          ("analysis_tail", tail_doc(header, uid=uid))]:
        assert_error(post(service, doc_type, doc), 422)
        assert service.count(doc_type, {"uid": uid}) == 0
    assert_error(post(service, "data_reference_header", stream_doc(uid)), 422)  # parent links too


UNICODE_UIDS = ["分析-🧪-" + "测" * 240, "e\u0301t\u00e9 👩\u200d🔬", 'quote"semi;colon=and spaces', "a/b\\c",
                "percent%2Fslash?#&"]


@pytest.mark.parametrize("uid", UNICODE_UIDS, ids=["cjk-256", "emoji-zwj", "quotes", "separators", "percent"])
def test_any_uid_the_contract_allows_is_stored_served_and_bundled(service, uid, tmp_path):
    """A valid uid (non-ASCII, emoji, quotes, separators, 256 characters) round-trips through every path."""
    created = post(service, "analysis_header", header_doc(uid=uid))
    assert created.status_code == 201, created.text
    location = created.headers["Location"]
    assert location == "/api/v1/analysis_header/" + quote(uid, safe="") and location.isascii()
    assert requests.get(service.url + location, timeout=30).json()["uid"] == uid
    stream = stream_doc(uid, uid=uid[::-1] + "-stream")
    assert post(service, "data_reference_header", stream).status_code == 201
    assert post(service, "data_reference", [record_doc(stream["uid"], i) for i in range(3)]).status_code == 200
    bundle = requests.get(f"{service.url}/api/v1/analysis/{quote(uid, safe='')}/bundle", timeout=30)
    assert bundle.status_code == 200, bundle.text
    with zipfile.ZipFile(io.BytesIO(bundle.content)) as archive:
        assert all(len(name.split("/")[-1].encode()) < 200 for name in archive.namelist())
    path = tmp_path / "download.zip"
    path.write_bytes(bundle.content)
    (read,) = read_bundle(path)
    with read:
        read.validate()
        assert read.header["uid"] == uid
        assert [s["uid"] for s in read.streams] == [stream["uid"]]
        assert len(list(read.records(stream["uid"]))) == 3


def test_long_uids_survive_export_import_and_the_offline_spool(start_service, closed_port, tmp_path):
    """256-character (and 1 KiB UTF-8) uids: export, import and the offline spool keep every document."""
    header_uid, stream_uid = "h" * 256, "🧪" * 256
    client = AnalysisClient({"url": start_service().url, "retries": 0})
    client.insert_analysis_header(uid=header_uid, provenance={})
    client.insert_data_reference_header(header_uid, uid=stream_uid, data_keys={"x": {"dtype": "number"}})
    client.insert_bulk_data_reference(stream_uid, [{"data": {"x": i}, "timestamps": {}} for i in range(5)])
    client.insert_analysis_tail(header_uid, exit_status="success")
    (archive,) = export_analyses(client, [header_uid], tmp_path / "out")
    assert len(archive.name.encode()) < 255
    target = start_service()
    report = import_archives(AnalysisClient({"url": target.url, "retries": 0}), [archive])
    assert report.ok, report
    assert target.count("data_reference", {"data_reference_header": stream_uid}) == 5
    assert target.count("analysis_tail", {"analysis_header": header_uid}) == 1

    offline = AnalysisClient({"host": "127.0.0.1", "port": closed_port, "spool_dir": str(tmp_path / "spool"),
                              "retries": 0})
    spooled_header, spooled_stream = "s" * 256, "流" * 256
    offline.insert_analysis_header(uid=spooled_header, provenance={})
    offline.insert_data_reference_header(spooled_header, uid=spooled_stream, data_keys={"x": {"dtype": "number"}})
    offline.insert_bulk_data_reference(spooled_stream, [{"data": {"x": i}, "timestamps": {}} for i in range(4)])
    offline.insert_analysis_tail(spooled_header, exit_status="success")
    (finished,) = list((tmp_path / "spool" / "RUNS_FINISHED").iterdir())
    with Bundle(finished) as bundle:
        assert bundle.validate()["streams"] == {spooled_stream: 4}


def test_a_uid_stored_before_the_contract_can_still_be_downloaded(service, tmp_path):
    """A header whose uid has CR/LF (stored by an older version) still downloads as a valid bundle."""
    uid = "old\r\nuid\x01"
    service.database.analysis_header.insert_one(as_stored(header_doc(uid=uid)))
    response = requests.get(f"{service.url}/api/v1/analysis/{quote(uid, safe='')}/bundle", timeout=30)
    assert response.status_code == 200, response.text
    assert "\r" not in response.headers["Content-Disposition"]
    path = tmp_path / "old.zip"
    path.write_bytes(response.content)
    (bundle,) = read_bundle(path)
    with bundle:
        assert bundle.header["uid"] == uid


# ---- 4. Content-Disposition cannot be split by a uid --------------------------------------------------


def test_bundle_file_name_cannot_inject_header_parameters(service):
    """A uid with quotes and semicolons yields one filename (ASCII fallback) and one RFC 6266 filename*."""
    uid = 'x";filename="evil.sh;é'
    assert post(service, "analysis_header", header_doc(uid=uid)).status_code == 201
    response = requests.get(f"{service.url}/api/v1/analysis/{quote(uid, safe='')}/bundle", timeout=30)
    assert response.status_code == 200, response.text
    disposition = response.headers["Content-Disposition"]
    assert disposition.isascii()
    assert disposition.lower().count("filename=") == 1 and disposition.lower().count("filename*=") == 1
    assert disposition.startswith("attachment;")
    exact = re.search(r"filename\*=UTF-8''([^;\s]+)", disposition).group(1)
    assert unquote(exact) == uid + ".zip"
    fallback = re.search(r'filename="([^"]*)"', disposition).group(1)
    assert re.fullmatch(r"[A-Za-z0-9._-]+\.zip", fallback), fallback


# ---- 5. field names: the whole name, no trailing newline -----------------------------------------------


def test_field_names_with_a_trailing_newline_are_refused(service, analysis):
    """ "notes\\n" is not a field name: PATCH, lookups, search, order_by, fields and documents refuse it."""
    for name in ("notes\n", "provenance.analysis_name\n", "uid\r"):
        with pytest.raises(BadRequest):
            check_field(name)
    url = f"{service.url}/api/v1/analysis_header/{analysis['header']['uid']}"
    assert_error(requests.patch(url, json={"$set": {"notes\n": "look-alike"}}, timeout=30), 400)
    assert_error(requests.patch(url, json={"$unset": ["notes\n"]}, timeout=30), 400)
    stored = service.database.analysis_header.find_one({"uid": analysis["header"]["uid"]}, {"_id": 0})
    assert "notes\n" not in stored and "_revision" not in stored
    assert_error(_list(service, **{"project\n": "x"}), 400)
    assert_error(_list(service, fields="uid\n"), 400)
    assert_error(_search(service, {"filter": {"project\n": "x"}}), 400)
    assert_error(post(service, "analysis_header", header_doc(**{"notes\n": "x"})), 422)
    assert service.count("analysis_header") == 1
