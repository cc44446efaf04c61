"""The demo page and the operator page: self-contained HTML files (inline CSS and JS, no CDNs), given the
server's limits; and the favicon."""

from __future__ import annotations

import json
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from capbot.web.context import WebContext

CONFIG_PLACEHOLDER = "__CAPBOT_PAGE_CONFIG__"
# The page is the only thing a browser loads: forbid everything else, so no third-party script or image can run.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' blob: data: http: https:; "
    "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def page_config(ctx: WebContext) -> dict:
    """What the page needs to draw its controls: defaults and limits of the generation options."""
    defaults = ctx.default_options
    return {
        "beams": defaults.num_beams, "maxTokens": defaults.max_new_tokens, "alternatives": defaults.num_alternatives,
        "maxBeams": ctx.config.max_beams, "maxMaxTokens": ctx.config.max_new_tokens,
        "maxImageBytes": ctx.config.max_image_bytes, "needsKey": bool(ctx.config.api_keys),
        "lowConfidence": ctx.core.low_confidence,
    }


def operator_config(ctx: WebContext) -> dict:
    """What the operator page needs: whether any key opens it, and the registry poll it may mention."""
    return {"operatorOn": bool(ctx.config.admin_keys), "lowConfidence": ctx.core.low_confidence}


def render_page(ctx: WebContext, name: str = "index.html", config: dict | None = None) -> str:
    """A page from static/ with its configuration embedded as JSON (escaped so it cannot close the script
    element)."""
    template = resources.files("capbot").joinpath(f"static/{name}").read_text(encoding="utf-8")
    embedded = json.dumps(page_config(ctx) if config is None else config).replace("<", "\\u003c")
    return template.replace(CONFIG_PLACEHOLDER, embedded)


def page_router(ctx: WebContext) -> APIRouter:
    """`GET /`: the demo page; `GET /operator`: the operator's view; the favicon."""
    router = APIRouter()
    headers = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff"}
    icon = resources.files("capbot").joinpath("static/favicon.svg").read_bytes()

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(render_page(ctx), headers=headers)

    @router.get("/operator", response_class=HTMLResponse, include_in_schema=False)
    def operator_page() -> HTMLResponse:
        return HTMLResponse(render_page(ctx, "operator.html", operator_config(ctx)), headers=headers)

    @router.get("/favicon.svg", include_in_schema=False)
    @router.get("/favicon.ico", include_in_schema=False)  # browsers ask for it unprompted; SVG is what they get
    def favicon() -> Response:
        return Response(icon, media_type="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"})

    return router
