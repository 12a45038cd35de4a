"""Estimated cost: recorded provider traffic priced with genai-prices' own public API.

Each test replays a cassette through the real SDK with autolog on and checks
that every LLM span's `cost` is its tokens times the database's prices for
the model the provider answered with (computed here with `genai_prices.calc_price`
at the span's start time), that the trace total counts each call once, and
that a model the database does not know gets no cost at all.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

genai_prices = pytest.importorskip("genai_prices")

from tests.replay import load_or_skip, replay_server  # noqa: E402

import tracekit  # noqa: E402
from tracekit import _cost  # noqa: E402
from tracekit.testing import Capture, capture  # noqa: E402

PROVIDER_IDS = {"openai": "openai", "anthropic": "anthropic", "gcp.gemini": "google"}


def expected_cost(span: dict[str, Any]) -> dict[str, float]:
    """The span's tokens priced by genai-prices' public API, as the docs show it."""
    usage = span["token_usage"]
    attributes = span["attributes"]
    when = datetime.fromtimestamp(span["start_time_ns"] / 1e9, timezone.utc)
    provider = PROVIDER_IDS[attributes["gen_ai.provider.name"]]
    model = attributes["gen_ai.response.model"]

    def price(**tokens: int) -> Any:
        return genai_prices.calc_price(
            genai_prices.Usage(**tokens), model, provider_id=provider, genai_request_timestamp=when
        )

    read = usage.get("cache_read_input_tokens", 0)
    write = usage.get("cache_creation_input_tokens", 0)
    tokens = {"input_tokens": usage["input_tokens"], "output_tokens": usage["output_tokens"]}
    if read:
        tokens["cache_read_tokens"] = read
    if write:
        tokens["cache_write_tokens"] = write
    calc = price(**tokens)
    cost = {
        "input_cost": float(calc.input_price),
        "output_cost": float(calc.output_price),
        "total_cost": float(calc.total_price),
    }
    if read:
        cost["cache_read_cost"] = float(
            price(input_tokens=read, cache_read_tokens=read).input_price
        )
    if write:
        cost["cache_write_cost"] = float(
            price(input_tokens=write, cache_write_tokens=write).input_price
        )
    assert cost["total_cost"] > 0
    return cost


def check_costs(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every LLM span priced as expected; each trace's cost is its one span's."""
    spans = []
    for record in records:
        (span,) = record["spans"]
        assert span["cost"] == pytest.approx(expected_cost(span), rel=1e-9, abs=1e-12)
        assert record["cost"] == span["cost"]
        spans.append(span)
    return spans


def test_openai_chat_with_cached_tokens(captured: Capture) -> None:
    openai = pytest.importorskip("openai")
    import tracekit.openai
    from tracekit.integrations.openai import integration

    cassette = load_or_skip("openai/chat_completions_prompt_caching_cached_tokens_gzip.yaml")
    tracekit.openai.autolog()
    try:
        with replay_server(cassette) as server:
            client = openai.OpenAI(api_key="test", base_url=server.base_url + "/v1", max_retries=0)
            for i in range(len(cassette)):
                client.chat.completions.create(**cassette.request_json(i))
    finally:
        integration.revert()
    spans = check_costs(captured.traces)
    assert any(s["cost"].get("cache_read_cost") for s in spans)  # the cached prompt


def test_anthropic_cache_write_then_read(captured: Capture) -> None:
    anthropic = pytest.importorskip("anthropic")
    import tracekit.anthropic
    from tracekit.integrations.anthropic import integration

    cassette = load_or_skip("anthropic/messages_prompt_caching_nonstream_write_then_read_gzip.yaml")
    tracekit.anthropic.autolog()
    try:
        with replay_server(cassette) as server:
            client = anthropic.Anthropic(api_key="test", base_url=server.base_url, max_retries=0)
            for i in range(len(cassette)):
                client.messages.create(**cassette.request_json(i))
    finally:
        integration.revert()
    write, read = check_costs(captured.traces)
    assert write["cost"].get("cache_write_cost")
    assert read["cost"].get("cache_read_cost")


def test_gemini_generate_content(captured: Capture) -> None:
    pytest.importorskip("google.genai")
    from google import genai
    from google.genai import types

    import tracekit.gemini
    from tracekit.integrations.gemini import integration

    cassette = load_or_skip("gemini/generate_content_basic.yaml")
    body = cassette.request_json(0)
    tracekit.gemini.autolog()
    try:
        with replay_server(cassette) as server:
            client = genai.Client(
                api_key="test-key",
                http_options=types.HttpOptions(base_url=server.base_url, api_version="v1beta"),
            )
            client.models.generate_content(
                model="gemini-2.0-flash",
                contents=[types.Content.model_validate(c) for c in body["contents"]],
                config=types.GenerateContentConfig(
                    system_instruction=types.Content.model_validate(body["systemInstruction"])
                ),
            )
    finally:
        integration.revert()
    check_costs(captured.traces)


# -- spans made by hand: unknown models, user prices, counted once ------------------------


def llm_span(name: str, model: str, usage: dict[str, int], provider: str = "openai") -> None:
    with tracekit.start_span(name, span_type="CHAT_MODEL") as span:
        span.set_attributes({"gen_ai.request.model": model, "gen_ai.provider.name": provider})
        span.set_token_usage(usage)


USAGE = {"input_tokens": 1000, "output_tokens": 200, "total_tokens": 1200}


def test_unknown_model_has_no_cost(captured: Capture) -> None:
    with tracekit.start_span("agent", span_type="AGENT"):
        llm_span("chat mine", "databricks-my-endpoint", USAGE)
    record = captured.single()
    assert "cost" not in record
    assert all("cost" not in span for span in record["spans"])
    assert record["token_usage"] == USAGE  # counted all the same


def test_user_prices_for_an_endpoint_and_counted_once() -> None:
    prices = {"databricks-my-endpoint": {"input_mtok": 2.0, "output_mtok": 10.0}}
    with capture(prices=prices) as captured:
        with tracekit.start_span("agent", span_type="AGENT"):
            # A LangChain-like wrapper and the provider call inside it: one call, priced once.
            with tracekit.start_span("ChatModel", span_type="CHAT_MODEL") as outer:
                outer.set_attributes({"gen_ai.request.model": "databricks-my-endpoint"})
                outer.set_token_usage(USAGE)
                llm_span("chat databricks-my-endpoint", "databricks-my-endpoint", USAGE)
            llm_span("chat again", "databricks-my-endpoint", USAGE)
        record = captured.single()
    one = {"input_cost": 0.002, "output_cost": 0.002, "total_cost": 0.004}
    priced = [s["cost"] for s in record["spans"] if "cost" in s]
    assert priced == [one, one, one]
    assert record["cost"] == pytest.approx({k: 2 * v for k, v in one.items()})
    assert record["token_usage"]["input_tokens"] == 2000


def test_user_prices_override_the_database_and_price_cache() -> None:
    prices = {
        "gpt-4o-mini": {
            "input_mtok": 1.0,
            "output_mtok": 4.0,
            "cache_read_mtok": 0.5,
            "cache_write_mtok": 2.0,
        }
    }
    usage = dict(USAGE, cache_read_input_tokens=400, cache_creation_input_tokens=100)
    with capture(prices=prices) as captured:
        llm_span("chat gpt-4o-mini", "gpt-4o-mini", usage)
        (span,) = captured.single()["spans"]
    # 500 uncached x 1 + 400 read x 0.5 + 100 written x 2, per million tokens
    assert span["cost"] == pytest.approx(
        {
            "input_cost": 0.0009,
            "output_cost": 0.0008,
            "total_cost": 0.0017,
            "cache_read_cost": 0.0002,
            "cache_write_cost": 0.0002,
        }
    )


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_prices_file_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    path = tmp_path / f"prices{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps({"route-a": {"input_mtok": 3, "output_mtok": 6}}))
    else:
        path.write_text('["route-a"]\ninput_mtok = 3\noutput_mtok = 6\n')
    monkeypatch.setenv("TRACEKIT_PRICES", str(path))
    from tracekit import _config

    with capture(prices_file=_config.from_env().prices_file) as captured:
        llm_span("chat route-a", "route-a", USAGE)
        (span,) = captured.single()["spans"]
    assert span["cost"] == pytest.approx(
        {"input_cost": 0.003, "output_cost": 0.0012, "total_cost": 0.0042}
    )


def test_bad_prices_file_warns_naming_the_variable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "prices.json"
    path.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="tracekit"):
        table = _cost.user_prices(None, str(path))
        entries = _cost.user_prices({"x": {"input_mtok": -1, "output_mtok": 1}}, None)
    assert table == {}
    assert entries == {}
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        f"TRACEKIT_PRICES='{path}'" in m and "using the price database only" in m for m in messages
    )
    assert any("ignoring the price of 'x' in configure(prices=...)" in m for m in messages)


def test_configure_prices_argument(captured: Capture) -> None:
    config = tracekit.configure(prices={"a": {"input_mtok": 1, "output_mtok": 2}})
    assert config.prices == {"a": {"input_mtok": 1, "output_mtok": 2}}
    config = tracekit.configure(prices="/etc/prices.toml")
    assert config.prices_file == "/etc/prices.toml"


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("openai", "gpt-4o-mini"),  # a flat rate: priced from cached per-token rates
        ("anthropic", "claude-sonnet-4-5"),  # tiered by context length: priced call by call
        ("gcp.gemini", "gemini-2.5-pro"),
    ],
)
@pytest.mark.parametrize("input_tokens", [1_000, 300_000])  # below and above long-context tiers
def test_flat_and_tiered_prices_equal_the_database(
    captured: Capture, provider: str, model: str, input_tokens: int
) -> None:
    usage = {
        "input_tokens": input_tokens,
        "output_tokens": 2_000,
        "total_tokens": input_tokens + 2_000,
        "cache_read_input_tokens": 400,
    }
    llm_span(f"chat {model}", model, usage, provider=provider)
    (span,) = captured.single()["spans"]
    span["attributes"]["gen_ai.response.model"] = model
    assert span["cost"] == pytest.approx(expected_cost(span), rel=1e-9, abs=1e-12)
