"""Where a Databricks destination's workspace host and credentials come from.

Two sources: the environment (`DATABRICKS_HOST`, `DATABRICKS_TOKEN`,
`DATABRICKS_CLIENT_ID`, `DATABRICKS_CLIENT_SECRET`) and a profile of the
config file (`DATABRICKS_CONFIG_FILE`, else `~/.databrickscfg`; keys `host`,
`token`, `client_id`, `client_secret`). The profile is the one the URI names
(`databricks://PROFILE`), else `DATABRICKS_CONFIG_PROFILE`, else `[DEFAULT]`.

- `databricks`: the environment first, the profile fills in what it lacks.
- `databricks://PROFILE`: that profile first, the environment fills in.

The host is the first source's host. The credentials are those of the first
source that has complete ones (a token, or a client id with its secret; a
token wins within one source) and that names no host or the same host: a
profile's credentials are never sent to another host. Read when a Databricks
destination is built, never on a hot path; bad values raise ValueError, which
the caller reports in one warning.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from tracekit._config import _env, _float

DEFAULT_MAX_RPS = 40.0  # below the workspace limits Databricks documents (50 and 60 a second)
MAX_RPS_VARIABLE = "TRACEKIT_DATABRICKS_MAX_RPS"
_NO_DEFAULT_SECTION = "\0"  # [DEFAULT] is a profile like the others: nothing is inherited


@dataclass(frozen=True)
class WorkspaceSettings:
    """A Databricks workspace and how to authenticate to it.

    Attributes:
        uri: the destination, `databricks` or `databricks://PROFILE`.
        host: `https://HOST` (an explicit `http://` is kept, for tests).
        token: a personal access token, or None for OAuth.
        client_id: the OAuth client id (when there is no token).
        client_secret: the OAuth secret.
        hint: where the credentials came from, named in 401/403 messages.
        max_rps: the most requests a second sent to the workspace.
        timeout: seconds per request.
    """

    uri: str
    host: str
    token: str | None = field(default=None, repr=False)
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    hint: str = "DATABRICKS_TOKEN"
    max_rps: float = DEFAULT_MAX_RPS
    timeout: float = 10.0


@dataclass(frozen=True)
class _Source:
    host: str | None
    token: str | None = field(default=None, repr=False)
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    token_name: str = "DATABRICKS_TOKEN"  # noqa: S105 - a variable's name, not a secret
    client_names: str = "DATABRICKS_CLIENT_ID/DATABRICKS_CLIENT_SECRET"

    @property
    def complete(self) -> bool:
        return bool(self.token or (self.client_id and self.client_secret))


def normalize_host(raw: str, where: str) -> str:
    """`https://HOST` for a host as users write it (`HOST`, `https://HOST/`, a copied URL)."""
    value = raw.strip()
    if "://" not in value:
        value = "https://" + value
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{where} is not a workspace URL (expected https://HOST)")
    return f"{parts.scheme.lower()}://{parts.netloc.rpartition('@')[2].lower()}"


def config_file(env: Mapping[str, str]) -> Path:
    """DATABRICKS_CONFIG_FILE, else ~/.databrickscfg."""
    found = _env(env, "DATABRICKS_CONFIG_FILE")
    return Path(found[1] if found else "~/.databrickscfg").expanduser()


def _profile_in(uri: str) -> str | None:
    if "://" not in uri:
        return None
    name = uri.split("://", 1)[1].strip().rstrip("/")
    if ":" in name or "/" in name:
        raise ValueError(
            f"expected databricks or databricks://PROFILE, not {uri!r} (MLflow's "
            "databricks://SCOPE:PREFIX secret references are not supported)"
        )
    return name or None


def _from_env(env: Mapping[str, str]) -> _Source:
    def value(name: str) -> str | None:
        found = _env(env, name)
        return found[1] if found else None

    host = value("DATABRICKS_HOST")
    return _Source(
        host=normalize_host(host, "DATABRICKS_HOST") if host else None,
        token=value("DATABRICKS_TOKEN"),
        client_id=value("DATABRICKS_CLIENT_ID"),
        client_secret=value("DATABRICKS_CLIENT_SECRET"),
    )


def _from_profile(path: Path, name: str, explicit: bool) -> _Source | None:
    parser = configparser.ConfigParser(interpolation=None, default_section=_NO_DEFAULT_SECTION)
    try:
        read = parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        # Not the exception's text: a parse error quotes the line, which may hold a token.
        raise ValueError(f"cannot read {path} ({type(exc).__name__})") from None
    if not read or not parser.has_section(name):
        if explicit:
            why = "does not exist or cannot be read" if not read else "has no such profile"
            raise ValueError(f"profile [{name}] not found: {path} {why}")
        return None
    section = parser[name]
    label = f"in profile [{name}] of {path}"

    def value(key: str) -> str | None:
        return (section.get(key) or "").strip() or None

    host = value("host")
    return _Source(
        host=normalize_host(host, f"host {label}") if host else None,
        token=value("token"),
        client_id=value("client_id"),
        client_secret=value("client_secret"),
        token_name=f"token {label}",
        client_names=f"client_id/client_secret {label}",
    )


def workspace_settings(
    uri: str,
    timeout: float,
    env: Mapping[str, str] | None = None,
    recorded_host: str | None = None,
) -> WorkspaceSettings:
    """Settings for `databricks` or `databricks://PROFILE` (raises ValueError when unusable).

    `recorded_host` is the host a spool was meant for: used when nothing else
    names one, and refused when something names another.
    """
    env = os.environ if env is None else env
    named = _profile_in(uri)
    profile_variable = _env(env, "DATABRICKS_CONFIG_PROFILE")
    profile_name = named or (profile_variable[1] if profile_variable else "DEFAULT")
    explicit = named is not None or profile_variable is not None
    environment = _from_env(env)
    path = config_file(env)
    needed = explicit or environment.host is None or not environment.complete
    profile = _from_profile(path, profile_name, explicit) if needed else None
    ordered = [profile, environment] if named else [environment, profile]
    sources = [s for s in ordered if s is not None]
    host = next((s.host for s in sources if s.host), None)
    if recorded_host is not None:
        recorded = normalize_host(recorded_host, "the spool's host")
        if host is not None and host != recorded:
            raise ValueError(
                f"the spooled traces are for {recorded}, but the configuration names {host}; "
                f"set DATABRICKS_HOST={recorded} to deliver them"
            )
        host = recorded
    if host is None:
        raise ValueError(
            f"no workspace host: set DATABRICKS_HOST (or host in profile [{profile_name}] "
            f"of {path})"
        )
    credentials = next((s for s in sources if s.complete and s.host in (None, host)), None)
    if credentials is None:
        raise ValueError(_no_credentials(host, environment, profile, profile_name, path))
    max_rps = _float(env, MAX_RPS_VARIABLE, DEFAULT_MAX_RPS, 0.1, 1000.0)
    if credentials.token:
        return WorkspaceSettings(
            uri, host, token=credentials.token, hint=credentials.token_name, max_rps=max_rps,
            timeout=timeout,
        )  # fmt: skip
    return WorkspaceSettings(
        uri,
        host,
        client_id=credentials.client_id,
        client_secret=credentials.client_secret,
        hint=credentials.client_names,
        max_rps=max_rps,
        timeout=timeout,
    )


def _no_credentials(
    host: str, environment: _Source, profile: _Source | None, name: str, path: Path
) -> str:
    message = (
        f"no credentials for {host}: set DATABRICKS_TOKEN, or DATABRICKS_CLIENT_ID and "
        f"DATABRICKS_CLIENT_SECRET (or token, or client_id and client_secret, in profile "
        f"[{name}] of {path})"
    )
    if bool(environment.client_id) != bool(environment.client_secret):
        present, absent = ("ID", "SECRET") if environment.client_id else ("SECRET", "ID")
        message += f"; DATABRICKS_CLIENT_{present} is set but DATABRICKS_CLIENT_{absent} is not"
    if profile is not None and profile.complete and profile.host not in (None, host):
        message += f"; the credentials of profile [{name}] are for {profile.host}"
    return message
