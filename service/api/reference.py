"""``/schema``: the API reference as one self-contained HTML page, offline too.

Litestar's OpenAPI pages (Swagger UI, ReDoc, Scalar…) load their scripts from a CDN, so
without internet ``/schema`` was a blank page. This one is rendered on the server from the
same OpenAPI document, with no script, font or image from anywhere: each operation with
its method, path, summary, description, parameters and answers, grouped by tag, and links
to ``/schema/openapi.json`` (the document itself) and ``/schema/swagger`` (interactive,
when the CDN is reachable).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from html import escape
from typing import Any

from litestar import Request
from litestar.enums import ScopeType
from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.types import ASGIApp, Message, Receive, Scope, Send

_METHODS = ("get", "post", "put", "patch", "delete")

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 60em;
       padding: 0 1em; color: #1d1d1f; }
code { font: 13px ui-monospace, monospace; }
h2 { margin-top: 2em; border-bottom: 1px solid #ccc; text-transform: capitalize; }
section { margin: 1.2em 0; padding-left: 0.8em; border-left: 3px solid #ddd; }
h3 { font-size: 1em; margin: 0; }
.method { display: inline-block; min-width: 4.2em; font-weight: bold; }
.key { color: #666; font-weight: normal; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.4em 0; }
td, th { text-align: left; vertical-align: top; padding: 0.1em 0.8em 0.1em 0; }
th { font-weight: 600; color: #555; }
p { margin: 0.4em 0; }
"""


class ReferencePage(OpenAPIRenderPlugin):
    """The OpenAPI document as a plain HTML page (Litestar's render-plugin interface)."""

    def __init__(self, path: str = "/") -> None:
        # No favicon link: Litestar's default points at a CDN.
        super().__init__(path=path, favicon="", style=f"<style>{_STYLE}</style>")

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        info = openapi_schema.get("info", {})
        document = self.get_openapi_json_route(request)
        base = document.rsplit("/", 1)[0]
        title = f"{info.get('title', 'API')} {info.get('version', '')}".strip()
        parts = [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{escape(title)} API reference</title>",
            self.favicon,
            self.style,
            "</head><body>",
            f"<h1>{escape(title)} API reference</h1>",
            f"<p>{escape(info.get('description', ''))}</p>",
            f'<p>The OpenAPI document: <a href="{escape(document)}">{escape(document)}</a> '
            "(for code generators and API clients). Interactive: "
            f'<a href="{escape(base)}/swagger">{escape(base)}/swagger</a> (Swagger UI, which '
            "loads its scripts from a CDN: it needs internet access).</p>",
            "<p>Operations marked <em>key</em> need <code>Authorization: Bearer &lt;API "
            "key&gt;</code> of a scope that allows them (<code>luc keys create</code>).</p>",
        ]
        for tag, operations in _by_tag(openapi_schema.get("paths", {})).items():
            parts.append(f"<h2>{escape(tag)}</h2>")
            parts.extend(_operation(method, path, op) for method, path, op in operations)
        parts.append("</body></html>")
        return "\n".join(parts).encode()


def _by_tag(paths: dict[str, Any]) -> dict[str, list[tuple[str, str, dict[str, Any]]]]:
    grouped: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, item in sorted(paths.items()):
        for method in _METHODS:
            operation = item.get(method)
            if isinstance(operation, dict):
                tag = (operation.get("tags") or ["other"])[0]
                grouped.setdefault(tag, []).append((method, path, operation))
    return grouped


def _operation(method: str, path: str, operation: dict[str, Any]) -> str:
    key = ' <span class="key">key</span>' if operation.get("security") else ""
    lines = [
        f'<section id="{escape(operation.get("operationId", ""))}">',
        f'<h3><code><span class="method">{method.upper()}</span>{escape(path)}</code>{key}</h3>',
        f"<p><strong>{escape(operation.get('summary', ''))}</strong></p>",
    ]
    if description := operation.get("description"):
        lines.append(f"<p>{_text(description)}</p>")
    parameters = [
        (
            f"<code>{escape(p.get('name', ''))}</code>",
            escape(p.get("in", "")) + (", required" if p.get("required") else ""),
            _text(p.get("description", "")),
        )
        for p in operation.get("parameters", [])
    ]
    if parameters:
        lines.append(_table(("parameter", "in", ""), parameters))
    if body := operation.get("requestBody"):
        lines.append(
            f"<p>Body: {escape(', '.join(body.get('content', {})))}"
            f"{'. ' + escape(body['description']) if body.get('description') else ''}</p>"
        )
    answers = [
        (f"<code>{escape(status)}</code>", escape(answer.get("description", "")), "")
        for status, answer in sorted(operation.get("responses", {}).items())
    ]
    if answers:
        lines.append(_table(("answer", "", ""), answers))
    lines.append("</section>")
    return "\n".join(lines)


def _text(markdown: str) -> str:
    """Escaped text, with the descriptions' `code` spans as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(markdown))


def _table(headings: tuple[str, str, str], rows: Iterable[tuple[str, str, str]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in headings)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


SCHEMA_PATHS = frozenset({"/schema", "/schema/"})
DOCUMENT_PATH = "/schema/openapi.json"


def schema_by_accept(app: ASGIApp) -> ASGIApp:
    """``app`` (Litestar's handler, which routes), with ``GET /schema`` answered by the
    OpenAPI document itself (``/schema/openapi.json``) unless the client asks for HTML: a
    browser gets this page, a client reading the document where SPEC §5 serves it
    (``GET /schema``, Accept ``*/*`` or JSON) gets the JSON it can read."""

    async def negotiating(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["path"] not in SCHEMA_PATHS:
            await app(scope, receive, send)
            return
        if not _wants_html(scope["headers"]):
            scope["path"] = DOCUMENT_PATH
            scope["raw_path"] = DOCUMENT_PATH.encode()

        async def varying(message: Message) -> None:
            # One URL, two bodies by Accept: a shared cache must keep them apart.
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"vary", b"accept")]
            await send(message)

        await app(scope, receive, varying)

    return negotiating


_HTML = frozenset({"text/html", "application/xhtml+xml"})
_JSON = frozenset({"application/json", "application/vnd.oai.openapi+json"})


def _wants_html(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether the Accept header prefers HTML to JSON: names HTML with a weight above 0
    and at least that of any JSON type it names (a browser's does; ``application/json,
    text/html;q=0.1`` or ``text/html;q=0`` does not)."""
    weights: dict[str, float] = {}
    for name, value in headers:
        if name.lower() != b"accept":
            continue
        for item in value.decode("latin-1").lower().split(","):
            kind, *params = (part.strip() for part in item.split(";"))
            weight = 1.0
            for param in params:
                key, _, number = param.partition("=")
                if key.strip() == "q":
                    try:
                        weight = float(number)
                    except ValueError:
                        weight = 0.0
            weights[kind] = max(weight, weights.get(kind, 0.0))
    html = max((weights.get(k, 0.0) for k in _HTML), default=0.0)
    json = max((weights.get(k, 0.0) for k in _JSON), default=0.0)
    return html > 0 and html >= json
