"""The console in a real headless Chromium (Debian's ``chromium``, driven by Playwright)
against a real ``kbaudit serve``: what an auditor does, start to end. Screenshots of every
page go to ``test-output/console/`` (or ``$KBAUDIT_TEST_OUTPUT/console/``)."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx2
import pytest
from playwright.sync_api import Page, Route, expect, sync_playwright

from tests.acceptance.conftest import Cli, Serve

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("KBAUDIT_TEST_OUTPUT", ROOT / "test-output")) / "console"
RECORDS = "/v1/knowledge-base/audit/retrievals"
POLICY = "/v1/knowledge-base/retention-policy"


@pytest.fixture
def running(cli: Cli, serve: Callable[..., Serve]) -> tuple[str, str]:
    key = cli.run("demo", "--records", "400").stdout.splitlines()[-1]
    return serve().url, key


class Browser:
    """One page of a fresh browser profile; every request it makes is noted, and any that
    would leave 127.0.0.1 is stopped."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.requested: list[str] = []
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(str(error)))
        page.context.route("**/*", self._route)

    def _route(self, route: Route) -> None:
        self.requested.append(route.request.url)
        if urlsplit(route.request.url).hostname != "127.0.0.1":
            route.abort()
        else:
            route.continue_()

    def _console(self, message: object) -> None:
        # A script the Content-Security-Policy blocked shows up as a console error.
        if getattr(message, "type", "") == "error":
            self.problems.append(str(getattr(message, "text", message)))

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=SHOTS / f"{name}.png", full_page=True)


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (./dev.sh test does)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = chromium.new_context(
            accept_downloads=True, viewport={"width": 1280, "height": 900}
        )
        try:
            yield Browser(context.new_page())
        finally:
            context.close()
            chromium.close()


def test_an_auditor_works_through_the_console(
    running: tuple[str, str], browser: Browser, tmp_path: Path
) -> None:
    url, key = running
    page = browser.page

    page.goto(f"{url}/console")
    expect(page).to_have_url(f"{url}/console/sign-in")
    browser.shot("sign-in")
    page.get_by_label("API key").fill(key)
    page.get_by_label("API key").press("Enter")  # the keyboard is enough
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator("#chart canvas").first).to_be_visible()  # console.js ran under the CSP
    page.get_by_label("Window", exact=True).select_option("30d")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_text(re.compile(r"^[1-9]\d* retrievals from"))).to_be_visible()
    browser.shot("overview")

    filter_records(page, url, key, browser)
    page.locator("#records tbody a").first.click()
    expect(page.get_by_text(re.compile(r"In log at index \d+"))).to_be_visible()
    browser.shot("record")

    request_and_download_export(page, tmp_path)
    browser.shot("export")

    page.get_by_role("link", name="Retention").click()
    page.get_by_label("Retention days").fill("400")
    page.get_by_label("Legal hold").check()
    page.get_by_role("button", name="Save policy").click()
    expect(page.get_by_role("heading", name="Turn the legal hold on?")).to_be_visible()
    browser.shot("retention-confirm")
    page.get_by_label("Reason").fill("Litigation 2026-114")
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_text("Litigation 2026-114")).to_be_visible()
    browser.shot("retention")
    policy = httpx2.get(f"{url}{POLICY}", headers={"x-api-key": key}).json()
    assert (policy["retention_days"], policy["legal_hold_enabled"]) == (400, True)

    page.get_by_role("link", name="Access log").click()
    expect(page.get_by_role("cell", name="retention_policy_changed")).to_be_visible()
    browser.shot("access-log")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    page.goto(f"{url}/console/records")
    expect(page).to_have_url(f"{url}/console/sign-in")

    assert browser.problems == []
    assert browser.requested
    assert {urlsplit(address).hostname for address in browser.requested} == {"127.0.0.1"}


def filter_records(page: Page, url: str, key: str, browser: Browser) -> None:
    """Filter by status, and compare every row, through "Load more", with the API's pages."""
    page.get_by_role("link", name="Records").click()
    page.get_by_label("Start").fill("2020-01-01T00:00:00Z")
    page.get_by_role("checkbox", name="hit").check()
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"statuses=hit"))
    params = dict(parse_qsl(urlsplit(page.url).query))
    expected = api_refs(url, key, params)
    assert len(expected) > 50
    rows = page.locator("#records tbody a[href^='/console/records/']")
    expect(rows).to_have_count(50)
    browser.shot("records")
    while (shown := rows.count()) < len(expected):
        page.get_by_role("link", name="Load more").click()
        expect(rows).not_to_have_count(shown)
    expect(page.get_by_role("link", name="Load more")).to_have_count(0)
    assert rows.all_inner_texts() == expected


def api_refs(url: str, key: str, params: dict[str, str]) -> list[str]:
    refs: list[str] = []
    cursor = None
    while True:
        page = httpx2.get(
            f"{url}{RECORDS}",
            params={**params, "limit": 200, **({"cursor": cursor} if cursor else {})},
            headers={"x-api-key": key},
        ).json()
        refs += [item["ref"] for item in page["items"]]
        if not page["has_more"]:
            return refs
        cursor = page["next_cursor"]


def request_and_download_export(page: Page, tmp_path: Path) -> None:
    page.get_by_role("link", name="Exports").click()  # the form starts at the last 7 days
    page.get_by_label("Format").select_option("ndjson")
    page.get_by_role("button", name="Request export").click()
    expect(page.get_by_role("heading", name=re.compile("^Export "))).to_be_visible()
    expect(page.get_by_text("succeeded")).to_be_visible(timeout=60_000)  # htmx polls
    expect(page.get_by_text("Manifest signature verified")).to_be_visible()
    links = page.locator("a[download]")
    names = links.all_inner_texts()
    assert "manifest.json" in names
    assert any(name.endswith(".ndjson.zst") or name.endswith(".ndjson") for name in names)
    for index, name in enumerate(names):
        with page.expect_download() as arrival:
            links.nth(index).click()
        saved = tmp_path / name
        arrival.value.save_as(saved)
        listed = links.nth(index).locator("xpath=ancestor::tr").locator("code.hash").inner_text()
        assert hashlib.sha256(saved.read_bytes()).hexdigest() == listed, name
    page.get_by_role("link", name="Exports").click()
    expect(page.get_by_text("signed, verified")).to_be_visible()
    assert page.locator("#export-rows a[download]").all_inner_texts() == names


@pytest.mark.parametrize(("page", "rendered"), [("/docs", ".opblock"), ("/redoc", "h2")])
def test_the_api_docs_render_under_their_content_security_policy(
    running: tuple[str, str], browser: Browser, page: str, rendered: str
) -> None:
    url, _ = running
    response = browser.page.goto(url + page)
    assert response is not None
    assert "script-src 'self'" in response.headers["content-security-policy"]
    expect(browser.page.locator(rendered).first).to_be_visible(timeout=15_000)
    assert browser.problems == []
    assert all(urlsplit(seen).hostname == "127.0.0.1" for seen in browser.requested)
