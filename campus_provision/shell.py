"""Values on their way into a shell command on a PC: quoted by one helper, or checked first.

Every command the checks, the volume operations and the lab send to a PC is read by a
shell there (ssh hands sshd one string; testinfra runs ``sh -c``). So every value from the
spec, the inventory, the command line, a manifest or the PC itself goes into that string
through :func:`quote` (one word) or :func:`join` (a whole argv), even when a spec pattern
already forbids anything a shell would read: the pattern may change, the quoting stays.

A value that must be an IP address (``verify --probe``) is checked as one by
:func:`ip_address`, where it is read and again where it is used.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
from collections.abc import Iterable


def quote(value: str | int | os.PathLike[str]) -> str:
    """``value`` as one shell word, whatever it holds (quotes, ``$(...)``, newlines)."""
    return shlex.quote(os.fspath(value) if isinstance(value, os.PathLike) else str(value))


def join(argv: Iterable[str | int | os.PathLike[str]]) -> str:
    """``argv`` as one command line whose shell words are exactly its items."""
    return " ".join(quote(a) for a in argv)


def ip_address(value: str) -> str:
    """``value`` if it is an IPv4 or IPv6 address (as ipaddress writes it), else ValueError.

    The message is one line naming the value as typed (its control characters escaped).
    """
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise ValueError(f"{value!r}: not an IP address (IPv4 or IPv6)") from None
