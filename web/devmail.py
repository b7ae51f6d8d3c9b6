"""Dev-only pages (`aisafe dev`): the dev mailbox, which shows every emailed link.

These pages need no sign-in, so each checks the Host header against the configured addresses: through DNS
rebinding, another site's page can reach 127.0.0.1 under its own name, and would otherwise read every link.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from web.mailbox import read_mailbox
from web.pages import templates
from web.rendering import linkify_text
from web.site import allowed_origins, host_allowed


def require_own_host(request: Request) -> None:
    """Refuse a request whose Host header is not one of this app's own addresses."""
    settings = request.app.state.settings
    if not host_allowed(settings, request.headers.get("host")):
        addresses = ", ".join(sorted(allowed_origins(settings)))
        raise HTTPException(403, f"Dev pages answer only at this app's own addresses: {addresses}.")


# Every route here is dev-only: the Host check is on the router, so a route added later cannot miss it.
router = APIRouter(prefix="/dev", dependencies=[Depends(require_own_host)])


@router.get("/mail", response_class=HTMLResponse)
async def dev_mail(request: Request) -> Response:
    items = await asyncio.to_thread(read_mailbox, request.app.state.settings.mail_dir)
    return templates.TemplateResponse(request, "dev_mail.html", {"items": items})


@router.get("/mail/{key}", response_class=HTMLResponse)
async def dev_mail_item(request: Request, key: str) -> Response:
    items = await asyncio.to_thread(read_mailbox, request.app.state.settings.mail_dir)
    item = next((i for i in items if i.key == key), None)
    if item is None:
        raise HTTPException(404, "No such message in the dev mailbox.")
    return templates.TemplateResponse(request, "dev_mail_item.html", {"item": item, "body": linkify_text(item.text)})
