"""`tracekit show ID --html FILE`: the viewer's trace page as one offline file.

The page's script and style are inlined and the record is embedded as JSON in a
`<script type="application/json">` element (every `<` escaped, so no string in a
trace can end that element). A Content-Security-Policy meta tag allows only
those inline blocks, by hash, and no network at all: the file opens offline and
makes no request when it does.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

from tracekit._ui.server import STATIC, to_json

_STYLE_LINK = '<link rel="stylesheet" href="static/app.css">'
_SCRIPT_TAG = '<script src="static/app.js"></script>'


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def render(record: dict[str, Any]) -> str:
    """The self-contained HTML page for one trace record."""
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    style = (STATIC / "app.css").read_text(encoding="utf-8")
    script = (STATIC / "app.js").read_text(encoding="utf-8")
    data = to_json(record).replace("<", "\\u003c").replace("\u2028", "\\u2028")
    policy = (
        f"default-src 'none'; script-src {_hash(script)}; style-src {_hash(style)}; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    head = f'<meta http-equiv="Content-Security-Policy" content="{policy}">\n<style>{style}</style>'
    body = (
        f'<script type="application/json" id="tracekit-data">{data}</script>\n'
        f"<script>{script}</script>"
    )
    if _STYLE_LINK not in page or _SCRIPT_TAG not in page:  # pragma: no cover - packaging bug
        raise RuntimeError("tracekit ui: the page template lost its style or script tag")
    return page.replace(_STYLE_LINK, head).replace(_SCRIPT_TAG, body)


def write(record: dict[str, Any], target: Path) -> None:
    """Write the page for `record` to `target` (UTF-8)."""
    target.write_text(render(record), encoding="utf-8")
