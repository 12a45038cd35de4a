"""The one guard around instrumentation code.

Instrumentation must never break the application: an error inside tracekit is
logged (once per site and minute, with a count of the repeats) and swallowed.
Under tracekit's own test suite (`TRACEKIT_TESTING=1`) it is raised instead, so
bugs are not hidden.
"""

from __future__ import annotations

import os
import threading
import time
from types import TracebackType
from typing import Any


def _logger() -> Any:
    import logging  # not at import time: `import tracekit` stays cheap

    return logging.getLogger("tracekit")


_REPEAT_WINDOW_S = 60.0


def _raise_internal_errors() -> bool:
    return os.environ.get("TRACEKIT_TESTING", "").lower() in ("1", "true", "yes")


class _RateLimiter:
    """Lets a message through once per key and window; counts the rest."""

    def __init__(self, window: float = _REPEAT_WINDOW_S) -> None:
        self._window = window
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, int]] = {}

    def allow(self, key: str) -> tuple[bool, int]:
        """Return (should_log, repeats suppressed since the last log)."""
        now = time.monotonic()
        with self._lock:
            last, repeats = self._last.get(key, (float("-inf"), 0))
            if now - last >= self._window:
                self._last[key] = (now, 0)
                return True, repeats
            self._last[key] = (last, repeats + 1)
            return False, repeats + 1


_limiter = _RateLimiter()


def warn_limited(key: str, message: str, *args: object) -> None:
    """Log a warning at most once per key and minute (log storms are bugs)."""
    ok, repeats = _limiter.allow(key)
    if ok:
        if repeats:
            message += f" ({repeats} similar messages suppressed)"
        _logger().warning(message, *args)


class guard:  # noqa: N801 - used like a function: `with guard(site):`
    """Context manager that swallows (and reports) instrumentation errors.

    Example:
        with guard("openai.response"):
            span.set_outputs(map_response(response))
    """

    __slots__ = ("site",)

    def __init__(self, site: str) -> None:
        self.site = site

    def __enter__(self) -> guard:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False
        report_internal_error(self.site, exc)
        return not _raise_internal_errors()


def internal_error(site: str, exc: Exception) -> None:
    """What `guard` does, for hot paths that use a plain `try`: report, raise in tests."""
    report_internal_error(site, exc)
    if _raise_internal_errors():
        raise exc


def report_internal_error(site: str, exc: BaseException) -> None:
    """Log an internal error once per site and window, with its traceback."""
    ok, repeats = _limiter.allow("internal:" + site)
    if ok:
        extra = f" ({repeats} repeats suppressed)" if repeats else ""
        _logger().warning(
            "tracekit internal error at %s (tracing continues, the application is unaffected)%s",
            site,
            extra,
            exc_info=exc,
        )
