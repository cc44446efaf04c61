"""The demo page: one self-contained HTML file (inline CSS and JS, no CDNs), given the server's limits."""

from __future__ import annotations

import json
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

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
    }


def render_page(ctx: WebContext) -> str:
    """index.html with the configuration embedded as JSON (escaped so it cannot close the script element)."""
    template = resources.files("capbot").joinpath("static/index.html").read_text(encoding="utf-8")
    config = json.dumps(page_config(ctx)).replace("<", "\\u003c")
    return template.replace(CONFIG_PLACEHOLDER, config)


def page_router(ctx: WebContext) -> APIRouter:
    """`GET /`: the demo page."""
    router = APIRouter()

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(render_page(ctx), headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY,
                                                       "X-Content-Type-Options": "nosniff"})

    return router
