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
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from tests.child import run_command
from tests.ui_records import XSS, append, chat_trace, error_trace, span, trace, xss_trace

import tracekit
from tracekit import _state
from tracekit._ui.index import StoreIndex
from tracekit._ui.server import UIServer
from tracekit.cli import main as cli_main

CHROMIUM = os.environ.get("TRACEKIT_TEST_CHROMIUM") or shutil.which("chromium") or ""
QUESTION = "When will I get my refund for order A-1001?"
ANSWER = "so your refund will be paid within 14 days of that date."
SYSTEM = "Answer from these documents: Refunds are paid within 14 days"
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


def log_feedback(store: Path, **feedback: Any) -> None:
    """`tracekit.log_feedback` into the viewer's store, as an application would."""
    _state.reset()
    try:
        tracekit.configure(tracking_uri=str(store))
        tracekit.log_feedback(**feedback)
    finally:
        _state.reset()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The demo's trace (run for real) with a user's feedback, plus hand-built traces.

    Clean (the screenshots come from it): the torn line comes in a later test."""
    root = tmp_path_factory.mktemp("ui")
    path = root / "store"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEKIT_")}
    env.update(TRACEKIT_TESTING="1", TRACEKIT_TRACKING_URI=str(path))
    run_command([sys.executable, "-m", "tracekit.demo"], cwd=root, env=env, timeout=120)
    demo = json.loads((path / "traces.jsonl").read_text(encoding="utf-8").splitlines()[0])
    append(path, chat_trace(), error_trace())
    log_feedback(
        path,
        trace_id=demo["trace_id"],
        name="thumbs_up",
        value=True,
        source="user-42",
        rationale="Quick and right: the refund date was what I needed.",
    )
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
    context = browser.new_context(viewport={"width": 1400, "height": 860}, timezone_id="UTC")
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


def assert_beside_its_bar(row: Any) -> None:
    """The waterfall's label runs over neither its bar nor itself: beside the bar, or
    wholly inside it."""
    bar = row.locator(".wf-bar").bounding_box()
    label = row.locator(".wf-time")
    box = label.bounding_box()
    if "inside" in (label.get_attribute("class") or ""):
        assert bar["x"] <= box["x"]
        assert box["x"] + box["width"] <= bar["x"] + bar["width"] + 0.5
    else:
        assert (
            box["x"] + box["width"] <= bar["x"] + 0.5 or box["x"] >= bar["x"] + bar["width"] - 0.5
        )


def test_the_list_shows_the_demo_trace(page: Any, server: UIServer, store: dict[str, Any]) -> None:
    page.goto(server.url)
    demo = store["demo"]
    row = page.locator(f'tr[data-trace-id="{demo["trace_id"]}"]')
    expect(row).to_contain_text("answer_question")
    expect(row).to_contain_text("OK")
    expect(row).to_contain_text(str(demo["token_usage"]["total_tokens"]))
    expect(row).to_contain_text("app=demo")
    expect(row).to_contain_text("1 assessment")  # the user's thumbs-up
    expect(row.locator("td.cost")).to_have_text("-")  # the demo's fake model has no price
    expect(page.locator("tr.trace-row")).to_have_count(3)
    expect(page.locator("#notice")).to_have_text("")  # assessments.jsonl is not a bad line
    # Cost as `tracekit ls` prints it (format_cost), and the list sorts by it.
    chat_row = page.locator(f'tr[data-trace-id="{"c" * 32}"]')
    expect(chat_row.locator("td.cost")).to_have_text("$0.000100")
    shot(page, "ui-list.png")
    page.select_option("#f-sort", "cost")
    expect(page.locator("tr.trace-row").first).to_have_attribute("data-trace-id", "c" * 32)


def test_a_click_opens_the_waterfall_and_the_answer(
    page: Any, server: UIServer, store: dict[str, Any]
) -> None:
    demo = store["demo"]
    page.goto(server.url)
    page.locator(f'tr[data-trace-id="{demo["trace_id"]}"] a.trace-name').click()
    expect(page.locator("#trace-title")).to_have_text("answer_question")
    rows = page.locator("#waterfall .wf-row[data-span-id]")
    expect(rows).to_have_count(len(demo["spans"]))
    # The user's feedback on the trace, with its source, rationale and time.
    feedback = page.locator("#trace-assessments tr.assessment")
    expect(feedback).to_have_count(1)
    expect(feedback).to_contain_text("feedback")
    expect(feedback).to_contain_text("thumbs_up")
    expect(feedback.locator(".value.yes")).to_have_text("true")
    expect(feedback).to_contain_text("HUMAN · user-42")
    expect(feedback).to_contain_text("the refund date was what I needed")
    logged = json.loads((store["path"] / "assessments.jsonl").read_text().splitlines()[0])
    when = datetime.fromtimestamp(logged["create_time_ms"] / 1000, tz=timezone.utc)
    expect(feedback).to_contain_text(when.strftime("%Y-%m-%d %H:%M:%S"))  # the page is in UTC
    # The streamed answer: its bar shows the time to its first chunk.
    stream = next(s for s in demo["spans"] if s["attributes"].get("tracekit.stream"))
    stream_row = page.locator(f'.wf-row[data-span-id="{stream["span_id"]}"]')
    expect(stream_row.locator(".wf-ttfc")).to_have_count(1)
    expect(stream_row).to_contain_text("first chunk")
    assert_beside_its_bar(stream_row)
    shot(page, "ui-trace.png")
    stream_row.click()
    assert page.url.endswith(f"#/trace/{demo['trace_id']}/span/{stream['span_id']}")
    detail = page.locator("#span-detail")
    expect(detail.locator("#span-title")).to_have_text(stream["name"])
    # The demo's records carry "chat": its conversation, not the JSON of the SDK call.
    assert "chat" in stream
    chat = detail.locator("#chat-view")
    expect(chat.locator(".msg")).to_have_count(5)
    expect(chat.locator(".role-system")).to_contain_text(SYSTEM)
    expect(chat.locator(".role-user")).to_have_text("user" + QUESTION)
    call = chat.locator(".role-assistant .part.tool-call")
    expect(call).to_contain_text("order_status")
    expect(call.locator("pre.json")).to_have_text(json.dumps({"query": QUESTION}, indent=2))
    expect(chat.locator(".role-tool .part.tool-result")).to_contain_text('"received": "2026-11-20"')
    expect(chat.locator(".msg.output")).to_contain_text(ANSWER)
    expect(chat.locator(".msg.output .msg-role")).to_have_text("assistant · stop")
    expect(detail.locator("details.section", has_text="Inputs")).not_to_have_attribute("open", "")
    shot(page, "ui-chat.png", height=1100)  # the whole conversation


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
    # The span's cost in its waterfall label too, formatted as `tracekit ls` does.
    expect(page.locator('.wf-row[data-span-id="c000000000000002"] .wf-time')).to_have_text(
        "900 ms · first chunk 300 ms · $0.000100"
    )
    expect(page.locator("#trace-head, .trace-head")).to_contain_text("Cost$0.000100")


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
    expect(page.locator("tr.session-row", has_text="trip-42").locator("td.cost")).to_have_text(
        "$0.000100"
    )
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


def test_new_feedback_appears_while_the_trace_is_open(
    page: Any, server: UIServer, store: dict[str, Any]
) -> None:
    page.goto(server.url + f"#/trace/{'e' * 32}/span/e000000000000002")
    expect(page.locator("#span-title")).to_have_text("lookup_order")
    expect(page.locator("#trace-assessments")).to_have_count(0)
    log_feedback(
        store["path"],
        trace_id="e" * 32,
        name="correct_tool",
        value=False,
        source={"source_type": "LLM_JUDGE", "source_id": "judge-1"},
        rationale="The order id was mistyped.",
        span_id="e000000000000002",
    )
    on_trace = page.locator("#trace-assessments tr.assessment")
    expect(on_trace).to_contain_text("correct_tool", timeout=10_000)
    expect(on_trace).to_contain_text("on lookup_order")  # logged on a span: said so
    expect(on_trace.locator(".value.no")).to_have_text("false")
    # The selected span stays selected and shows the feedback logged on it.
    expect(page.locator("#span-title")).to_have_text("lookup_order")
    on_span = page.locator("#span-assessments tr.assessment")
    expect(on_span).to_contain_text("LLM_JUDGE · judge-1")
    expect(on_span).to_contain_text("The order id was mistyped.")
    page.goto(server.url)
    expect(page.locator(f'tr[data-trace-id="{"e" * 32}"]')).to_contain_text("1 assessment")


def test_an_open_trace_redraws_when_a_late_fragment_arrives(
    page: Any, server: UIServer, store: dict[str, Any]
) -> None:
    page.goto(server.url + f"#/trace/{'c' * 32}/span/c000000000000002")
    rows = page.locator("#waterfall .wf-row[data-span-id]")
    expect(rows).to_have_count(2)
    # A span that ended after its trace was written comes as a fragment of the same trace.
    late = trace(
        "c" * 32,
        [span("c000000000000009", "c000000000000001", "late_tool", "TOOL", 920, 990)],
        offset_s=10,
    )
    append(store["path"], late)
    expect(rows).to_have_count(3, timeout=10_000)
    expect(page.locator('.wf-row[data-span-id="c000000000000009"]')).to_contain_text("late_tool")
    expect(page.locator(".wf-row.selected")).to_have_attribute("data-span-id", "c000000000000002")
    expect(page.locator("#chat-view")).to_contain_text("Weather in Paris?")


def test_a_session_longer_than_a_page(page: Any, server: UIServer, store: dict[str, Any]) -> None:
    turns = [
        trace(
            f"{n:08x}" + "5" * 24,
            [span(f"{n:016x}", None, f"turn-{n}", "CHAIN", 0, 1, inputs=f"q{n}", outputs=f"a{n}")],
            offset_s=1000 + n,
            metadata={"session_id": "long-chat"},
        )
        for n in range(205)
    ]
    append(store["path"], *turns)
    page.goto(server.url + "#/session/long-chat")
    conversation = page.locator("#conversation .turn")
    expect(conversation).to_have_count(200)
    expect(page.locator("main")).to_contain_text("205 traces, oldest first")
    expect(conversation.first).to_contain_text("turn-0")
    page.locator("button.later").first.click()
    expect(conversation).to_have_count(5)
    expect(conversation.first).to_contain_text("turn-200")
    expect(page.locator(".pager").first).to_contain_text("201–205 of 205")
    page.locator("button.earlier").first.click()
    expect(conversation).to_have_count(200)


def test_a_corrupt_line_is_skipped_and_counted(
    page: Any, server: UIServer, store: dict[str, Any]
) -> None:
    append(store["path"], '{"torn": ', error_trace("d" * 32, offset_s=40))
    page.goto(server.url)
    expect(page.locator("#notice")).to_have_text("1 unreadable line in the store skipped")
    page.fill("#f-q", "dddd")  # the record after it is read
    expect(page.locator("tr.trace-row")).to_have_count(1)
    expect(page.locator("tr.trace-row")).to_have_attribute("data-trace-id", "d" * 32)
