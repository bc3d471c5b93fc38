"""The browser view end to end, in headless Chromium, against the real service with demo data."""
from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest

from analysisstore.client import AnalysisClient
from analysisstore.drivers.demo import run_demo

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

    service = start_service(require_auth=True, tokens=(TokenEntry("ui", digest("ui-token"), frozenset({"read"})),))
    page.goto(service.url + "/")
    page.wait_for_selector("#error:not([hidden])")
    assert "401 Unauthorized" in page.text_content("#error") and "enter a token" in page.text_content("#error")
    page.fill("#token", "ui-token")
    page.click("#token-form button")
    _ready(page)
    assert page.is_hidden("#error")
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
