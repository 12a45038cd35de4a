"""The OTLP exporter: OTLP/HTTP to any OpenTelemetry backend.

Collectors, Jaeger, Tempo, Phoenix, Langfuse and MLflow's own `/v1/traces`
accept it. Spans carry the `gen_ai.*` conventions and their inputs and
outputs (see `tracekit.exporters._otlp`). Configured by `otlp` (the standard
`OTEL_EXPORTER_OTLP_*` variables) or `otlp+http(s)://HOST:PORT[/PATH]`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from tracekit.exporters import _otlp
from tracekit.exporters._http import HttpClient, result_of, result_of_error
from tracekit.exporters._settings import OtlpSettings
from tracekit.exporters.base import SUCCESS, BaseExporter, ExportResult, TraceRecord
from tracekit.exporters.tracking import EXPERIMENT_HEADER

logger = logging.getLogger("tracekit")
_ENCODING = {True: "http/protobuf", False: "http/json"}
_NAME = {"http/protobuf": "OTLP/protobuf", "http/json": "OTLP/JSON"}


class OtlpExporter(BaseExporter):
    """POSTs batches of spans to an OTLP/HTTP traces endpoint.

    Example:
        from tracekit.exporters.otlp import OtlpExporter, settings_for
        tracekit.configure(exporter=OtlpExporter(settings_for("otlp+http://127.0.0.1:4318")))
    """

    def __init__(self, settings: OtlpSettings, max_spans_per_request: int = 1000) -> None:
        self.settings = settings
        origin, path = _split_endpoint(settings.endpoint)
        self.path = path
        self.client = HttpClient(
            origin,
            timeout=settings.timeout,
            headers=dict(settings.headers),
            tls=settings.tls,
            gzip_requests=settings.gzip,
        )
        self.max_spans_per_request = max_spans_per_request
        # Protobuf unless asked for JSON; flipped once if the receiver refuses it (415).
        self.protobuf = settings.protobuf
        # Pointed at an MLflow server (its experiment header is set): add what its UI reads.
        self.mlflow = any(k.lower() == EXPERIMENT_HEADER for k in settings.headers)

    @property
    def destination(self) -> str:
        return self.settings.endpoint

    def export(self, traces: Sequence[TraceRecord]) -> ExportResult:
        for chunk in _otlp.chunks(traces, self.max_spans_per_request):
            request = _otlp.to_otlp(chunk, mlflow=self.mlflow)
            result = self._post(request, self.protobuf)
            if result.status == 415:
                result = self._other_encoding(request)
            if not result.ok:
                return result
        return SUCCESS

    def _post(self, request: dict[str, Any], protobuf: bool) -> ExportResult:
        body, content_type = _otlp.encode(request, protobuf)
        try:
            response = self.client.request("POST", self.path, body, {"Content-Type": content_type})
        except Exception as exc:  # OSError, HTTPException, TLS errors
            return result_of_error(exc, f"POST {self.path}")
        return result_of(response, f"POST {self.path}")

    def _other_encoding(self, request: dict[str, Any]) -> ExportResult:
        """The receiver refused the encoding (415: Phoenix takes only protobuf, some
        bridges only JSON): send the other one, and keep it if it is taken."""
        refused, other = _ENCODING[self.protobuf], _ENCODING[not self.protobuf]
        result = self._post(request, not self.protobuf)
        if result.status is None and not result.ok:  # no answer (network): try again later
            return result
        if result.status != 415:  # taken (or refused for another reason): it is understood
            self.protobuf = not self.protobuf
            logger.warning(
                "tracekit: %s refused %s (HTTP 415); sending %s from now on "
                "(set OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=%s to say so)",
                self.destination, _NAME[refused], _NAME[other], other,
            )  # fmt: skip
            return result
        # Neither encoding: not an OTLP/HTTP traces endpoint. Not the batch's fault (no
        # status: it is kept, not set aside) but the configuration's.
        return replace(
            result,
            status=None,
            message=f"POST {self.path}: HTTP 415 for both OTLP/protobuf and OTLP/JSON: not an "
            "OTLP/HTTP traces endpoint? Check OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (or the "
            "otlp+http://HOST:PORT/PATH destination)",
        )

    def shutdown(self, timeout: float | None = None) -> None:
        self.client.close()


def _split_endpoint(endpoint: str) -> tuple[str, str]:
    """Origin and path of the traces URL; a URL without a path means `/` (the OTLP spec's
    rule for OTEL_EXPORTER_OTLP_TRACES_ENDPOINT; the other forms always carry a path)."""
    scheme, _, rest = endpoint.partition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme}://{host}", "/" + path if slash else "/"


def settings_for(uri: str) -> OtlpSettings:
    """OtlpSettings for a destination URI, from the environment."""
    from tracekit.exporters._settings import otlp_settings

    return otlp_settings(uri, _otlp.protobuf_available())
