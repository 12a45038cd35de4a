"""Estimated cost of LLM spans, in USD, from token usage (runs on the export worker).

Prices come from two places, in this order:

1. the user's own prices, for names the public price lists do not know
   (Databricks serving endpoints, gateway routes, fine-tuned models):
   `tracekit.configure(prices={...})` or a JSON/TOML file named by
   `TRACEKIT_PRICES`, each entry `{"input_mtok": USD, "output_mtok": USD,
   "cache_read_mtok"?: USD, "cache_write_mtok"?: USD}` per million tokens;
2. pydantic's `genai-prices` database (the `tracekit[cost]` extra), which
   tracks the providers' price pages and prices a call at the time it was made.

A model neither knows gets no cost: never a guess. `input_cost` includes the
cached input (read and written), which `cache_read_cost`/`cache_write_cost`
break out when non-zero; `total_cost` is input plus output.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from tracekit._guard import warn_limited

logger = logging.getLogger("tracekit")

# The price database is imported on the export worker the first time a price is needed
# (about 0.2 s: too long to add to the caller's first traced call, where the worker's other
# imports happen). A fork while that import held an import lock would hang the child, so a
# fork waits until the import is done (`os.register_at_fork`), and the child starts free.
_importing = threading.Lock()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_importing.acquire,
        after_in_parent=_importing.release,
        after_in_child=_importing.release,
    )

ENV = "TRACEKIT_PRICES"
PRICE_KEYS = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")
COST_KEYS = ("input_cost", "output_cost", "total_cost", "cache_read_cost", "cache_write_cost")
# gen_ai.provider.name -> genai-prices provider id (others are passed as they are).
_PROVIDER_IDS = {"gcp.gemini": "google", "gcp.vertex_ai": "google", "aws.bedrock": "aws"}
_Price = dict[str, float]


def _check_prices(raw: Any, origin: str) -> dict[str, _Price]:
    """The valid entries of a user price table; one warning per bad entry."""
    table: dict[str, _Price] = {}
    if not isinstance(raw, Mapping):
        logger.warning(
            "tracekit: ignoring %s (expected a table of model names to prices); using the "
            "price database only",
            origin,
        )
        return table
    for model, price in raw.items():
        entry = _check_price(price)
        if entry is None:
            logger.warning(
                "tracekit: ignoring the price of %r in %s (expected numbers >= 0 for %s, "
                "input_mtok and output_mtok required, in USD per million tokens)",
                model,
                origin,
                ", ".join(PRICE_KEYS),
            )
            continue
        table[str(model)] = entry
    return table


def _check_price(price: Any) -> _Price | None:
    if not isinstance(price, Mapping) or not {"input_mtok", "output_mtok"} <= set(price):
        return None
    entry: _Price = {}
    for key, value in price.items():
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if key not in PRICE_KEYS or not ok or not math.isfinite(value) or value < 0:
            return None
        entry[key] = float(value)
    return entry


def _read_file(path: str) -> Any:
    text = Path(path).expanduser().read_text(encoding="utf-8")
    if path.lower().endswith(".toml"):
        import importlib

        # Python 3.11+; on 3.10 the ImportError is reported like any unreadable file.
        return importlib.import_module("tomllib").loads(text)
    return json.loads(text)


_file_cache: dict[tuple[str, float], dict[str, _Price]] = {}


def _from_file(path: str) -> dict[str, _Price]:
    origin = f"{ENV}={path!r}"
    try:
        key = (path, os.stat(os.path.expanduser(path)).st_mtime)
        if key not in _file_cache:
            _file_cache.clear()
            _file_cache[key] = _check_prices(_read_file(path), origin)
        return _file_cache[key]
    except Exception as exc:  # missing, unreadable, not JSON/TOML
        warn_limited(
            "prices-file:" + path,
            "tracekit: cannot read the prices file %s (%s: %s); using the price database only",
            origin,
            type(exc).__name__,
            exc,
        )
        return {}


def user_prices(prices: Mapping[str, Any] | None, prices_file: str | None) -> dict[str, _Price]:
    """The user's price table: the file's entries, overridden by `configure(prices=)`."""
    table = _from_file(prices_file) if prices_file else {}
    if prices:
        global _explicit
        if _explicit[0] is not prices:  # checked (and warned about) once per configure()
            _explicit = (prices, _check_prices(prices, "configure(prices=...)"))
        table = {**table, **_explicit[1]}
    return table


_explicit: tuple[Any, dict[str, _Price]] = (None, {})


class _Database:
    """genai-prices, imported on first use (on the export worker: about 150 ms).

    A full `calc_price` takes about half a millisecond, too much for the export
    worker at a thousand calls a second. For a model whose price is a flat rate
    per token kind (most), the rate is read once, by pricing a million tokens of
    each kind, and calls are priced by multiplying; a model priced by tiers (a
    long-context surcharge) or by time (off-peak discounts) is priced call by call.
    """

    def __init__(self) -> None:
        self.module: Any = None
        self.loaded = False
        # (model, provider, address) -> (lookup, per-token rates or None: call by call), or
        # None: unknown (never a guess).
        self.models: dict[tuple[str, str | None, str | None], Any] = {}

    def load(self) -> Any:
        if not self.loaded:
            self.loaded = True
            try:
                with _importing:
                    import genai_prices

                self.module = genai_prices
            except ImportError:
                logger.debug("tracekit: genai-prices is not installed; only user prices apply")
        return self.module

    def _find(
        self, gp: Any, model: str, provider: str | None, address: str | None, when: datetime
    ) -> tuple[dict[str, str], dict[str, float] | None] | None:
        for lookup in _lookups(provider, address):
            try:
                probe = gp.calc_price(
                    gp.Usage(input_tokens=1), model, genai_request_timestamp=when, **lookup
                )
            except LookupError:
                continue
            flat = not isinstance(probe.model.prices, list) and all(
                value is None or isinstance(value, Decimal)
                for value in vars(probe.model_price).values()
            )
            if not flat:
                return lookup, None
            million = 1_000_000
            rates = {}
            for kind, usage in (
                ("input", {"input_tokens": million}),
                ("output", {"output_tokens": million}),
                ("cache_read", {"input_tokens": million, "cache_read_tokens": million}),
                ("cache_write", {"input_tokens": million, "cache_write_tokens": million}),
            ):
                calc = gp.calc_price(
                    gp.Usage(**usage), model, genai_request_timestamp=when, **lookup
                )
                rates[kind] = float(calc.total_price) / million
            return lookup, rates
        return None

    def price(
        self,
        usage: Mapping[str, int],
        model: str,
        provider: str | None,
        address: str | None,
        start_ns: Any,
    ) -> dict[str, float] | None:
        """The cost of `usage` (normalized, ints only) with `model`, priced as of the
        span's start (`start_ns`, epoch nanoseconds; the date is made only when a
        price is looked up, not for a flat rate already known)."""
        key = (model, provider, address)
        found = self.models.get(key, _UNSEEN)
        if found is _UNSEEN:
            gp = self.load()
            if gp is None:
                return None
            found = self.models[key] = self._find(gp, model, provider, address, _when(start_ns))
        if found is None:
            return None
        lookup, rates = found
        tokens = _tokens(usage)
        if rates is not None:
            read, write = tokens.get("cache_read_tokens", 0), tokens.get("cache_write_tokens", 0)
            uncached = max(0, tokens["input_tokens"] - read - write)
            cost = {
                "input_cost": uncached * rates["input"]
                + read * rates["cache_read"]
                + write * rates["cache_write"],
                "output_cost": tokens["output_tokens"] * rates["output"],
            }
            cost["total_cost"] = cost["input_cost"] + cost["output_cost"]
            if read:
                cost["cache_read_cost"] = read * rates["cache_read"]
            if write:
                cost["cache_write_cost"] = write * rates["cache_write"]
            return cost
        gp = self.module
        when = _when(start_ns)
        calc = gp.calc_price(gp.Usage(**tokens), model, genai_request_timestamp=when, **lookup)
        cost = {
            "input_cost": float(calc.input_price),
            "output_cost": float(calc.output_price),
            "total_cost": float(calc.total_price),
        }
        for part in ("cache_read", "cache_write"):
            n = tokens.get(part + "_tokens", 0)
            if n:
                only = gp.Usage(input_tokens=n, **{part + "_tokens": n})
                calc = gp.calc_price(only, model, genai_request_timestamp=when, **lookup)
                cost[part + "_cost"] = float(calc.input_price)
        return cost


_UNSEEN: Any = object()


def _when(start_ns: Any) -> datetime:
    return datetime.fromtimestamp(start_ns / 1e9 if start_ns else 0, timezone.utc)


def _lookups(provider: str | None, address: str | None) -> Iterator[dict[str, str]]:
    """How to find the provider: by the host called (an OpenAI-compatible client
    calling OpenRouter is priced as OpenRouter), then by the provider's name."""
    if address:
        yield {"provider_api_url": "https://" + address}
    if provider:
        yield {"provider_id": _PROVIDER_IDS.get(provider, provider)}


def _tokens(usage: Mapping[str, int]) -> dict[str, int]:
    """tracekit's normalized usage in genai-prices' terms (both count cached input
    inside the input tokens and reasoning inside the output tokens)."""
    tokens = {
        "input_tokens": usage.get("input_tokens", 0),
        "output_tokens": usage.get("output_tokens", 0),
    }
    if usage.get("cache_read_input_tokens"):
        tokens["cache_read_tokens"] = usage["cache_read_input_tokens"]
    if usage.get("cache_creation_input_tokens"):
        tokens["cache_write_tokens"] = usage["cache_creation_input_tokens"]
    return tokens


def _user_cost(usage: Mapping[str, int], price: _Price) -> dict[str, float]:
    tokens = _tokens(usage)
    read, write = tokens.get("cache_read_tokens", 0), tokens.get("cache_write_tokens", 0)
    per = 1_000_000
    read_cost = read * price.get("cache_read_mtok", price["input_mtok"]) / per
    write_cost = write * price.get("cache_write_mtok", price["input_mtok"]) / per
    uncached = max(0, tokens["input_tokens"] - read - write)
    cost = {
        "input_cost": uncached * price["input_mtok"] / per + read_cost + write_cost,
        "output_cost": tokens["output_tokens"] * price["output_mtok"] / per,
    }
    cost["total_cost"] = cost["input_cost"] + cost["output_cost"]
    if read_cost:
        cost["cache_read_cost"] = read_cost
    if write_cost:
        cost["cache_write_cost"] = write_cost
    return cost


database = _Database()


def span_cost(span: Mapping[str, Any], prices: Mapping[str, _Price]) -> dict[str, float] | None:
    """The estimated cost of one span record, or None (no usage, no model, no price)."""
    usage = span.get("token_usage")
    if not usage or not isinstance(usage, Mapping):
        return None
    attributes = span.get("attributes") or {}
    # Runs for every LLM span on the export worker: no more than the lookups it needs.
    usage = {k: n for k, n in usage.items() if type(n) is int or _is_int(n)}
    requested = attributes.get("gen_ai.request.model")
    answered = attributes.get("gen_ai.response.model")
    models = [m for m in (requested, answered) if isinstance(m, str) and m]
    if prices:
        for model in models:  # the name the user called (an endpoint) first
            if model in prices:
                return _user_cost(usage, prices[model])
    provider = attributes.get("gen_ai.provider.name") or attributes.get("gen_ai.system")
    address = attributes.get("server.address")
    start = span.get("start_time_ns")
    for model in reversed(models):  # the dated name the provider answered with first
        cost = database.price(
            usage,
            model,
            provider if isinstance(provider, str) else None,
            address if isinstance(address, str) else None,
            start,
        )
        if cost is not None:
            return cost
    return None


def _is_int(n: Any) -> bool:
    return isinstance(n, int) and not isinstance(n, bool)


def add_costs(record: dict[str, Any], prices: Mapping[str, _Price]) -> None:
    """Set `cost` on each priced span of a trace record and the trace's total, in which
    a span whose ancestor already carries a cost is not counted again."""
    spans = record.get("spans") or []
    priced = []
    for span in spans:
        cost = span_cost(span, prices)
        if cost is not None:
            span["cost"] = _rounded(cost)
            priced.append(span)
    if not priced:
        return
    if len(priced) == 1:  # the trace's cost is its one priced span's (rounded already)
        if priced[0]["cost"]:
            record["cost"] = dict(priced[0]["cost"])
        return
    by_id = {s.get("span_id"): s for s in spans}
    total: dict[str, float] = {}
    for span in priced:
        parent = by_id.get(span.get("parent_id"))
        seen = {id(span)}
        while parent is not None and "cost" not in parent and id(parent) not in seen:
            seen.add(id(parent))  # a malformed record's parent cycle ends here
            parent = by_id.get(parent.get("parent_id"))
        if parent is not None and "cost" in parent:
            continue
        for key, value in span["cost"].items():
            total[key] = total.get(key, 0.0) + value
    if total:
        record["cost"] = _rounded(total)


def _rounded(cost: Mapping[str, float]) -> dict[str, float]:
    """To a millionth of a cent: beyond that the digits are float noise."""
    return {key: round(value, 12) for key, value in cost.items()}


def merge(costs: list[Mapping[str, Any]]) -> dict[str, float] | None:
    """The sum of several fragments' trace costs (the file store's reader)."""
    total: dict[str, float] = {}
    for cost in costs:
        for key, value in (cost or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                total[key] = total.get(key, 0.0) + value
    return _rounded(total) if total else None
