"""The HTML report in a real browser: headless Chromium opens it from file:// and must
render every chart with the expected number of points, log no console error and make no
network request. A full-page screenshot is saved to out/report-screenshot.png.

Chromium and its driver are Debian packages (chromium, chromium-driver); the session
fixture installs them with apt-get when /usr/bin/chromium is missing and skips only if
that is impossible (no apt-get, no root, no network).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from reports.build import build_report

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "out"
SCREENSHOT = OUT / "report-screenshot.png"
CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-dev-shm-usage", "--window-size=1300,1000"]

pytestmark = pytest.mark.browser


def _install_chromium() -> str | None:
    """apt-get install chromium chromium-driver; returns why it failed, or None."""
    if shutil.which("apt-get") is None:
        return "apt-get is not available on this system"
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            return "not root and no sudo to run apt-get"
        prefix = ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium",
                                        "chromium-driver"]):
        try:
            p = subprocess.run(prefix + cmd, env=env, capture_output=True, text=True, timeout=1200)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"{' '.join(cmd)} failed: {e}"
        if p.returncode != 0:
            tail = " ".join((p.stderr or p.stdout).strip().splitlines()[-2:])
            return f"{' '.join(cmd)} exited {p.returncode}: {tail}"
    return None


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not (CHROMIUM.exists() and DRIVER.exists()):
        why = _install_chromium()
        if why or not (CHROMIUM.exists() and DRIVER.exists()):
            pytest.skip(f"headless Chromium cannot be installed: {why or 'packages installed no /usr/bin/chromium'}")
    return CHROMIUM


@pytest.fixture(scope="session")
def report(tmp_path_factory) -> tuple[Path, dict]:
    spec = importlib.util.spec_from_file_location("make_sample_store", ROOT / "scripts" / "make_sample_store.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sample = mod.make_sample_store(tmp_path_factory.mktemp("store") / "results.sqlite", n_items=40)
    OUT.mkdir(exist_ok=True)
    return build_report(sample["path"], OUT / "report-browser-test.html"), sample


@pytest.fixture()
def driver(chromium, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium missing: pip install -e '.[dev]'")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(chromium)
    for f in FLAGS + [f"--user-data-dir={tmp_path / 'profile'}"]:
        opts.add_argument(f)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    d = webdriver.Chrome(service=Service(str(DRIVER)), options=opts)
    d.set_page_load_timeout(120)
    try:
        yield d
    finally:
        d.quit()


def _requests(perf_log: list[dict]) -> list[tuple[str, str]]:
    """(url, url of the document that asked for it) of every request and web socket."""
    out = []
    for entry in perf_log:
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            out.append((msg["params"]["request"]["url"], msg["params"].get("documentURL", "")))
        elif msg["method"] == "Network.webSocketCreated":
            out.append((msg["params"]["url"], ""))
    return out


def _foreign(requests: list[tuple[str, str]], page: str) -> list[str]:
    """Requests the report caused beyond loading itself, and any request off this machine.

    Chromium's own start page (chrome:// resources of the new-tab page) is not the
    report's doing; anything the report's document asks for is, except data: URLs, and
    any http(s)/ws(s)/ftp request at all counts.
    """
    remote = ("http:", "https:", "ws:", "wss:", "ftp:")
    return [u for u, doc in requests
            if u.lower().startswith(remote) or (doc == page and u != page and not u.startswith("data:"))]


@pytest.mark.timeout(1800)
def test_report_renders_offline_without_errors(driver, report):
    from selenium.webdriver.support.ui import WebDriverWait

    path, sample = report
    url = path.resolve().as_uri()
    driver.get_log("performance")            # drop what Chromium's start page logged
    driver.get(url)
    WebDriverWait(driver, 90).until(
        lambda d: d.execute_script("return document.body && document.body.getAttribute('data-charts-rendered')"))

    charts = driver.execute_script("""
        return Array.from(document.querySelectorAll('div.chart')).map(function (el) {
          return {id: el.id, expected: parseInt(el.dataset.expectedPoints, 10),
                  svg: el.querySelectorAll('svg.main-svg').length,
                  points: el.querySelectorAll('.scatterlayer path.point').length,
                  title: (el.querySelector('.gtitle') || {}).textContent || ''};
        });""")
    assert len(charts) >= 6, charts
    for c in charts:
        assert c["svg"] > 0, f"{c['id']} drew no SVG"
        assert c["points"] == c["expected"], f"{c['id']} ({c['title']}): {c['points']} points, expected {c['expected']}"
    # independent of the page: the ARC frontier shows one point per variant of both families
    arc = next(c for c in charts if c["title"].startswith("arc_easy · ll: size vs accuracy"))
    assert arc["points"] == len(sample["variants"]) == 9
    assert driver.execute_script("return document.body.getAttribute('data-charts-rendered')") == str(len(charts))
    assert "dequantized from the Q4_1 GGUF" in driver.find_element("id", "notes").text

    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, f"console errors: {errors}"
    requests = _requests(driver.get_log("performance"))
    assert (url, url) in requests, "the report's own load is not in the log: the network check would be vacuous"
    foreign = _foreign(requests, url)
    assert not foreign, f"the report made network requests: {foreign}"
    assert driver.execute_script(
        "return performance.getEntriesByType('resource').filter(function (e) {"
        " return !e.name.startsWith('data:'); }).length") == 0

    width, height = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": min(height, 16000), "scale": 1}})
    SCREENSHOT.write_bytes(base64.b64decode(shot["data"]))
    assert SCREENSHOT.stat().st_size > 50_000
    print(f"\nscreenshot: {SCREENSHOT}\nreport: {path}")


def test_the_checks_would_catch_a_request_and_a_console_error(driver, tmp_path):
    """The offline and console checks are not vacuous: a page that fetches an image from
    the network and logs an error must trip both."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
                    '<img src="http://127.0.0.1:9/pixel.png"><script>console.error("boom")</script></body></html>')
    url = page.as_uri()
    driver.get_log("performance")
    driver.get(url)
    assert "http://127.0.0.1:9/pixel.png" in _foreign(_requests(driver.get_log("performance")), url)
    assert any("boom" in e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE")
