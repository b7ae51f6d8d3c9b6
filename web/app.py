"""The FastAPI application: wiring and health (the dev mailbox is in web.devmail)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import Client

from models.db import init_db, make_engine
from models.membership import keep_admitted, load_admitted
from models.settings import Settings
from models.temporal_client import connect
from web.actions import router as action_router
from web.audit import router as audit_router
from web.auth import READERS, require_role
from web.auth import install as install_auth
from web.auth import router as auth_router
from web.codec import CodecCors, own_origin
from web.codec import router as codec_router
from web.comments import router as comment_router
from web.dashboard import router as dashboard_router
from web.devmail import router as dev_router
from web.headers import SecurityHeaders
from web.observability import install as install_observability
from web.pages import error_page, templates, unavailable_page

HERE = Path(__file__).parent
# Idle keep-alive connections stay open longer than a reverse proxy keeps its own (nginx: 60 s), so a
# request never goes out on a connection the app has just closed (uvicorn's default is 5 s).
KEEP_ALIVE_SECONDS = 75
__all__ = ["create_app", "error_page", "templates"]


def create_app(settings: Settings, client: Client | None = None) -> FastAPI:
    """The app; `client` is connected at startup when not given (tests and `aisafe dev` pass theirs)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.engine = make_engine(settings.sqlalchemy_url)
        init_db(app.state.engine)
        load_admitted(app.state.engine)  # links and records naming a state admitted as data
        app.state.client = client or await connect(settings)
        refresh = asyncio.create_task(keep_admitted(app.state.engine))  # and those admitted since
        yield
        refresh.cancel()
        app.state.engine.dispose()

    app = FastAPI(title="aisafe", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(action_router)
    app.include_router(comment_router)
    app.include_router(auth_router)
    app.include_router(audit_router, dependencies=[Depends(require_role(*READERS))])
    app.include_router(codec_router)
    app.include_router(dashboard_router)
    app.add_middleware(CodecCors, origins=settings.ui_origin_list, own_origin=own_origin(settings.base_url))
    app.add_middleware(SecurityHeaders)
    install_auth(app)
    install_observability(app, settings)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error_page(request, exc.status_code, "Not found" if exc.status_code == 404 else "Error", str(exc.detail))

    @app.exception_handler(OperationalError)
    async def _database_down(request: Request, exc: OperationalError) -> Response:
        # The database is unreachable (or locked past its timeout): say so and ask for a retry, never a 500.
        return unavailable_page(request, "This page could not be shown")

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> Response:
        return error_page(request, 400, "Bad request", "The request was incomplete or malformed.")

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    if settings.dev:
        app.include_router(dev_router)

    return app
