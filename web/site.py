"""The addresses this web app answers as: the origins a sign-in form may come from and the Host headers a
dev-only page answers to.

A page that answers any Host header can be read by another site through DNS rebinding (the attacker's name
re-pointed at 127.0.0.1), and a form that accepts any Origin can be posted from another site: both are
checked against the configured public URL and, in dev mode, the loopback addresses of the dev port.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from models.settings import Settings

_DEFAULT_PORTS = {"http": 80, "https": 443}
_LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


def _origin(scheme: str, host: str, port: int | None) -> str:
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host  # urlsplit drops an IPv6's brackets
    shown = "" if port is None or port == _DEFAULT_PORTS.get(scheme) else f":{port}"
    return f"{scheme}://{host.lower()}{shown}"


def allowed_origins(settings: Settings) -> frozenset[str]:
    """scheme://host[:port] of the public URL (and, in dev mode, of the loopback names of the web port)."""
    public = urlsplit(settings.base_url)
    origins = {_origin(public.scheme.lower(), public.hostname or "", public.port)}
    if settings.dev:
        origins |= {_origin("http", name, settings.web_port) for name in _LOOPBACK}
    return frozenset(origins)


def allowed_hosts(settings: Settings) -> frozenset[str]:
    """The Host header values (host[:port], lower case) of the allowed origins; a default port may be left out."""
    hosts: set[str] = set()
    for origin in allowed_origins(settings):
        parts = urlsplit(origin)
        netloc = parts.netloc
        hosts.add(netloc)
        if parts.port is None:  # the browser may also spell the default port out
            hosts.add(f"{netloc}:{_DEFAULT_PORTS[parts.scheme]}")
    return frozenset(hosts)


def origin_allowed(settings: Settings, origin: str | None) -> bool:
    """Whether an Origin header names this site. A missing or "null" origin is not ours."""
    if not origin or origin == "null":
        return False
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return False
    if parts.path or parts.query or parts.fragment or not parts.hostname or parts.username or parts.password:
        return False
    return _origin(parts.scheme.lower(), parts.hostname, port) in allowed_origins(settings)


def host_allowed(settings: Settings, host: str | None) -> bool:
    """Whether a Host header names this site (exactly, up to case)."""
    return host is not None and host.lower() in allowed_hosts(settings)
