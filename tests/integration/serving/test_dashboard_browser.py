"""The dashboard page in a real headless Chromium (Debian's chromium + chromedriver via Selenium; no
browser is ever downloaded): enter a key once, check the charts are drawn from the API's numbers,
switch the range, reload (the key is remembered), see the SLO panel show the SLO monitor's status, and keep a
screenshot as a test artifact."""

import os
import random
import shutil
from datetime import datetime, timedelta, timezone

import pytest
from support.serving import insert_minutes, tenant_name
from support.wait import wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser():
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never fetch a browser or driver
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--window-size=1400,1900",
        "--disable-dev-shm-usage",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, read by _console_errors
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def site(api, writer, serving_cfg):
    t = tenant_name("browser")
    rnd = random.Random(3)
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    rows = []
    pages = ["/", "/pricing", "/docs", "/blog/launch", "/signup"]
    for m in range(0, 8 * 24 * 60, 4):
        minute = now - timedelta(minutes=m)
        daily = 1.0 + 0.8 * abs(((minute.hour + 6) % 24) - 12) / 12  # a day/night shape
        n = int(rnd.randint(2, 9) * daily)
        rows.append(
            (
                t,
                minute,
                rnd.choice(["US", "DE", "FR", "GB", "IN"]),
                rnd.choice(["desktop", "mobile", "tablet"]),
                rnd.choices(pages, weights=[8, 4, 3, 2, 1])[0],
                n,
                [f"v{rnd.randrange(3000)}" for _ in range(n)],
            )
        )
    insert_minutes(writer, serving_cfg.clickhouse.database, rows)
    # An SLO monitor's evaluation (it probes the API), picked up by the API's background refresh.
    from tidemark.slo.monitor import Monitor

    monitor = Monitor(serving_cfg, api.url + "/health")
    monitor.probe_once()
    monitor.write()
    wait_until(lambda: api.get("/slo").json()["slos"], 60, "the API to serve the SLO status", interval_s=0.5)
    # one stored anomaly (events, 5 hours ago): the events chart marks its hour, the users chart nothing
    import pandas as pd

    from tidemark.anomalies import store
    from tidemark.anomalies.scoring import OUTPUT

    hour = int(now.timestamp()) // 3600 * 3600 - 5 * 3600
    found = pd.DataFrame([(t, hour, "events", "all", "", "spike", 900.0, 300.0, 12.0, 4)], columns=OUTPUT)
    store.replace(writer, serving_cfg.clickhouse.database, "hour", hour, hour + 3600, [t], found, "browser")
    return t, api.key(t)


def _wait_ready(driver, loads_before: int):
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(
        lambda d: (
            d.execute_script(
                "return document.body.dataset.state === 'ready' && window.tidemark.loads > arguments[0]", loads_before
            )
            or d.execute_script("return document.body.dataset.state === 'error'")
        )
    )
    state = driver.execute_script("return document.body.dataset.state")
    assert state == "ready", driver.find_element("id", "error").text


def _console_errors(driver) -> list[str]:
    """The page's console errors since the last call (a failed request, such as a favicon's 404, included)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def _drawn(driver, name: str) -> dict:
    return driver.execute_script(
        """
        const c = window.tidemark.charts[arguments[0]];
        const ctx = c.canvas.getContext('2d');
        const px = ctx.getImageData(0, 0, c.canvas.width, c.canvas.height).data;
        let painted = 0;
        for (let i = 3; i < px.length; i += 4) if (px[i] > 0) painted++;
        return {labels: c.data.labels, current: c.data.datasets[0].data, previous: c.data.datasets[1].data,
                painted: painted};""",
        name,
    )


def _check_charts(driver, api, key, range_):
    for chart, metric in (("events", "events"), ("users", "users")):
        answer = api.get("/api/v1/timeseries", key, range=range_, metric=metric, compare="true").json()
        drawn = _drawn(driver, chart)
        assert drawn["current"] == [p["value"] for p in answer["points"]], f"{chart} chart vs API ({range_})"
        assert drawn["previous"] == [p["previous"] for p in answer["points"]]
        assert sum(drawn["current"]) > 0 and drawn["painted"] > 2000, f"{chart} chart is blank"
    return answer


def _check_slo_panel(driver, api):
    from selenium.webdriver.common.by import By

    slos = api.get("/slo").json()["slos"]
    rows = driver.find_elements(By.CSS_SELECTOR, "#slo-table tr[data-slo]")
    assert [r.get_attribute("data-slo") for r in rows] == [s["slo"] for s in slos]
    assert [r.find_elements(By.TAG_NAME, "td")[0].text for r in rows] == [s["title"] for s in slos]
    burning = [s["title"] for s in slos if s["burning"]]
    alert = driver.find_element(By.ID, "slo-alert")
    assert alert.is_displayed() == bool(burning)
    assert all(title in alert.text for title in burning)

    def status(s: dict) -> str:
        if s["burning"]:
            return "BURNING"
        if not s["measured"]:
            return "no data"
        return "missed" if s["budget_left"] < 0 else "ok"

    assert [r.find_elements(By.TAG_NAME, "td")[4].text for r in rows] == [status(s) for s in slos]


def test_dashboard_in_headless_chromium(api, site, browser, serving_cfg):
    from selenium.webdriver.common.by import By

    tenant, key = site
    # The page's icon, and the one browsers ask for by default (headless Chromium may not): a 404
    # would be an error in every visitor's console.
    for icon in ("/static/favicon.svg", "/favicon.ico"):
        got = api.get(icon)
        assert got.status_code == 200 and got.headers["content-type"].startswith("image/svg+xml"), icon
    browser.get(api.url + "/")
    form = browser.find_element(By.ID, "key-form")
    assert form.is_displayed(), "a first visit asks for the key"
    browser.find_element(By.ID, "key-input").send_keys(key)
    browser.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()
    _wait_ready(browser, 0)
    assert browser.find_element(By.ID, "tenant").text == tenant
    answer = _check_charts(browser, api, key, "24h")
    assert answer["bucket"] == "hour" and len(answer["points"]) == 24
    marks = browser.execute_script(
        "return ['events', 'users'].map((n) => window.tidemark.charts[n].data.datasets[2].data);"
    )
    (anomaly,) = api.get("/api/v1/anomalies", key, range="24h").json()["anomalies"]
    events = api.get("/api/v1/timeseries", key, range="24h", metric="events").json()["points"]
    marked = [i for i, v in enumerate(marks[0]) if v is not None]
    assert [events[i]["t"] for i in marked] == [anomaly["t"]], "the events chart marks the anomaly's hour"
    assert all(v is None for v in marks[1]), "no users anomaly, no users marker"
    totals = api.get("/api/v1/totals", key, range="24h", compare="true").json()
    assert browser.find_element(By.ID, "total-events").text == f"{totals['events']:,}"
    assert browser.find_element(By.ID, "total-users").text == f"{totals['users']:,}"
    pages = api.get("/api/v1/top", key, range="24h", dimension="page", limit=10).json()["rows"]
    shown = [
        row.find_elements(By.TAG_NAME, "td")[0].text
        for row in browser.find_elements(By.CSS_SELECTOR, "#top-page tr")[1:]
    ]
    assert shown == [r["value"] for r in pages]
    realtime = api.get("/api/v1/realtime", key).json()
    assert browser.find_element(By.ID, "realtime").text.replace(",", "").isdigit()
    assert abs(int(browser.find_element(By.ID, "realtime").text.replace(",", "")) - realtime["visitors"]) <= 20
    assert "newest minute" in browser.find_element(By.ID, "freshness").text
    _check_slo_panel(browser, api)
    assert _console_errors(browser) == []

    loads = browser.execute_script("return window.tidemark.loads")
    browser.find_element(By.CSS_SELECTOR, "#ranges button[data-range='7d']").click()
    _wait_ready(browser, loads)
    answer = _check_charts(browser, api, key, "7d")
    assert answer["bucket"] == "hour" and len(answer["points"]) == 168
    assert "per hour" in browser.find_element(By.ID, "events-title").text.lower()

    browser.refresh()  # the key (and the range) are remembered by the browser
    _wait_ready(browser, 0)
    assert not browser.find_element(By.ID, "key-form").is_displayed()
    assert browser.find_element(By.ID, "tenant").text == tenant
    _check_charts(browser, api, key, "7d")
    assert _console_errors(browser) == []

    artifacts = serving_cfg.home / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "dashboard-7d.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 20_000
    print(f"screenshot: {shot}")
