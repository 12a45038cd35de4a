"""The OTLP exporter: OTLP/HTTP to any OpenTelemetry backend.

Collectors, Jaeger, Tempo, Phoenix, Langfuse and MLflow's own `/v1/traces`
accept it. Spans carry the `gen_ai.*` conventions and their inputs and
outputs (see `tracekit.exporters._otlp`). Configured by `otlp` (the standard
`OTEL_EXPORTER_OTLP_*` variables) or `otlp+http(s)://HOST:PORT[/PATH]`.
"""

from __future__ import annotations

from collections.abc import Sequence

from tracekit.exporters import _otlp
from tracekit.exporters._http import HttpClient, result_of, result_of_error
from tracekit.exporters._settings import OtlpSettings
from tracekit.exporters.base import SUCCESS, BaseExporter, ExportResult, TraceRecord
from tracekit.exporters.tracking import EXPERIMENT_HEADER


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
        # Pointed at an MLflow server (its experiment header is set): add what its UI reads.
        self.mlflow = any(k.lower() == EXPERIMENT_HEADER for k in settings.headers)

    @property
    def destination(self) -> str:
        return self.settings.endpoint

    def export(self, traces: Sequence[TraceRecord]) -> ExportResult:
        for chunk in _otlp.chunks(traces, self.max_spans_per_request):
            request = _otlp.to_otlp(chunk, mlflow=self.mlflow)
            body, content_type = _otlp.encode(request, self.settings.protobuf)
            try:
                response = self.client.request(
                    "POST", self.path, body, {"Content-Type": content_type}
                )
            except Exception as exc:  # OSError, HTTPException, TLS errors
                return result_of_error(exc, f"POST {self.path}")
            result = result_of(response, f"POST {self.path}")
            if not result.ok:
                return result
        return SUCCESS

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
