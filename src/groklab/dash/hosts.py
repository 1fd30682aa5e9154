"""Which addresses the dashboard binds and which ``Host`` headers it answers.

Bound to loopback, the server is reachable only from this machine, but a web page on another
site can still make the browser send requests to it by pointing a DNS name of its own at
127.0.0.1 (DNS rebinding); such a request carries that name in its ``Host`` header. So the
header is parsed as RFC 9110 writes it (a name or an IPv4 address, or an IPv6 address in
brackets, then optionally ``:`` and port digits, nothing around) and must name the address
actually served: ``127.0.0.1:8765`` or ``localhost`` for a server on 127.0.0.1, never
``[::1].evil.com``, ``localhost:evil.com`` or a folded `` localhost``. The port is not compared:
a tunnel (``ssh -L 9000:localhost:8765``) makes the browser send its own.
"""
from __future__ import annotations

import ipaddress
import re

HOST_HEADER = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]{1,5})?")
LOCALHOST_ADDRS = ("127.0.0.1", "::1")  # what browsers resolve "localhost" to (RFC 6761)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address as given on the command line) is this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def served_names(bound: str) -> frozenset[str]:
    """The ``Host`` names (lower case, IPv6 in brackets) of a server bound to the loopback
    address ``bound`` (as the socket reports it)."""
    names = {f"[{bound}]" if ":" in bound else bound}
    if bound in LOCALHOST_ADDRS:
        names.add("localhost")
    return frozenset(names)


def host_ok(values: list[str], names: frozenset[str]) -> bool:
    """Whether the request's ``Host`` header (``values``: every one it sent) is exactly one of
    ``names``, with or without a port."""
    if len(values) != 1:
        return False
    m = HOST_HEADER.fullmatch(values[0])
    return m is not None and m.group(1).lower() in names
