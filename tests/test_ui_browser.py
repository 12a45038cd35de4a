"""`tracekit ui` end to end, in a real headless browser.

Debian's chromium driven by Playwright (from PyPI; its own browser download is
never used). Without chromium the module skips, except under CI=true, where
.ci/run installs it and a missing browser is a failure.

Screenshots for the docs: `TRACEKIT_SCREENSHOTS=docs/img pytest tests/test_ui_browser.py`
writes ui-list.png, ui-trace.png and ui-chat.png there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.ui_records import XSS, append, chat_trace, error_trace, span, trace, xss_trace

from tracekit._ui.index import StoreIndex
from tracekit._ui.server import UIServer
from tracekit.cli import main as cli_main

CHROMIUM = os.environ.get("TRACEKIT_TEST_CHROMIUM") or shutil.which("chromium") or ""
QUESTION = "When will I get my refund for order A-1001?"
ANSWER = "so your refund will be paid within 14 days of that date."
# Read at collection, from the directory pytest started in (tests then run in a tmp dir).
SHOTS = (
    Path(os.environ["TRACEKIT_SCREENSHOTS"]).resolve()
    if "TRACEKIT_SCREENSHOTS" in os.environ
    else None
)

if not CHROMIUM and os.path.exists("/usr/bin/chromium"):
    CHROMIUM = "/usr/bin/chromium"
if not CHROMIUM:
    if os.environ.get("CI") == "true":
        pytest.fail("no chromium on this CI machine: .ci/run installs it", pytrace=False)
    pytest.skip("no chromium found (apt-get install chromium)", allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev group")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The demo's trace (run for real) plus hand-built ones."""
    root = tmp_path_factory.mktemp("ui")
    path = root / "store"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEKIT_")}
    env.update(TRACEKIT_TESTING="1", TRACEKIT_TRACKING_URI=str(path))
    done = subprocess.run(
        [sys.executable, "-m", "tracekit.demo"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    demo = json.loads((path / "traces.jsonl").read_text(encoding="utf-8").splitlines()[0])
    append(path, chat_trace(), '{"torn": ', error_trace())  # a torn line between two records
    return {"path": path, "root": root, "demo": demo}


@pytest.fixture(scope="module")
def server(store: dict[str, Any]) -> Iterator[UIServer]:
    index = StoreIndex(store["path"], store["root"] / "cache" / "index.sqlite")
    srv = UIServer(store["path"], index=index)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.close()
    thread.join(5)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 860})
    tab = context.new_page()
    tab.set_default_timeout(10_000)
    tab.dialogs = []  # type: ignore[attr-defined]
    tab.errors = []  # type: ignore[attr-defined]
    tab.on("dialog", lambda d: (tab.dialogs.append(d.message), d.dismiss()))
    tab.on("pageerror", lambda e: tab.errors.append(str(e)))
    yield tab
    context.close()
    assert tab.errors == [], tab.errors


def expect(locator: Any) -> Any:
    return sync_api.expect(locator)


def shot(page: Any, name: str, height: int = 860) -> None:
    if SHOTS:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.set_viewport_size({"width": 1400, "height": height})
        content = page.evaluate("Math.ceil(document.querySelector('main').scrollHeight) + 46")
        clip = {"x": 0, "y": 0, "width": 1400, "height": min(height, content)}
        page.screenshot(path=str(SHOTS / name), clip=clip)


def test_the_list_shows_the_demo_trace(page: Any, server: UIServer, store: dict[str, Any]) -> None:
    page.goto(server.url)
    demo = store["demo"]
    row = page.locator(f'tr[data-trace-id="{demo["trace_id"]}"]')
    expect(row).to_contain_text("answer_question")
    expect(row).to_contain_text("OK")
    expect(row).to_contain_text(str(demo["token_usage"]["total_tokens"]))
    expect(row).to_contain_text("app=demo")
    expect(page.locator("tr.trace-row")).to_have_count(3)
    expect(page.locator("#notice")).to_have_text("1 unreadable line in the store skipped")
    # The hand-built chat trace carries a cost, so the column shows.
    expect(page.locator(f'tr[data-trace-id="{"c" * 32}"]')).to_contain_text("$0.00010")
    shot(page, "ui-list.png")


def test_a_click_opens_the_waterfall_and_the_answer(
    page: Any, server: UIServer, store: dict[str, Any]
) -> None:
    demo = store["demo"]
    page.goto(server.url)
    page.locator(f'tr[data-trace-id="{demo["trace_id"]}"] a.trace-name').click()
    expect(page.locator("#trace-title")).to_have_text("answer_question")
    rows = page.locator("#waterfall .wf-row[data-span-id]")
    expect(rows).to_have_count(len(demo["spans"]))
    # The streamed answer: its bar shows the time to its first chunk.
    stream = next(s for s in demo["spans"] if s["attributes"].get("tracekit.stream"))
    stream_row = page.locator(f'.wf-row[data-span-id="{stream["span_id"]}"]')
    expect(stream_row.locator(".wf-ttfc")).to_have_count(1)
    expect(stream_row).to_contain_text("first chunk")
    stream_row.click()
    assert page.url.endswith(f"#/trace/{demo['trace_id']}/span/{stream['span_id']}")
    detail = page.locator("#span-detail")
    expect(detail.locator("#span-title")).to_have_text(stream["name"])
    if "chat" in stream:  # the record carries normalized messages: the chat view
        chat = detail.locator("#chat-view")
        expect(chat.locator(".role-user").first).to_contain_text(QUESTION)
        expect(chat.locator(".msg.output")).to_contain_text(ANSWER)
    else:  # records written before "chat" existed: the JSON of inputs and outputs
        expect(detail).to_contain_text(QUESTION)
        expect(detail).to_contain_text(ANSWER)
    shot(page, "ui-trace.png")


def test_the_chat_view_and_a_deep_link(page: Any, server: UIServer) -> None:
    page.goto(server.url + f"#/trace/{'c' * 32}/span/c000000000000002")
    chat = page.locator("#chat-view")
    expect(chat.locator(".role-system")).to_contain_text("You are a terse travel agent.")
    expect(chat.locator(".role-user")).to_contain_text("Weather in Paris?")
    call = chat.locator(".part.tool-call")
    expect(call).to_contain_text("get_weather")
    expect(call).to_contain_text('"city": "Paris"')
    expect(chat.locator(".part.tool-result")).to_contain_text('"temperature_c": 18')
    expect(chat.locator(".part.reasoning")).to_contain_text("Reasoning")
    expect(chat.locator(".msg.output")).to_contain_text("18 °C and cloudy in Paris.")
    expect(chat.locator(".msg.output")).to_contain_text("stop")
    detail = page.locator("#span-detail")
    expect(detail.locator(".usage")).to_contain_text("total tokens 52")
    expect(detail.locator(".usage")).to_contain_text("total cost $0.00010")
    expect(detail).to_contain_text("first chunk after 300 ms")
    expect(page.locator(".wf-row.selected")).to_have_attribute("data-span-id", "c000000000000002")
    shot(page, "ui-chat.png", height=1200)  # the whole conversation


def test_errors_show_their_stack_trace(page: Any, server: UIServer) -> None:
    page.goto(server.url + f"#/trace/{'e' * 32}/span/e000000000000002")
    detail = page.locator("#span-detail")
    expect(detail.locator(".event.exception")).to_contain_text("KeyError: 'A-9' at +2.0 ms")
    expect(detail.locator("pre.stack")).to_contain_text('File "app.py", line 3, in lookup_order')


def test_filters_find_a_trace_by_tag_and_by_session(page: Any, server: UIServer) -> None:
    page.goto(server.url)
    expect(page.locator("tr.trace-row")).to_have_count(3)
    page.fill("#f-tag", "team=travel")
    expect(page.locator("tr.trace-row")).to_have_count(1)
    expect(page.locator("tr.trace-row")).to_contain_text("travel_agent")
    page.fill("#f-tag", "")
    page.fill("#f-session", "trip-42")
    expect(page.locator("tr.trace-row")).to_have_count(2)
    expect(page.locator("tr.trace-row").first).to_contain_text("answer")  # newest first
    page.select_option("#f-status", "ERROR")
    expect(page.locator("tr.trace-row")).to_have_count(1)
    page.fill("#f-session", "no-such-session")
    expect(page.locator("#trace-list")).to_contain_text("No trace matches these filters.")


def test_sessions_read_as_a_conversation(page: Any, server: UIServer) -> None:
    page.goto(server.url + "#/sessions")
    page.locator("a", has_text="trip-42").click()
    turns = page.locator("#conversation .turn")
    expect(turns).to_have_count(2)
    expect(turns.nth(0).locator(".role-user")).to_have_text("userWeather in Paris?")
    expect(turns.nth(0).locator(".role-assistant")).to_contain_text("18 °C and cloudy")
    expect(turns.nth(1)).to_contain_text("answer")


def test_a_trace_written_while_the_page_is_open_appears(
    page: Any, server: UIServer, store: dict[str, Any]
) -> None:
    page.goto(server.url)
    expect(page.locator("tr.trace-row")).to_have_count(3)
    late = trace("9" * 32, [span("9" * 16, None, "arrived_later", "CHAIN", 0, 1)], offset_s=10**8)
    append(store["path"], late)
    expect(page.locator("tr.trace-row").first).to_contain_text("arrived_later", timeout=10_000)


def test_markup_in_traces_stays_text(page: Any, server: UIServer, store: dict[str, Any]) -> None:
    append(store["path"], xss_trace())
    page.goto(server.url)
    row = page.locator(f'tr[data-trace-id="{"a" * 32}"]')
    expect(row).to_contain_text(XSS)
    page.goto(server.url + f"#/trace/{'a' * 32}/span/a000000000000002")
    expect(page.locator("#trace-title")).to_have_text(XSS)
    chat = page.locator("#chat-view")
    expect(chat.locator(".role-user")).to_contain_text(XSS)
    expect(page.locator("#span-detail")).to_contain_text(XSS)
    page.goto(server.url + "#/sessions")
    expect(page.locator("table.sessions")).to_contain_text(XSS)
    assert page.locator("img").count() == 0
    assert page.locator("script").count() == 1  # the page's own
    assert page.dialogs == []


def test_the_html_file_works_offline(browser: Any, store: dict[str, Any], tmp_path: Path) -> None:
    target = tmp_path / "demo.html"
    trace_id = store["demo"]["trace_id"]
    assert cli_main(["show", trace_id, "--store", str(store["path"]), "--html", str(target)]) == 0
    context = browser.new_context(offline=True)
    requests: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.goto(target.as_uri())
    expect(tab.locator("#trace-title")).to_have_text("answer_question")
    expect(tab.locator("#waterfall .wf-row[data-span-id]")).to_have_count(7)
    tab.locator(".wf-row", has_text="order_status").click()
    expect(tab.locator("#span-title")).to_have_text("order_status")
    expect(tab.locator("#span-detail")).to_contain_text("A-1001")
    assert requests == [target.as_uri()], requests
    assert errors == []
    # The XSS trace as a file: still inert.
    xss = tmp_path / "xss.html"
    assert cli_main(["show", "a" * 32, "--store", str(store["path"]), "--html", str(xss)]) == 0
    dialogs: list[str] = []
    tab.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    tab.goto(xss.as_uri())
    expect(tab.locator("#trace-title")).to_have_text(XSS)
    assert dialogs == []
    assert errors == []
    context.close()
