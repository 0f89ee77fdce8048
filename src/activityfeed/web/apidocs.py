"""The API reference page (``/api/docs``): Swagger UI, served whole from this process.

FastAPI's own page loads Swagger UI from a CDN and starts it with an inline script; the
CSP (``script-src 'self'``) refuses both, and a machine with no internet has no CDN. Here
the page is static HTML whose scripts and stylesheet are same-origin files: Swagger UI's
own build (shipped in the ``fastapi-offline`` wheel, whose code we do not use) under
``/api/docs/assets`` and our starter, ``/static/api-docs.js``. The page describes the
API and holds no data, so it is public; calls made from it ("Try it out") go through
the API's usual authentication.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from activityfeed.web import auth_policy

PATH = "/api/docs"
ASSETS = f"{PATH}/assets"

PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Activity Feed API</title>
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="{ASSETS}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-spec-url="/api/openapi.json"></div>
<script src="{ASSETS}/swagger-ui-bundle.js"></script>
<script src="/static/api-docs.js"></script>
</body>
</html>
"""


def install(app: FastAPI) -> None:
    """Add the page and its assets to ``app`` (whose ``docs_url`` must be None), as
    FastAPI adds its own: plain routes, outside the API's schema."""
    assets = StaticFiles(packages=[("fastapi_offline", "static")])
    app.router.routes.append(auth_policy.public_mount(ASSETS, assets, name="api_docs_assets"))

    async def api_docs(_: Request) -> HTMLResponse:
        return HTMLResponse(PAGE)

    app.router.routes.append(auth_policy.public_route(PATH, api_docs, name="api_docs"))
