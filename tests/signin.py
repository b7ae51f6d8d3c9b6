"""Signing in as a browser does: open the sign-in form (which sets its pre-session cookie), then post it with
this site's Origin and the form's token."""

from __future__ import annotations

import re

import httpx

from models.settings import Settings
from web.codec import own_origin

CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


async def signin_form_token(http: httpx.AsyncClient, next_path: str = "/") -> str:
    form = await http.get("/signin", params={"next": next_path})
    assert form.status_code == 200, form.text[:300]
    found = CSRF_FIELD.search(form.text)
    assert found is not None, "the sign-in form carries no token"
    return found.group(1)


async def sign_in(http: httpx.AsyncClient, settings: Settings, token: str, next_path: str = "/") -> httpx.Response:
    csrf = await signin_form_token(http, next_path)
    return await http.post(
        "/signin",
        data={"token": token, "next": next_path, "csrf": csrf},
        headers={"Origin": own_origin(settings.base_url)},
    )
