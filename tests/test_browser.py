"""The browser view end to end, in headless Chromium, against the real service with demo data."""
from __future__ import annotations

import json
import struct
import sys
import time
import zipfile
import zlib
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from analysisstore.client import AnalysisClient
from analysisstore.demo import run_demo
from helpers import header_doc, new_uid, post, tail_doc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "docs"))
from make_screenshots import CHROMIUM_ARGS, chromium_path, take  # noqa: E402

playwright = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytestmark = pytest.mark.skipif(chromium_path() is None,
                                reason="no Chromium on this machine (Debian: apt-get install chromium)")


@pytest.fixture
def demo_service(service):
    run_demo(lambda: AnalysisClient(service.client_config), progress_bar=False)
    return service


@pytest.fixture
def page():
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        yield page
        browser.close()


def _ready(page):
    page.wait_for_selector("main[data-ready=true]", timeout=30_000)


@pytest.mark.timeout(300)
def test_list_filter_open_follow_plot_download(demo_service, page, tmp_path):
    """Filter by status, open an analysis, follow its input and back, see the plot, download the bundle."""
    page.goto(demo_service.url + "/")
    _ready(page)
    assert page.locator("#analyses tbody tr").count() == 10
    assert page.text_content("#running") == "running: 0"

    page.select_option("#filters select[name=status]", "success")
    page.click("#filters button[type=submit]")
    page.wait_for_selector("#count:has-text('10 analyses')")
    statuses = page.locator("#analyses [data-status]").all_text_contents()
    assert statuses and set(statuses) == {"success"}
    page.select_option("#filters select[name=status]", "fail")
    page.click("#filters button[type=submit]")
    page.wait_for_selector("#count:has-text('0 analyses')")

    page.select_option("#filters select[name=status]", "")
    page.fill("#filters input[name=name]", "uvvis_absorbance")
    page.click("#filters button[type=submit]")
    page.wait_for_selector("#count:has-text('3 analyses')")
    page.click("#analyses tbody tr >> nth=0 >> a.analysis-link")
    _ready(page)
    uid = page.url.rsplit("/", 1)[1]
    polyline = page.locator(".stream:has(h2:has-text('stream absorbance')) svg.plot polyline").first
    polyline.wait_for(state="attached")
    assert len(polyline.get_attribute("points").split()) > 50  # a whole spectrum was drawn

    with page.expect_download() as download_info:
        page.click("#download")
    bundle = tmp_path / "bundle.zip"
    download_info.value.save_as(bundle)
    names = zipfile.ZipFile(bundle).namelist()
    assert "manifest.json" in names and "analysis_tail.json" in names

    page.click("#inputs a.analysis-link")
    page.wait_for_selector("#used-by")
    _ready(page)
    assert page.locator(f"#used-by a[href='#/analysis/{uid}']").count() == 1  # browsable both ways
    assert "acquisition" in page.text_content("main h2")


@pytest.mark.timeout(300)
def test_token_and_readable_errors(start_service, page):
    """With auth on the page asks for a token, shows the API error readably, and works once given one."""
    from analysisstore.auth import digest
    from analysisstore.config import TokenEntry

    service = start_service(require_auth=True, tokens=(TokenEntry("ui", digest("ui-token"), frozenset({"read"})),
                                                       TokenEntry("w", digest("w-token"), frozenset({"read", "write"}))))
    writer = {"Authorization": "Bearer w-token"}
    header = header_doc(time=time.time())
    assert requests.post(f"{service.url}/api/v1/analysis_header", json=header, headers=writer).status_code == 201
    png = _png()
    response = requests.post(f"{service.url}/api/v1/analysis/{header['uid']}/files", params={"name": "p.png"},
                             data=png, headers={**writer, "Content-Type": "image/png"}, timeout=30)
    assert response.status_code == 201, response.text
    file_uid = response.json()["uid"]
    page.goto(service.url + "/")
    page.wait_for_selector("#error:not([hidden])")
    assert "401 Unauthorized" in page.text_content("#error") and "enter a token" in page.text_content("#error")
    page.wait_for_selector("body[data-live=polling]")  # the stream was refused too
    page.fill("#token", "ui-token")
    page.click("#token-form button")
    _ready(page)
    assert page.is_hidden("#error")
    page.wait_for_selector("body[data-live=sse]", timeout=10_000)  # the event stream carries the token
    page.wait_for_selector("#running:text-is('running: 1')", timeout=5_000)
    assert requests.post(f"{service.url}/api/v1/analysis_tail", json=tail_doc(header["uid"]),
                         headers=writer).status_code == 201
    page.wait_for_selector("#running:text-is('running: 0')", timeout=5_000)

    page.click(f"a[href='#/analysis/{header['uid']}']")  # the thumbnail and the download carry the token
    _ready(page)
    page.wait_for_function("() => { const img = document.querySelector('#files img.thumb');"
                           " return img && img.complete && img.naturalWidth > 0; }", timeout=5_000)
    with page.expect_download() as download_info:
        page.click(f"#files tr[data-file='{file_uid}'] a.file-link")
    assert Path(download_info.value.path()).read_bytes() == png
    page.goto(service.url + "/#/analysis/no-such-uid")
    page.wait_for_selector("#error:not([hidden])")
    assert "404 NotFound" in page.text_content("#error")


@pytest.mark.timeout(300)
def test_screenshot_command(demo_service, tmp_path):
    """The documented screenshot helper produces both pictures."""
    shots = take(demo_service.url, tmp_path)
    assert [s.name for s in shots] == ["screenshot-list.png", "screenshot-analysis.png"]
    assert all(s.stat().st_size > 10_000 and s.read_bytes()[:4] == b"\x89PNG" for s in shots)


@pytest.mark.timeout(300)
def test_flags_notes_and_tags_are_shown_and_invalid_hidden_by_default(demo_service, page):
    """An analysis flagged invalid is hidden until 'show invalid', then marked; its page shows flag, notes, tags."""
    import requests

    client = AnalysisClient(demo_service.client_config)
    flagged = client.find_analysis_header(**{"provenance.analysis_name": "uvvis_absorbance"})[0].uid
    tagged = client.find_analysis_header(**{"provenance.analysis_name": "echem_stability"})[0].uid
    response = requests.patch(f"{demo_service.url}/api/v1/analysis_header/{flagged}", timeout=30,
                              json={"$set": {"invalid": True, "notes": "detector saturated", "tags": ["rerun"]}})
    assert response.status_code == 200, response.text
    response = requests.patch(f"{demo_service.url}/api/v1/analysis_header/{tagged}", timeout=30,
                              json={"$set": {"tags": ["reviewed"], "notes": "checked by hand"}})
    assert response.status_code == 200, response.text

    page.goto(demo_service.url + "/")
    _ready(page)
    assert page.text_content("#count") == "9 analyses"
    assert page.locator(f"#analyses tr[data-uid='{flagged}']").count() == 0
    row = page.locator(f"#analyses tr[data-uid='{tagged}']")
    assert row.locator("[data-tag=reviewed]").count() == 1 and row.locator("[data-flag=notes]").count() == 1
    assert row.locator("[data-flag=invalid]").count() == 0

    page.check("#filters input[name=show_invalid]")
    page.wait_for_selector("#count:has-text('10 analyses')")
    row = page.locator(f"#analyses tr[data-uid='{flagged}']")
    assert row.locator("[data-flag=invalid]").count() == 1 and row.locator("[data-tag=rerun]").count() == 1

    page.goto(f"{demo_service.url}/#/analysis/{flagged}")
    _ready(page)
    assert page.is_visible("#invalid-flag")
    assert "detector saturated" in page.text_content("#notes")
    assert page.locator("main h2 [data-tag=rerun]").count() == 1
    counts = page.locator(".stream h2 .muted").all_text_contents()
    assert "1 record" in counts and "1 records" not in counts  # the absorbance streams hold one spectrum


# ---- lineage, live updates, files, hostile content --------------------------------------------------


def _png(width: int = 4, height: int = 3) -> bytes:
    """A small valid PNG (solid blue), written by hand so the test needs no imaging library."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + b"\x20\x60\xd0" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _header(service, name: str = "step", inputs: tuple[str, ...] = (), uid: str | None = None, **extra) -> str:
    doc = header_doc(uid=uid or new_uid(), time=time.time(),
                     provenance={"analysis_name": name, "inputs": list(inputs)}, **extra)
    response = post(service, "analysis_header", doc)
    assert response.status_code == 201, response.text
    return doc["uid"]


def _attach(service, uid: str, name: str, body: bytes, content_type: str) -> str:
    response = requests.post(f"{service.url}/api/v1/analysis/{quote(uid, safe='')}/files", params={"name": name},
                             data=body, headers={"Content-Type": content_type}, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()["uid"]


def _open(page, service, uid: str | None = None) -> None:
    page.goto(service.url + "/" + (f"#/analysis/{quote(uid, safe='')}" if uid else ""))
    _ready(page)


@pytest.mark.timeout(120)
def test_lineage_section_shows_both_directions_of_a_chain_with_links(service, page):
    """a → b → c: c's ancestors are b (depth 1) and, under it, a (depth 2); b has a above and c below; the
    nodes link to their pages and show their status; the PROV export downloads."""
    a = _header(service, "acquire")
    assert post(service, "analysis_tail", tail_doc(a)).status_code == 201
    b = _header(service, "reduce", inputs=(a,))
    c = _header(service, "fit", inputs=(b,))

    _open(page, service, c)
    ancestors = page.locator("#lineage-ancestors")
    assert ancestors.locator(f"li[data-uid='{b}'][data-depth='1'] > a[href='#/analysis/{b}']").count() == 1
    nested = ancestors.locator(f"li[data-uid='{b}'] li[data-uid='{a}'][data-depth='2']")
    assert nested.count() == 1 and "acquire" in nested.text_content()
    assert nested.locator("[data-status]").first.text_content() == "success"
    assert ancestors.locator(f"li[data-uid='{b}'] > [data-status]").text_content() == "running"
    assert "no later analysis uses this one" in page.text_content("#lineage-descendants")

    page.click(f"#lineage-ancestors a[href='#/analysis/{b}']")
    page.wait_for_selector(f"#lineage-descendants li[data-uid='{c}'][data-depth='1']")
    _ready(page)
    assert page.locator(f"#lineage-ancestors li[data-uid='{a}'][data-depth='1']").count() == 1
    assert page.locator(f"#lineage-descendants a[href='#/analysis/{c}']").count() == 1

    _open(page, service, a)
    assert page.locator(f"#lineage-descendants li[data-uid='{b}'] li[data-uid='{c}'][data-depth='2']").count() == 1
    with page.expect_download() as download_info:
        page.click(".prov-link[data-format=json]")
    prov = json.loads(Path(download_info.value.path()).read_text())
    assert "activity" in prov and any(a in key for key in prov["activity"])

    b2 = _header(service, "reduce-again", inputs=(a,))
    d = _header(service, "compare", inputs=(b, b2))  # a diamond: a is reached through b and through b2
    _open(page, service, d)
    shared = page.locator(f"#lineage-ancestors li[data-uid='{a}']")
    assert shared.count() == 1 and "also input of 1 other" in shared.text_content()
    assert page.locator(f"#lineage-ancestors li[data-depth='1']").count() == 2


@pytest.mark.timeout(120)
def test_list_and_running_count_update_live_from_the_event_stream(service, page):
    """With the list open, a new analysis appears and the running count goes up, then down at its tail,
    without a reload and well before any polling would have noticed."""
    _open(page, service)
    page.wait_for_selector("body[data-live=sse]", timeout=10_000)
    page.wait_for_selector("#running:text-is('running: 0')", timeout=5_000)
    page.evaluate("window.__sameDocument = true")

    uid = _header(service, "arrives-live")
    page.wait_for_selector("#running:text-is('running: 1')", timeout=5_000)
    page.wait_for_selector(f"#analyses tr[data-uid='{uid}'] [data-status=running]", timeout=5_000)
    assert post(service, "analysis_tail", tail_doc(uid)).status_code == 201
    page.wait_for_selector("#running:text-is('running: 0')", timeout=5_000)
    page.wait_for_selector(f"#analyses tr[data-uid='{uid}'] [data-status=success]", timeout=5_000)
    assert page.evaluate("window.__sameDocument") is True  # never reloaded
    assert page.get_attribute("body", "data-live") == "sse"


@pytest.mark.timeout(120)
def test_analysis_page_updates_live_on_its_tail_and_revisions(service, page):
    """An open analysis page shows the tail when it arrives, and a new revision of its header."""
    uid = _header(service, "watched")
    _open(page, service, uid)
    page.wait_for_selector("body[data-live=sse]", timeout=10_000)
    assert "no tail yet" in page.text_content("main")
    response = requests.patch(f"{service.url}/api/v1/analysis_header/{uid}", timeout=30,
                              json={"$set": {"notes": "re-checked"}})
    assert response.status_code == 200, response.text
    page.wait_for_selector("#notes:has-text('re-checked')", timeout=5_000)
    assert post(service, "analysis_tail", tail_doc(uid, exit_status="fail")).status_code == 201
    page.wait_for_selector("main h2 [data-status=fail]", timeout=5_000)


@pytest.mark.timeout(120)
def test_without_the_event_stream_the_page_polls(service, page):
    """When the event stream cannot be had (here the browser's requests to it fail), the count and the list
    are polled instead."""
    page.add_init_script("window.analysisstorePollMs = 300")
    page.route("**/api/v1/events*", lambda route: route.abort())
    _open(page, service)
    page.wait_for_selector("body[data-live=polling]", timeout=10_000)
    uid = _header(service, "polled")
    page.wait_for_selector("#running:text-is('running: 1')", timeout=5_000)
    page.wait_for_selector(f"#analyses tr[data-uid='{uid}']", timeout=5_000)


@pytest.mark.timeout(120)
def test_files_are_listed_with_sizes_downloads_and_thumbnails(service, page):
    """A PNG and an SVG show as thumbnails (decoded pictures), a CSV does not; sizes are human-readable;
    the download link gives the bytes back."""
    uid = _header(service, "plots")
    png = _png()
    png_uid = _attach(service, uid, "spectrum.png", png, "image/png")
    svg_uid = _attach(service, uid, "scheme.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="20" '
                      b'height="10"><rect width="20" height="10" fill="red"/></svg>', "image/svg+xml")
    csv = b"x,y\n" + b"1,2\n" * 700
    csv_uid = _attach(service, uid, "table.csv", csv, "text/csv")

    _open(page, service, uid)
    assert page.get_attribute("#files h2 [data-count]", "data-count") == "3"
    row = page.locator(f"#files tr[data-file='{png_uid}']")
    assert row.locator("a.file-link").get_attribute("href") == f"/api/v1/files/{png_uid}"
    assert row.locator("a.file-link").text_content() == "spectrum.png"
    assert f"{len(png)} bytes" in row.text_content() and "image/png" in row.text_content()
    assert "2.7 KiB" in page.locator(f"#files tr[data-file='{csv_uid}']").text_content()
    for file_uid in (png_uid, svg_uid):
        page.wait_for_function("uid => { const img = document.querySelector(`#files tr[data-file='${uid}'] img.thumb`);"
                               " return img && img.complete && img.naturalWidth > 0; }", arg=file_uid, timeout=5_000)
    assert page.locator(f"#files tr[data-file='{csv_uid}'] img").count() == 0
    with page.expect_download() as download_info:
        page.click(f"#files tr[data-file='{csv_uid}'] a.file-link")
    assert Path(download_info.value.path()).read_bytes() == csv


HOSTILE = "\"'><img src=x onerror=\"window.__xss=1\"><script>window.__xss=2</script>&amp;"
HOSTILE_NAME = HOSTILE.replace("/", "")  # a uid (a path segment) and a file name cannot hold a slash


@pytest.mark.timeout(120)
def test_hostile_uids_names_and_notes_show_as_text(service, page):
    """Uids, analysis names, notes, file names and an SVG holding script are shown as text and run nothing,
    on the list, the analysis page, its lineage and its files."""
    uid = _header(service, HOSTILE_NAME, uid="u" + HOSTILE_NAME, notes=HOSTILE)
    child = _header(service, "child", inputs=(uid,))
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" onload="window.__xss=3"><script>window.__xss=4</script></svg>'
    _attach(service, uid, HOSTILE_NAME + ".svg", svg, "image/svg+xml")

    _open(page, service)
    row = page.locator(f"#analyses tr[data-uid='{uid.replace(chr(39), chr(92) + chr(39))}']")
    assert row.locator("a.analysis-link").text_content() == uid and HOSTILE_NAME in row.text_content()
    _open(page, service, uid)
    page.wait_for_function("() => [...document.querySelectorAll('#files img.thumb')].every(i => i.complete)")
    assert uid in page.text_content("main dl.kv") and page.text_content("#notes") == HOSTILE
    assert page.text_content("#files a.file-link") == HOSTILE_NAME + ".svg"
    assert page.locator("#files img.thumb").count() == 1  # shown through <img>: its script cannot run
    _open(page, service, child)
    assert page.text_content("#lineage-ancestors li[data-depth='1'] a") == uid
    page.click("#lineage-ancestors li[data-depth='1'] a")
    page.wait_for_selector("#files")
    _ready(page)
    assert page.evaluate("window.__xss") is None
    assert page.locator("main img[src=x], main script").count() == 0
