"""Which image URLs pfsync may fetch: https on public addresses only (SSRF policy).

Every hop of a download, redirects included, is checked here before a
connection is made. ``PF_MEDIA_ALLOW_PRIVATE_HOSTS`` (sandbox and tests only)
lifts the address check and allows plain http.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit, urlunsplit

from pfsync_app.deadline import os_error_text
from pfsync_app.exceptions import DownloadAttemptFailed

#: What the first refusal that PF_MEDIA_ALLOW_PRIVATE_HOSTS would lift adds, once per run.
PRIVATE_HOSTS_HINT = (
    "the setting PF_MEDIA_ALLOW_PRIVATE_HOSTS = True (or the variable "
    "PF_MEDIA_ALLOW_PRIVATE_HOSTS=true, where settings.py reads the environment) allows plain "
    "http and private addresses: "
    "for the sandbox only, never in production"
)

# Cloud metadata endpoints are refused by name as well, whatever else they are.
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)


def safe_url(url: str) -> str:
    """``url`` without credentials, query string or fragment, fit for messages and logs."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return url.split("?", 1)[0].split("#", 1)[0].rsplit("@", 1)[-1]
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _why_not_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why ``address`` is not a public internet address, or None when it is."""
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv6 address can carry an IPv4 one; judge the one that would be reached.
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo or (None, None))[1]
        if embedded is not None:
            return _why_not_public(embedded)
    checks = (
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_unspecified", "an unspecified address"),
        ("is_reserved", "a reserved address"),
        ("is_private", "a private address"),
    )
    for attribute, description in checks:
        if getattr(address, attribute):
            return description
    if not address.is_global:
        return "not a public address"
    return None


def _resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise DownloadAttemptFailed(
            "connection", f"cannot resolve host {host}: {os_error_text(exc)}"
        ) from exc
    return [str(info[4][0]).split("%", 1)[0] for info in infos]


def require_allowed_url(url: str, allow_private_hosts: bool) -> None:
    """Raise DownloadAttemptFailed("blocked_url") if policy refuses ``url``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise DownloadAttemptFailed("blocked_url", f"not a valid URL ({exc})") from exc
    allowed_schemes = ("http", "https") if allow_private_hosts else ("https",)
    if parts.scheme not in allowed_schemes:
        raise DownloadAttemptFailed(
            "blocked_url",
            f"scheme {parts.scheme or '(none)'!r} is not {' or '.join(allowed_schemes)}",
            private_host=parts.scheme == "http",
        )
    if not host:
        raise DownloadAttemptFailed("blocked_url", "the URL has no host")
    if allow_private_hosts:
        return
    # requests resolves the name again to connect; a DNS server answering
    # differently within that moment is not covered (pinning the checked address
    # would defeat TLS host-name checks), but the common cases are.
    try:
        ipaddress.ip_address(host)
    except ValueError:
        addresses = _resolve(host, port or 443)
    else:
        addresses = [host]
    if not addresses:
        raise DownloadAttemptFailed("connection", f"host {host} resolves to no address")
    for text in addresses:
        why = _why_not_public(ipaddress.ip_address(text))
        if why is not None:
            shown = host if text == host else f"{host} ({text})"
            raise DownloadAttemptFailed("blocked_url", f"{shown} is {why}", private_host=True)
