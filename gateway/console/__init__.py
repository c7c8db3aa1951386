"""The merchant console (`/console`): server-rendered pages over Laoke's own API, in Chinese or English.

Pages are Jinja2 templates with a little htmx (live progress, previews) and Chart.js, both vendored
under `static/vendor` so the console works offline. See docs/console.md.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from gateway.console import activities, campaigns, customers, groups, loyalty, operations, segments
from gateway.console.base import HERE, PageError, SignedOut, redirect, render
from gateway.console.session import router as session_router


def install(app: FastAPI) -> None:
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")
    for module in (
        session_router,
        customers.router,
        segments.router,
        groups.router,
        loyalty.router,
        activities.router,
        campaigns.router,
    ):
        app.include_router(module, include_in_schema=False)
    app.include_router(operations.router, include_in_schema=False)

    @app.exception_handler(SignedOut)
    async def signed_out(request: Request, exc: SignedOut) -> Response:
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": "/console/login"})
        return redirect("/console/login")

    @app.exception_handler(PageError)
    async def page_error(request: Request, exc: PageError) -> Response:
        status = exc.answer.status if exc.answer.status >= 400 else 502
        return render(request, "error.html", status_code=status, message=exc.answer.error)
