"""Process-wide state: the configuration, the trace buffer and the export pipeline.

Everything is created lazily: `import tracekit` starts no thread, opens no
file and imports neither logging nor the exporters. The first span loads the
configuration; the first finished trace builds the exporter and starts the
worker. A forked child starts afresh.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tracekit import _buffer, _stats, _threads

if TYPE_CHECKING:
    from tracekit._config import Config
    from tracekit._pipeline import ExportPipeline
    from tracekit.exporters.base import Exporter

_lock = threading.RLock()
_config_value: Config | None = None
_pipeline: ExportPipeline | None = None
_atexit_registered = False
_finalizer: Any = None  # multiprocessing.util.Finalize, when multiprocessing is in use
_mp_hooked = False  # our multiprocessing after-fork callback is registered
_exited = False


def config() -> Config:
    """The effective configuration (read from the environment on first use).

    The one way to read it: after the first call this is a global read, cheap
    enough for the hot path (every span start and every patched SDK call).
    """
    current = _config_value
    if current is None:
        from tracekit import _config

        with _lock:
            current = _config_value or _apply(_config.from_env())
    return current


def _apply(new: Config) -> Config:
    global _config_value
    _config_value = new
    _threads.enabled = new.propagate_context_to_threads
    if new.enabled:
        _threads.install()
        _ensure_exit_hooks()
    return new


def _on_finished(trace: _buffer.TraceState) -> None:
    if _exited:
        _stats.count("not_exported_at_exit")
    else:
        (_pipeline or pipeline()).enqueue(trace)


def _on_waiting() -> None:
    if not _exited:
        (_pipeline or pipeline()).start()


buffer = _buffer.TraceBuffer(_on_finished, _on_waiting)


def resource(cfg: Config) -> dict[str, Any]:
    """The resource attributes every record carries.

    `service.name` is the configured name, else the program's name (see
    `program_name`), else absent: OpenTelemetry's `unknown_service` would only
    add a meaningless tag to every trace (MLflow stores resource attributes as
    trace tags).
    """
    from tracekit._version import __version__

    attributes: dict[str, Any] = {}
    program = program_name()
    if program:
        attributes["service.name"] = program
    attributes.update(
        {
            "telemetry.sdk.name": "tracekit",
            "telemetry.sdk.language": "python",
            "telemetry.sdk.version": __version__,
        }
    )
    attributes.update(cfg.resource_attributes)
    if cfg.service_name:
        attributes["service.name"] = cfg.service_name
    return attributes


# argv[0] of programs whose name says nothing about the app: interactive or inline
# code, and the launchers of notebook kernels.
_ANONYMOUS_PROGRAMS = frozenset({"", "-", "-c", "ipykernel_launcher", "colab_kernel_launcher"})


def program_name() -> str | None:
    """The running program's name, the default `service.name`: `app` for
    `python app.py`, `pkg` for `python -m pkg`, `uvicorn` for a console script;
    None for an interactive session, `python -c` or a notebook kernel."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", None) or ""
    if name in ("", "__main__", "__mp_main__"):  # not python -m: the script's path
        path = sys.argv[0] if sys.argv else ""
        name = os.path.basename(path).removesuffix(".py")
        if name == "__main__":  # a package's __main__.py (a multiprocessing child of -m)
            name = os.path.basename(os.path.dirname(path))
    name = name.removesuffix(".__main__")
    return None if name in _ANONYMOUS_PROGRAMS else name


def pipeline() -> ExportPipeline:
    """The export pipeline, built on first use."""
    global _pipeline
    with _lock:
        if _pipeline is None:
            from tracekit import _importguard
            from tracekit._pipeline import ExportPipeline

            cfg = config()

            def build() -> Exporter:
                # On the worker: the exporters' package (and what making a record needs)
                # is imported there, under the fork guard, not by the traced call that
                # finished the first trace.
                with _importguard.imports():
                    from tracekit import exporters
                return exporters.build(cfg)

            _pipeline = ExportPipeline(build, cfg, resource(cfg), buffer.sweep)
            _ensure_exit_hooks()
        return _pipeline


def _ensure_exit_hooks() -> None:
    """Make sure this process flushes at exit.

    atexit is registered once per interpreter (a fork inherits it). A
    multiprocessing child ends with os._exit(), which skips atexit, so it
    also gets a multiprocessing finalizer, which its exit function runs.
    multiprocessing clears the finalizers of a child right after it starts
    (for forkserver and spawn children, after the main module, which may
    have configured tracekit, was imported again), then runs its after-fork
    callbacks: one of ours registers the finalizer again. Whether it is
    registered is asked of the finalizer itself, not remembered per pid.
    """
    global _atexit_registered, _finalizer, _mp_hooked
    import logging  # noqa: F401 - at_exit() logs; an exit hook must not import

    if not _atexit_registered:
        import atexit

        atexit.register(at_exit)
        _atexit_registered = True
    if "multiprocessing" in sys.modules:
        from multiprocessing import util

        if _finalizer is None or not _finalizer.still_active():
            _finalizer = util.Finalize(None, at_exit, exitpriority=100)
        if not _mp_hooked:
            util.register_after_fork(_FORK_SENTINEL, _mp_after_fork)
            _mp_hooked = True


def _mp_after_fork(_: object) -> None:
    _ensure_exit_hooks()


class _ForkSentinel:
    """multiprocessing keeps after-fork callbacks in a weak registry: hold one strongly."""


_FORK_SENTINEL = _ForkSentinel()


def configure(overrides: Mapping[str, Any]) -> Config:
    """Merge explicit settings over the current ones and rebuild the pipeline."""
    global _pipeline
    from tracekit import _config

    with _lock:
        new = _apply(_config.merge(config(), overrides))
        old, _pipeline = _pipeline, None
    if old is not None:
        old.shutdown(new.shutdown_timeout)
    return new


def reset(new: Config | None = None) -> None:
    """Replace the configuration wholesale (tests): flush the old pipeline first."""
    global _pipeline, _config_value, _exited
    with _lock:
        old, _pipeline = _pipeline, None
        _config_value = None
        _exited = False
        if new is not None:
            _apply(new)
    if old is not None:
        old.shutdown(5.0)


def flush(timeout: float | None = None) -> bool:
    current = _pipeline
    return True if current is None else current.flush(timeout)


def at_exit() -> None:
    """Deliver what is left within TRACEKIT_SHUTDOWN_TIMEOUT (idempotent)."""
    global _pipeline, _exited
    if _config_value is None or _exited:
        return
    buffer.force_end_all("the process exited before it ended")
    with _lock:
        current, _pipeline = _pipeline, None
        _exited = True
    if current is not None:
        current.shutdown(config().shutdown_timeout)
    dropped = _stats.snapshot()
    if dropped:
        import logging  # imported by _ensure_exit_hooks() already

        logging.getLogger("tracekit").warning("tracekit: dropped during this process: %s", dropped)


def _after_fork_in_child() -> None:
    global _lock, _pipeline
    _lock = threading.RLock()
    _pipeline = None
    buffer.after_fork_in_child()
    _stats.after_fork_in_child()
    if _config_value is not None and "multiprocessing" in sys.modules:
        # multiprocessing may have been imported after tracekit was configured: this
        # registers the after-fork callback that re-registers the finalizer once the
        # child's start-up has cleared it (an inherited one does the same).
        _ensure_exit_hooks()


os.register_at_fork(after_in_child=_after_fork_in_child)
