"""Databricks: the MLflow REST API of a workspace, with workspace authentication.

`databricks` or `databricks://PROFILE` is a `TrackingServerExporter` on the
workspace host (see `tracking.py`), with

- a personal access token (`DATABRICKS_TOKEN`, or `token` in a profile) sent
  as a bearer token, or OAuth machine-to-machine (`DATABRICKS_CLIENT_ID` and
  `DATABRICKS_CLIENT_SECRET`, or `client_id`/`client_secret` in a profile):
  `OAuthToken` gets a token with the client-credentials grant at the
  workspace's `/oidc/v1/token` (scope `all-apis`), caches it and gets the
  next one shortly before it expires, so many traces cost one token request;
- a `RateLimiter` on every request to the workspace (`TRACEKIT_DATABRICKS_MAX_RPS`,
  default 40 a second), below the workspace's documented limits; batching
  keeps the number of requests small in the first place, and the delivery
  wrappers (`remote.build`) honour `429`/`503` and `Retry-After`.

Where the host and credentials come from is decided by `_workspace.py`.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from urllib.parse import urlencode

from tracekit._config import Config
from tracekit.exporters._http import (
    AuthError,
    HttpClient,
    RateLimiter,
    TLSOptions,
    result_of,
    result_of_error,
)
from tracekit.exporters._workspace import WorkspaceSettings, workspace_settings
from tracekit.exporters.base import ExportResult
from tracekit.exporters.tracking import TrackingServerExporter

__all__ = ["OAuthToken", "WorkspaceSettings", "direct", "workspace_settings"]

TOKEN_PATH = "/oidc/v1/token"  # noqa: S105 - a path, not a secret
DEFAULT_LIFETIME_S = 3600.0  # when the token endpoint does not say (`expires_in`)
RETRY_REFRESH_S = 5.0  # after a failed refresh, while the cached token is still valid


class OAuthToken:
    """An OAuth access token from the client-credentials grant, cached until shortly
    before it expires (thread-safe). An `Auth` for `HttpClient`.

    The next token is fetched when a request finds the cached one within
    `min(60 s, 10% of its lifetime)` of expiry. If that fetch fails, the old
    token is used while it is still valid, and the fetch is tried again 5 s
    later. A 401 from the API drops the token that was refused, so the next
    request fetches one (never more than one fetch per request, so a refused
    token cannot cause a loop).

    Args:
        host: the workspace, `https://HOST`.
        client_id: the service principal's client id.
        client_secret: its OAuth secret (never logged).
        hint: what to check when the token endpoint refuses, for the message.
        timeout: seconds per token request.
        tls: how to verify the workspace.
        clock: monotonic seconds (tests pass a fake one).
    """

    def __init__(
        self,
        host: str,
        client_id: str,
        client_secret: str,
        hint: str = "DATABRICKS_CLIENT_ID/DATABRICKS_CLIENT_SECRET",
        timeout: float = 10.0,
        tls: TLSOptions | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = host + TOKEN_PATH
        self.hint = hint
        self._client = HttpClient(host, timeout=timeout, tls=tls or TLSOptions())
        pair = f"{client_id}:{client_secret}".encode()
        self._basic = "Basic " + base64.b64encode(pair).decode("ascii")
        self._secret = client_secret
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = self._expires_at = 0.0

    def headers(self) -> dict[str, str]:
        with self._lock:
            now = self._clock()
            if self._token is None or now >= self._refresh_at:
                try:
                    self._fetch()
                except AuthError:
                    if self._token is None or now >= self._expires_at:
                        raise
                    # The cached token is still valid: use it, and try again in a while.
                    self._refresh_at = min(now + RETRY_REFRESH_S, self._expires_at)
            return {"Authorization": "Bearer " + str(self._token)}

    def rejected(self, headers: dict[str, str]) -> None:
        with self._lock:
            if self._token is not None and headers.get("Authorization") == "Bearer " + self._token:
                self._token = None

    def close(self) -> None:
        self._client.close()

    def _fetch(self) -> None:
        body = urlencode({"grant_type": "client_credentials", "scope": "all-apis"}).encode()
        headers = {
            "Authorization": self._basic,
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        what = f"OAuth token request to {self.url}"
        started = self._clock()
        try:
            response = self._client.request("POST", TOKEN_PATH, body, headers)
        except Exception as exc:  # OSError, HTTPException, TLS errors
            raise AuthError(self._hidden(result_of_error(exc, what))) from exc
        finally:
            self._client.close()  # one request an hour or so: keep no connection open
        result = result_of(response, what)
        if not result.ok:
            if response.status in (400, 401, 403):
                result = replace(result, message=f"{result.message} (check {self.hint})")
            raise AuthError(self._hidden(result))
        try:
            answer = json.loads(response.body)
            token = str(answer["access_token"])
            lifetime = max(1.0, float(answer.get("expires_in") or DEFAULT_LIFETIME_S))
        except (ValueError, KeyError, TypeError) as exc:
            raise AuthError(
                ExportResult(ok=False, message=f"{what}: no access_token in the answer ({exc!r})")
            ) from exc
        self._token = token
        self._expires_at = started + lifetime
        self._refresh_at = self._expires_at - min(60.0, lifetime / 10)

    def _hidden(self, result: ExportResult) -> ExportResult:
        """The result without the secret, should the endpoint have echoed it."""
        if self._secret and self._secret in result.message:
            return replace(result, message=result.message.replace(self._secret, "<hidden>"))
        return result


def client_for(settings: WorkspaceSettings) -> HttpClient:
    """An `HttpClient` for the workspace: its credentials, paced at `settings.max_rps`."""
    headers: dict[str, str] = {}
    auth = None
    if settings.token is not None:
        headers["Authorization"] = "Bearer " + settings.token
    else:
        assert settings.client_id is not None
        assert settings.client_secret is not None
        auth = OAuthToken(
            settings.host,
            settings.client_id,
            settings.client_secret,
            hint=settings.hint,
            timeout=settings.timeout,
        )
    return HttpClient(
        settings.host,
        timeout=settings.timeout,
        headers=headers,
        auth=auth,
        pacer=RateLimiter(settings.max_rps),
    )


def direct(
    uri: str, config: Config, recorded_host: str | None = None
) -> tuple[TrackingServerExporter, str, str | None]:
    """The bare exporter for `databricks[://PROFILE]`, the workspace host and the experiment.

    `recorded_host` is the host a spool was meant for (`tracekit upload`).
    Raises ValueError when the host, the credentials or the experiment are missing.
    """
    settings = workspace_settings(uri, config.export_timeout, os.environ, recorded_host)
    experiment = config.experiment_id or config.experiment_name
    if experiment is None:
        raise ValueError(
            "no experiment: set TRACEKIT_EXPERIMENT_ID or TRACEKIT_EXPERIMENT_NAME (or "
            "MLFLOW_EXPERIMENT_ID or MLFLOW_EXPERIMENT_NAME; on Databricks a name is a "
            "workspace path such as /Shared/my-app)"
        )
    exporter = TrackingServerExporter(
        client_for(settings),
        experiment_id=config.experiment_id,
        experiment_name=config.experiment_name,
        auth_hint=settings.hint,
        # One request per batch, not one more per trace: a workspace allows ~60 per second.
        trace_info="metadata",
    )
    return exporter, settings.host, experiment
