"""Screenshots of the browser view, for the README.

    python docs/make_screenshots.py                       # demo data on a throw-away embedded service
    python docs/make_screenshots.py --url http://127.0.0.1:8999 --token …   # an existing service

Needs Chromium (Debian: ``apt-get install chromium``) and the Python
``playwright`` package (in the ``test`` extra); it launches the system
Chromium, nothing is downloaded.
"""
from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def take(url: str, out: Path, token: str | None = None) -> list[Path]:
    """Open the list and one analysis page; save both as PNG."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    shots = [out / "screenshot-list.png", out / "screenshot-analysis.png"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)  # fresh profile each time
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url + "/")
        if token:
            page.fill("#token", token)
            page.click("#token-form button")
        page.wait_for_selector("main[data-ready=true] #analyses tbody tr")
        page.screenshot(path=str(shots[0]), full_page=True)
        page.click("#analyses tbody tr:has-text('uvvis_absorbance') a.analysis-link")
        page.wait_for_selector("main[data-ready=true] svg.plot polyline", state="attached")
        page.screenshot(path=str(shots[1]), full_page=True)
        browser.close()
    return shots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an existing service (default: start one with demo data)")
    parser.add_argument("--token")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    if not chromium_path():
        raise SystemExit("no Chromium found: apt-get install chromium")
    if args.url:
        shots = take(args.url, args.out, args.token)
    else:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        with tempfile.TemporaryDirectory() as data:
            service = subprocess.Popen([sys.executable, "-m", "analysisstore.cli", "serve", "--port", str(port),
                                        "--data-dir", data, "--log-level", "warning"])
            try:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if requests.get(url + "/readyz", timeout=1).status_code == 200:
                            break
                    except requests.ConnectionError:
                        if time.monotonic() > deadline:
                            raise SystemExit("the service did not start") from None
                        time.sleep(0.1)
                subprocess.run([sys.executable, "-m", "analysisstore.cli", "demo", "--url", url], check=True,
                               stdout=subprocess.DEVNULL)
                shots = take(url, args.out)
            finally:
                service.terminate()
                service.wait(60)
    for shot in shots:
        print(shot)


if __name__ == "__main__":
    main()
