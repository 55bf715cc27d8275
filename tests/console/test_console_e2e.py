"""The console end to end: Debian's chromium, headless, driven by Playwright, against a real promptd whose data
comes from real requests through both faces. Every page is opened, the playground streams through both faces,
and each test saves screenshots under the run's artifacts ($PROMPTD_TEST_ARTIFACTS, else test-artifacts/)."""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, FilePayload, Page, expect, sync_playwright

from tests.console.helpers import ALICE, CATALOG, Traffic, admin_key, make_traffic
from tests.faces.dify.test_documents import Remote
from tests.serving import RunningServer, serve_app, serve_in_thread

CHROMIUM = os.environ.get("PROMPTD_TEST_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(os.environ.get("PROMPTD_TEST_ARTIFACTS") or Path(__file__).parents[2] / "test-artifacts") / "console"

#: The console's catalog and a completion project whose form has a field of each kind the playground turns into
#: something other than text: numbers, a checkbox, a file and file-lists (documents, whose text the fake model
#: echoes after the prompt; uploaded, or one on the web), and a text input with a `max_length`.
SITE_CATALOG: dict[str, Any] = copy.deepcopy(CATALOG)
SITE_CATALOG["projects"]["orders"] = {
    "mode": "completion",
    "name": "Orders",
    "models": ["echo"],
    "prompt": "Pack {{boxes}} boxes for floor {{floor}}, gift wrap {{gift}}, note {{note}}.",
    "inputs": [
        {"type": "number", "variable": "boxes", "label": "Boxes", "required": True},
        {"type": "number", "variable": "floor", "label": "Floor", "default": 1},
        {"type": "checkbox", "variable": "gift", "label": "Gift wrap"},
        {"type": "text-input", "variable": "note", "label": "Note", "max_length": 8},
        {
            "type": "file",
            "variable": "order",
            "label": "Order form",
            "required": True,
            "allowed_file_types": ["document"],
            "allowed_file_upload_methods": ["local_file"],
        },
        {
            "type": "file-list",
            "variable": "extras",
            "label": "Extras",
            "max_length": 2,
            "allowed_file_types": ["custom"],
            "allowed_file_extensions": [".txt"],
            "allowed_file_upload_methods": ["local_file"],
        },
        {
            "type": "file-list",
            "variable": "links",
            "label": "Links",
            "allowed_file_types": ["document"],
            "allowed_file_upload_methods": ["remote_url"],
        },
    ],
}
#: documents may be 10 kB at most on this site, so that a test can see an upload refused
DOCUMENT_LIMIT_MB = 0.01


def payload(name: str, mime: str, data: bytes) -> FilePayload:
    """A file as the browser's file picker gives it to the page."""
    return {"name": name, "mimeType": mime, "buffer": data}


@dataclass
class Site:
    server: RunningServer
    key: str
    traffic: Traffic


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    data = tmp_path_factory.mktemp("console-e2e") / "data"
    # 127.0.0.2 stands for the internet (the SSRF guard refuses loopback otherwise), as in serve_with_files
    limits = {"document": DOCUMENT_LIMIT_MB}
    with serve_app(SITE_CATALOG, data, upload_limits_mb=limits, fetch_allow_networks=("127.0.0.2/32",)) as server:
        yield Site(server, admin_key(server), make_traffic(server))


@pytest.fixture(scope="module")
def browser(site: Site) -> Iterator[Browser]:
    """One browser for the module. It needs `site` first: sync Playwright keeps an event loop running in this
    thread, after which the test harness can no longer call asyncio.run (as serve_app does)."""
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: ./scripts/install --dev installs Debian's chromium"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Browser, site: Site) -> Iterator[Page]:
    """A fresh tab (own storage), failing the test on any uncaught script error or anything the page's
    Content-Security-Policy blocked."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    p.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
    p.set_default_timeout(20_000)
    try:
        yield p
        assert errors == []
    finally:
        context.close()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def login(page: Page, site: Site, hash_: str = "") -> None:
    page.goto(f"{site.server.url}/console/{hash_}")
    page.get_by_label("Admin key").fill(site.key)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("nav")).to_be_visible()


def test_login_refuses_a_wrong_key_then_shows_the_overview(page: Page, site: Site) -> None:
    page.goto(f"{site.server.url}/console")  # the bare path redirects to /console/
    page.get_by_label("Admin key").fill(site.server.key)  # an app key is not an admin key
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("This is not a valid admin key.")
    shot(page, "00-login-refused")
    login(page, site)
    overview = page.get_by_test_id("page-overview")
    expect(overview.get_by_test_id("total-requests")).to_contain_text(str(site.traffic.total))
    expect(overview.get_by_test_id("total-errors")).to_contain_text(str(site.traffic.error_count))
    for chart in ("chart-requests", "chart-latency", "chart-tokens", "chart-cost"):
        canvas = overview.get_by_test_id(chart).locator("canvas")
        expect(canvas).to_be_visible()
        box = canvas.bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 100
    rows = overview.get_by_test_id("breakdown").locator("tbody tr")
    expect(rows).to_have_count(4)  # demo/echo, demo/alt, demo/broken, support/alt
    shot(page, "01-overview-day")
    overview.locator("button[data-range=hour]").click()
    expect(page).to_have_url(re.compile(r"range=hour"))
    page.get_by_test_id("page-overview").get_by_label("project").select_option("support")
    expect(page.get_by_test_id("page-overview").get_by_test_id("total-requests")).to_contain_text(
        str(site.traffic.session_turns)
    )
    shot(page, "02-overview-hour-support")


def test_logs_search_filters_and_show_one_request_in_full(page: Page, site: Site) -> None:
    login(page, site, "#/logs")
    logs = page.get_by_test_id("page-logs")
    expect(logs.get_by_test_id("log-row")).to_have_count(site.traffic.total)
    shot(page, "03-logs")
    logs.get_by_label("status").select_option("error")
    logs.get_by_role("button", name="Search").click()
    expect(page.get_by_test_id("page-logs").get_by_test_id("log-row")).to_have_count(1)
    page.goto(f"{site.server.url}/console/#/logs?label=env:prod&tag=vip")
    expect(page.get_by_test_id("page-logs").get_by_test_id("log-row")).to_have_count(site.traffic.session_turns)
    logs = page.get_by_test_id("page-logs")
    logs.get_by_label("text").fill("capital of France")
    logs.get_by_role("button", name="Search").click()
    logs = page.get_by_test_id("page-logs")
    expect(logs.get_by_test_id("log-row")).to_have_count(0)  # the label and tag filters stay: no such chat turn
    page.goto(f"{site.server.url}/console/#/logs?q=capital%20of%20France")
    logs = page.get_by_test_id("page-logs")
    expect(logs.get_by_test_id("log-row")).to_have_count(1)
    logs.get_by_test_id("log-link").click()
    detail = page.get_by_test_id("page-logs")
    expect(detail.get_by_test_id("message-answer")).to_have_text("Echo: Answer briefly: What is the capital of France?")
    expect(detail.get_by_test_id("message-inputs")).to_contain_text('"query": "What is the capital of France?"')
    expect(detail.get_by_test_id("message-prompt")).to_contain_text("Answer briefly: What is the capital of France?")
    expect(detail.get_by_test_id("message-attempts").locator("tbody tr")).to_have_count(1)
    expect(detail.get_by_test_id("message-attempts")).to_contain_text("echo")
    expect(detail.get_by_test_id("message-feedback")).to_contain_text("like: spot on")
    expect(detail.get_by_test_id("request-id")).to_have_text("console-req-0")  # the client's X-Request-Id
    shot(page, "04-log-detail")
    page.goto(f"{site.server.url}/console/#/logs")
    logs = page.get_by_test_id("page-logs")
    logs.get_by_label("request id").fill("console-req-1")
    logs.get_by_role("button", name="Search").click()
    logs = page.get_by_test_id("page-logs")
    expect(logs.get_by_test_id("log-row")).to_have_count(1)
    expect(logs.get_by_test_id("log-row")).to_contain_text("Name a prime number")


def test_session_shows_its_turns_in_order(page: Page, site: Site) -> None:
    login(page, site, "#/sessions?project=support")
    sessions = page.get_by_test_id("page-sessions")
    expect(sessions.get_by_test_id("session-link")).to_have_count(1)
    shot(page, "05-sessions")
    sessions.get_by_test_id("session-link").click()
    turns = page.get_by_test_id("page-sessions").get_by_test_id("session-turn")
    expect(turns).to_have_count(3)
    for i, text in enumerate(["Hi, I need help", "My order is late", "Thanks!"]):
        expect(turns.nth(i)).to_contain_text(text)
    shot(page, "06-session")


def test_campaign_compares_the_models_with_a_chart(page: Page, site: Site) -> None:
    login(page, site, "#/campaigns")
    campaigns = page.get_by_test_id("page-campaigns")
    expect(campaigns.get_by_test_id("verdict")).to_contain_text("Significant")
    expect(campaigns.get_by_test_id("campaign-models").locator("tbody tr")).to_have_count(2)
    shot(page, "07-campaigns")
    campaigns.get_by_test_id("campaign-link").click()
    one = page.get_by_test_id("page-campaigns")
    expect(one.get_by_test_id("verdict")).to_contain_text("alt leads on stars")
    expect(one.get_by_test_id("chart-campaign").locator("canvas")).to_be_visible()
    shot(page, "08-campaign")


def test_project_catalog_keys_and_playground(page: Page, site: Site) -> None:
    login(page, site, "#/projects")
    expect(page.get_by_test_id("project-link")).to_have_count(3)
    page.get_by_test_id("project-link").first.click()
    project = page.get_by_test_id("page-projects")
    expect(project.get_by_test_id("catalog-prompt")).to_contain_text("Answer briefly: {{query}}")
    expect(project.get_by_test_id("catalog-models").locator("tbody tr")).to_have_count(3)
    # a key: created, shown once, usable on a face, then revoked from the table
    project.get_by_label("key name").fill("e2e service")
    project.get_by_role("button", name="Create key").click()
    key = page.get_by_test_id("new-key-value").inner_text()
    assert key.startswith("app-")
    body = {"inputs": {"query": "hi"}, "user": "e2e", "response_mode": "blocking"}
    s = site.server
    assert httpx.post(f"{s.v1}/completion-messages", json=body, headers=s.headers(key)).status_code == 200
    shot(page, "09-project-new-key")
    row = page.get_by_test_id("key-table").locator("tr", has_text="e2e service")
    page.once("dialog", lambda d: d.accept())
    row.get_by_test_id("revoke").click()
    expect(page.get_by_test_id("key-table").locator("tr", has_text="e2e service")).to_contain_text("revoked")
    expect(page.get_by_test_id("new-key")).to_have_count(0)  # never shown again
    assert httpx.post(f"{s.v1}/completion-messages", json=body, headers=s.headers(key)).status_code == 401
    # the playground, through the Dify face, then the chat face
    play = page.get_by_test_id("playground")
    play.get_by_label("Query").fill("What is 2 + 2?")
    play.get_by_role("button", name="Send").click()
    expect(page.get_by_test_id("playground-answer")).to_have_text("Echo: Answer briefly: What is 2 + 2?")
    expect(page.get_by_test_id("playground-status")).to_contain_text("Done")
    shot(page, "10-playground-dify")
    play.get_by_label("face").select_option("chat")
    play.get_by_label("model").select_option("alt")
    play.get_by_label("message").fill("Hello from the console")
    play.get_by_role("button", name="Send").click()
    expect(page.get_by_test_id("playground-answer")).to_have_text("Echo: Hello from the console")
    shot(page, "11-playground-chat")
    page.get_by_test_id("playground-log-link").click()
    detail = page.get_by_test_id("page-logs")
    expect(detail.get_by_test_id("message-answer")).to_have_text("Echo: Hello from the console")
    expect(detail.get_by_test_id("message-facts")).to_contain_text("chat")
    shot(page, "12-playground-request-in-logs")


def test_rejected_requests_show_in_the_overview_and_on_the_project(page: Page, site: Site) -> None:
    """Requests refused before any model call leave no record: the overview and the project page count them.
    (Only this test sends refused requests to `support`, so its counts are exact.)"""
    s = site.server
    limited = httpx.post(
        f"{s.url}/admin/v1/keys", json={"project": "support", "name": "tight", "rpm": 1}, headers=s.headers(site.key)
    ).json()
    body = {"model": "support", "messages": [{"role": "user", "content": "hi"}], "system_prompt_args": {"name": "X"}}
    codes = [
        httpx.post(f"{s.url}/api/v1/chat/completions", json=body, headers=s.headers(limited["key"])).status_code
        for _ in range(4)
    ]
    assert codes == [200, 429, 429, 429]
    bad = {"model": "support/nope", "messages": [{"role": "user", "content": "hi"}]}
    assert (
        httpx.post(f"{s.url}/api/v1/chat/completions", json=bad, headers=s.headers(limited["key"])).status_code == 404
    )
    login(page, site, "#/overview?project=support")
    overview = page.get_by_test_id("page-overview")
    expect(overview.get_by_test_id("total-rejected")).to_contain_text("4")
    table = overview.get_by_test_id("rejections")
    expect(table.locator("tbody tr")).to_have_count(2)
    expect(table.locator("tr", has_text="rate_limit_exceeded")).to_contain_text("3")
    expect(table.locator("tr", has_text="not_found")).to_contain_text("404")
    shot(page, "13-overview-rejected")
    page.goto(f"{s.url}/console/#/projects/support")
    project = page.get_by_test_id("page-projects")
    rows = project.get_by_test_id("project-rejections").locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="rate_limit_exceeded")).to_contain_text(limited["prefix"] + "… tight")
    shot(page, "14-project-rejected")


def test_keys_show_spend_and_budget_left_and_end_users_their_spend(page: Page, site: Site) -> None:
    s = site.server
    made = httpx.post(
        f"{s.url}/admin/v1/keys",
        json={"project": "support", "name": "budgeted", "cost_per_day": "1", "cost_per_month": "20"},
        headers=s.headers(site.key),
    ).json()
    body = {
        "model": "support",
        "messages": [{"role": "user", "content": "how much?"}],
        "system_prompt_args": {"name": "Y"},
    }
    r = httpx.post(f"{s.url}/api/v1/chat/completions", json=body, headers=s.headers(made["key"]))
    assert r.status_code == 200, r.text
    keys = httpx.get(f"{s.url}/admin/v1/keys", params={"project": "support"}, headers=s.headers(site.key)).json()
    mine = next(k for k in keys["data"] if k["id"] == made["id"])
    spent = mine["spend"]["day"]["cost"]["USD"]
    assert float(spent) > 0
    login(page, site, "#/projects/support")
    row = page.get_by_test_id("key-table").locator("tr", has_text="budgeted")
    expect(row.get_by_test_id("key-spend-day")).to_have_text(f"{spent} USD")
    left = mine["budget"]["cost_per_day"]["remaining"]
    expect(row.get_by_test_id("key-budget")).to_contain_text(f"today: {left} of 1 left")
    expect(row.get_by_test_id("key-budget")).to_contain_text("this month: ")
    users = page.get_by_test_id("user-spend")
    expect(users.locator("tr", has_text=ALICE)).to_contain_text(str(site.traffic.session_turns))
    shot(page, "15-keys-spend-budget-users")


def test_chat_playground_takes_system_prompt_args_parameters_and_several_turns(page: Page, site: Site) -> None:
    login(page, site, "#/projects/support")
    play = page.get_by_test_id("playground")
    play.get_by_label("system_prompt_args").fill('{"name": "Zoe"}')
    play.get_by_label("message").fill("first question")
    play.get_by_role("button", name="Send").click()
    expect(page.get_by_test_id("playground-answer")).to_have_text("Echo: first question")
    expect(page.get_by_test_id("playground-status")).to_contain_text("1 turn in this conversation")
    play.get_by_label("max_tokens").fill("3")
    play.get_by_label("temperature").fill("0.2")
    play.get_by_label("message").fill("second question here")
    play.get_by_role("button", name="Send").click()
    expect(page.get_by_test_id("playground-answer")).to_have_text("Echo: second question")  # 3 tokens (words)
    status = page.get_by_test_id("playground-status")
    expect(status).to_contain_text("cut at max_tokens")
    expect(status).to_contain_text("2 turns in this conversation")
    expect(page.get_by_test_id("playground-turn")).to_have_count(2)
    shot(page, "16-playground-multi-turn")
    page.get_by_test_id("playground-log-link").click()
    detail = page.get_by_test_id("page-logs")
    prompt = detail.get_by_test_id("message-prompt")
    expect(prompt).to_contain_text("You help Zoe.")  # the template, with the arguments given
    expect(prompt).to_contain_text("Echo: first question")  # the earlier turn went with it
    expect(detail.get_by_test_id("message-facts")).to_contain_text("length")
    version = httpx.get(f"{site.server.url}/admin/v1/catalog", headers=site.server.headers(site.key)).json()["version"]
    expect(detail.get_by_test_id("catalog-version")).to_have_text(version)
    shot(page, "17-playground-turn-in-logs")
    # a wrong argument object is refused in the page, before any call
    page.go_back()
    play = page.get_by_test_id("playground")
    play.get_by_label("system_prompt_args").fill("[1, 2]")
    play.get_by_label("message").fill("never sent")
    play.get_by_role("button", name="Send").click()
    expect(page.get_by_test_id("playground-status")).to_have_text(
        "Cannot send: system_prompt_args must be a JSON object."
    )


def test_a_phone_wide_window_keeps_the_navigation_on_its_bar_and_counts_read_right(
    browser: Browser, site: Site
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    try:
        single = next(ids[0] for ids in site.traffic.campaign_ids.values())  # a campaign request: its own session
        login(page, site, f"#/logs/{single}")
        session = page.get_by_test_id("message-facts").locator("a[href^='#/sessions/']")
        session.click()
        expect(page.get_by_test_id("session-turn")).to_have_count(1)
        expect(page.get_by_test_id("page-sessions")).to_contain_text("· 1 turn")
        expect(page.get_by_test_id("page-sessions")).not_to_contain_text("1 turns")
        nav = page.locator("nav")
        bar = nav.bounding_box()
        assert bar is not None and bar["x"] >= 0 and bar["x"] + bar["width"] <= 390
        items = nav.locator("a, button")
        assert items.count() == 6  # five pages and "Log out" (the brand is a span)
        for i in range(items.count()):
            box = items.nth(i).bounding_box()
            assert box is not None
            assert box["x"] >= bar["x"] and box["x"] + box["width"] <= bar["x"] + bar["width"] + 0.5, (i, box, bar)
            assert box["y"] >= bar["y"] and box["y"] + box["height"] <= bar["y"] + bar["height"] + 0.5, (i, box, bar)
        assert page.evaluate("document.querySelector('nav').scrollWidth <= document.querySelector('nav').clientWidth")
        shot(page, "18-phone-session")
    finally:
        context.close()


def test_dify_playground_sends_numbers_checkboxes_and_uploaded_files_as_dify_does(page: Page, site: Site) -> None:
    """The form as Dify's web app sends it: a number as a JSON number, a checkbox as a boolean, each file uploaded
    first (as the completion's end user) and sent as Dify's file mapping; required fields and limits are checked
    in the page, and a refused upload is said in the status line."""
    login(page, site, "#/projects/orders")
    play = page.get_by_test_id("playground")
    status = page.get_by_test_id("playground-status")
    expect(play.get_by_label("Boxes")).to_have_attribute("type", "number")
    expect(play.get_by_label("Gift wrap")).to_have_attribute("type", "checkbox")
    expect(play.get_by_label("Extras")).to_have_attribute("multiple", "")
    expect(play.locator(".required")).to_have_count(2)  # Boxes and Order form
    play.get_by_role("button", name="Send").click()
    expect(status).to_have_text("Cannot send: Boxes is required.")
    play.get_by_label("Boxes").fill("3")
    play.get_by_role("button", name="Send").click()
    expect(status).to_have_text("Cannot send: Order form is required.")
    play.get_by_label("Note").press_sequentially("fragile glass")
    expect(play.get_by_label("Note")).to_have_value("fragile ")  # max_length 8
    play.get_by_label("Order form").set_input_files(payload("photo.png", "image/png", b"\x89PNG\r\n\x1a\n"))
    play.get_by_role("button", name="Send").click()
    expect(status).to_have_text("Cannot send: Order form takes document files, not photo.png.")
    order = payload("order.md", "text/markdown", b"# Order\n\nShip to Lyon.")
    extras = [payload(f"extra{i}.txt", "text/plain", f"Extra {i}".encode()) for i in range(3)]
    play.get_by_label("Extras").set_input_files(extras)
    play.get_by_label("Order form").set_input_files(order)
    play.get_by_role("button", name="Send").click()
    expect(status).to_have_text("Cannot send: Extras takes at most 2 files.")
    # a file the face refuses: its message in the status line, nothing sent
    big = payload("big.md", "text/markdown", b"x" * int(DOCUMENT_LIMIT_MB * 1024 * 1024 + 1))
    play.get_by_label("Order form").set_input_files(big)
    play.get_by_label("Extras").set_input_files(extras[:2])
    play.get_by_role("button", name="Send").click()
    expect(status).to_contain_text("Cannot upload big.md: File size exceeded.")
    expect(status).to_contain_text("(HTTP 413)")
    expect(page.get_by_test_id("playground-turn")).to_have_count(0)
    play.get_by_label("Order form").set_input_files(order)
    play.get_by_label("Gift wrap").check()
    expect(play.get_by_label("Floor")).to_have_value("1")  # the default, prefilled
    play.get_by_label("Floor").fill("")  # left empty: not sent, so the server gives the default
    with serve_in_thread(Remote().app(), host="127.0.0.2") as web:
        play.get_by_label("Links").fill(f"{web}/notes.png")  # a field that takes URLs only: a box of them
        play.get_by_role("button", name="Send").click()
        expect(status).to_have_text(f"Cannot send: Links takes document files, not {web}/notes.png.")
        play.get_by_label("Links").fill(f"{web}/notes.txt")
        with page.expect_request(lambda r: r.url.endswith("/v1/completion-messages")) as sent:
            play.get_by_role("button", name="Send").click()
        expect(status).to_contain_text("Done")
    answer = page.get_by_test_id("playground-answer")
    expect(answer).to_contain_text("Echo: Pack 3 boxes for floor 1, gift wrap true, note fragile .")
    expect(answer).to_contain_text("Document order.md:\n# Order\n\nShip to Lyon.")  # the file's text, read by promptd
    expect(answer).to_contain_text("Document extra0.txt:\nExtra 0")
    expect(answer).to_contain_text("Document extra1.txt:\nExtra 1")
    expect(answer).to_contain_text("Document notes.txt:\nremote notes say 42")  # fetched by promptd
    body = json.loads(sent.value.post_data or "")
    inputs = body["inputs"]
    assert body["user"] == "console-playground"
    assert inputs["boxes"] == 3 and inputs["gift"] is True and inputs["note"] == "fragile "
    assert "floor" not in inputs
    assert set(inputs["order"]) == {"type", "transfer_method", "upload_file_id"}
    assert inputs["order"]["type"] == "document" and inputs["order"]["transfer_method"] == "local_file"
    assert [(e["type"], e["transfer_method"]) for e in inputs["extras"]] == [("custom", "local_file")] * 2
    assert inputs["links"] == [{"type": "document", "transfer_method": "remote_url", "url": f"{web}/notes.txt"}]
    shot(page, "19-playground-form")
    page.get_by_test_id("playground-log-link").click()
    detail = page.get_by_test_id("page-logs")
    expect(detail.get_by_test_id("message-inputs")).to_contain_text('"boxes": 3')
    expect(detail.get_by_test_id("message-inputs")).to_contain_text('"gift": true')
    expect(detail.get_by_test_id("message-prompt")).to_contain_text("Ship to Lyon.")
