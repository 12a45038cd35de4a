"""What every integration shares: switched on and off at call time, the SDK's
install and version check, one patch per process, and a real revert for tests.

A subclass says how to patch its SDK (`_patch`) and how to undo it (`_unpatch`);
the engine's `Integration` does it for SDK methods, LangChain's for callback
managers.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from tracekit import _state
from tracekit.integrations._registry import IntegrationSpec, version_tuple

logger = logging.getLogger("tracekit")


class BaseIntegration:
    """One integration (a row of `_registry.INTEGRATIONS`) and whether it records."""

    def __init__(self, spec: IntegrationSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.enabled = False
        self.options: dict[str, Any] = {}
        self._hooked = False

    def active(self) -> bool:
        """True when calls are recorded: autolog is on and tracing is enabled."""
        return self.enabled and _state.config().enabled

    def autolog(
        self, disable: bool = False, log_traces: bool = True, silent: bool = False, **options: Any
    ) -> None:
        """Turn tracing of this SDK on (patching it once) or off (not unpatching).

        An SDK that is not installed logs one warning (none with `silent`); one older
        than the oldest supported release always logs one and is not traced.
        """
        if disable or not log_traces:
            self.enabled = False
            return
        self.options = {k: v for k, v in options.items() if v}
        try:
            module = importlib.import_module(self.spec.sdk_module)
        except ImportError:
            if not silent:
                logger.warning(
                    "tracekit: %s autolog: %s is not installed; nothing to trace "
                    "(pip install 'tracekit[%s]')",
                    self.name,
                    self.spec.distribution,
                    self.name,
                )
            return
        if not self._supported(module):
            return
        if not self._hooked:
            self._hooked = True
            self._patch()
        self.enabled = True

    def _supported(self, module: Any) -> bool:
        version = getattr(module, "__version__", None)
        if not isinstance(version, str):
            return True  # a build without a version: try it
        if version_tuple(version) >= version_tuple(self.spec.min_version):
            return True
        logger.warning(
            "tracekit: %s autolog: %s %s is older than %s, the oldest release tracekit "
            "traces; not traced (pip install -U '%s>=%s')",
            self.name,
            self.spec.distribution,
            version,
            self.spec.min_version,
            self.spec.distribution,
            self.spec.min_version,
        )
        return False

    def revert(self) -> None:
        """Remove the patches (tests); `autolog()` patches again."""
        self._unpatch()
        self._hooked = False
        self.enabled = False

    def _patch(self) -> None:
        """Patch the SDK (once per process, or again after `revert()`)."""
        raise NotImplementedError

    def _unpatch(self) -> None:
        """Undo `_patch`."""
        raise NotImplementedError
