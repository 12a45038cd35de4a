"""Zero-code tracing: imported by `tracekit-autostart.pth` at interpreter start-up
when `TRACEKIT_AUTOLOG` is set.

Standard library only and no tracekit import here, so that the start-up cost
stays near zero: each named integration is turned on by an import hook when
the program itself first imports the SDK. A program that never imports
`openai` pays almost nothing for `TRACEKIT_AUTOLOG=all`. Nothing here may
break start-up: any failure is reported on stderr and the program runs untraced.
"""

from __future__ import annotations

import os
import sys

# The module whose import turns each integration on: a copy of tracekit.integrations._registry
# (this module may not import tracekit), checked by tests/test_autostart.py.
PACKAGES = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gemini": "google.genai",
    "langchain": "langchain_core",
}


class SDKImportWatcher:
    """A `sys.meta_path` finder that runs `tracekit.<name>.autolog()` right after
    the watched SDK's package has been imported, then leaves the import system."""

    def __init__(self, names: list[str]) -> None:
        self.pending = {PACKAGES[name]: name for name in names}
        self._busy: set[str] = set()

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> object:
        if fullname not in self.pending or fullname in self._busy:
            return None
        self._busy.add(fullname)
        try:
            spec = None
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
        finally:
            self._busy.discard(fullname)
        loader = getattr(spec, "loader", None)
        original = getattr(loader, "exec_module", None)
        if original is None:
            return None  # let the normal machinery find it (or report it missing)

        def exec_module(module: object) -> None:
            # A loader can be shared (zipimport): act once, for this module only.
            try:  # noqa: SIM105 - contextlib is not worth importing at start-up
                del loader.exec_module  # type: ignore[union-attr]
            except AttributeError:
                pass
            original(module)
            if getattr(module, "__name__", None) == fullname:
                self.imported(fullname)

        try:
            loader.exec_module = exec_module  # type: ignore[union-attr]
        except (AttributeError, TypeError):
            return None  # a loader we cannot watch: the SDK imports untraced
        return spec

    def imported(self, package: str) -> None:
        name = self.pending.pop(package, None)
        if not self.pending and self in sys.meta_path:
            sys.meta_path.remove(self)
        if name is not None:
            try:
                from tracekit._autostart import enable

                enable(name)
            except Exception as exc:
                _report(exc)


def _report(exc: BaseException) -> None:
    print(
        f"tracekit: TRACEKIT_AUTOLOG is set but tracing could not start ({exc!r}); "
        "the program runs untraced",
        file=sys.stderr,
    )


def _start() -> None:
    raw = os.environ.get("TRACEKIT_AUTOLOG", "")
    names = [n.strip().lower() for n in raw.split(",") if n.strip()]
    if "all" in names:
        names = list(PACKAGES)
    elif any(n not in PACKAGES for n in names):
        from tracekit._autostart import known_names  # warns, naming the variable

        names = known_names()
    if not names:
        return
    watcher = SDKImportWatcher(names)
    sys.meta_path.insert(0, watcher)
    for package in list(watcher.pending):
        if package in sys.modules:
            watcher.imported(package)
    _handle_sigterm()


def _handle_sigterm() -> None:
    """Containers, Kubernetes and systemd stop a service with SIGTERM, whose
    default action skips atexit. Installed now, before any framework: a program
    or framework handler installed later replaces it (gunicorn exits through
    atexit, which flushes), and one that restores it and re-raises the signal
    after a graceful stop (uvicorn) ends here. `_signal` rather than `signal`,
    which imports enum: the C module is free."""
    try:
        import _signal
    except ImportError:  # not CPython
        return
    try:
        if _signal.getsignal(_signal.SIGTERM) == _signal.SIG_DFL:
            _signal.signal(_signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError, AttributeError):  # not the main thread, or no SIGTERM
        pass


def _on_sigterm(signum: int, frame: object) -> None:
    """Deliver what tracekit holds (if it was ever used), then die of the signal
    with its default action, as the process would have without tracekit."""
    import _signal

    if "tracekit._state" in sys.modules:
        try:
            from tracekit._autostart import flush_before_signal

            flush_before_signal()
        except Exception as exc:
            _report(exc)
    _signal.signal(signum, _signal.SIG_DFL)
    os.kill(os.getpid(), signum)


try:
    _start()
except Exception as _exc:  # never break the interpreter's start-up
    _report(_exc)
