"""Feedback and expectations to an MLflow tracking server or Databricks.

`AssessmentExporter` speaks MLflow's assessments REST API (CreateAssessment,
`POST /api/3.0/mlflow/traces/tr-ID/assessments`) and is wrapped like the
trace exporters (retries, circuit breaker, spool). Each assessment carries an
id made by tracekit (`a-<hex>`), which the server keeps: a create that
failed is checked with GetAssessment before it is sent again, so a create
whose answer was lost (a timeout, a dropped connection) is stored once.

A trace the server does not have yet (its batch still on its way) is waited
for: the assessment is retried from the spool for `TRACE_WAIT_S`, then set
aside as refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from urllib.parse import quote

from tracekit._mlflow_json import assessment_body, mlflow_id
from tracekit.exporters._http import HttpClient, result_of, result_of_error
from tracekit.exporters.base import SUCCESS, BaseExporter, ExportResult, TraceRecord

TRACE_WAIT_S = 600.0
SCHEMA = "tracekit.assessment/1"


class AssessmentExporter(BaseExporter):
    """Creates assessment records (`tracekit.assessment/1`) on an MLflow-compatible server."""

    def __init__(self, client: HttpClient, destination: str) -> None:
        self.client = client
        self.destination = destination

    def export(self, traces: Sequence[TraceRecord]) -> ExportResult:
        for record in traces:
            result = self._create(record)
            if not result.ok:
                return result
        return SUCCESS

    def _path(self, record: TraceRecord) -> str:
        return f"/api/3.0/mlflow/traces/{quote(mlflow_id(str(record['trace_id'])))}/assessments"

    def _create(self, record: TraceRecord) -> ExportResult:
        body = json.dumps(assessment_body(record)).encode()
        try:
            response = self.client.request(
                "POST", self._path(record), body, {"Content-Type": "application/json"}
            )
        except Exception as exc:  # the request may have arrived: look before sending again
            return SUCCESS if self._stored(record) else result_of_error(exc, "CreateAssessment")
        if response.ok:
            return SUCCESS
        if response.status == 404 and b"RESOURCE_DOES_NOT_EXIST" in response.body:
            age = time.time() - record.get("create_time_ms", 0) / 1000
            if age < TRACE_WAIT_S:  # its trace is probably still on its way
                return ExportResult(
                    ok=False, retryable=True, message="the trace is not stored yet", status=404
                )
            return ExportResult(
                ok=False,
                status=422,  # refused as such: set aside, not sent again
                message=f"trace {record['trace_id']} not found on {self.destination}",
            )
        if self._stored(record):  # e.g. a retry of a create whose answer was lost
            return SUCCESS
        return result_of(response, "CreateAssessment")

    def _stored(self, record: TraceRecord) -> bool:
        path = f"{self._path(record)}/{quote(str(record['assessment_id']))}"
        try:
            return self.client.request("GET", path).ok
        except Exception:
            return False

    def shutdown(self, timeout: float | None = None) -> None:
        self.client.close()
