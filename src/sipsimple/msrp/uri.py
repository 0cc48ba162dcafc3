"""MSRP URIs (RFC 4975 section 6): ``msrp[s]://[user@]host[:port][/session-id];transport``."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from functools import cached_property
from urllib.parse import unquote

from sipsimple.msrp.errors import MSRPParseError

__all__ = ["DEFAULT_PORT", "MSRPURI"]

DEFAULT_PORT = 2855
"""The port an MSRP URI without one is reached on (RFC 4975 section 6.2)."""

_URI_RE = re.compile(
    r"""
    (?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://
    (?:(?P<user>[^@/;\[\]\s]*)@)?
    (?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,=]+)
    (?::(?P<port>[0-9]{1,5}))?
    (?:/(?P<session_id>[A-Za-z0-9\-._~+=/%!$&'()*,:@]+))?
    ;(?P<params>.*)
    """,
    re.VERBOSE | re.DOTALL,
)
_HOST_RE = re.compile(r"[0-9A-Fa-f:.]+|[A-Za-z0-9\-._~%!$&'()*+,=]+")
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_SCHEMES = ("msrp", "msrps")


@dataclass(frozen=True, eq=False)
class MSRPURI:
    """One MSRP URI.

    Equality and hashing follow RFC 4975 section 6.1: the scheme, host and transport
    compare case-insensitively, the session-id case-sensitively, the user part and
    the other parameters are ignored, and a URI with an explicit port never equals
    one without (``effective_port`` gives the port to connect to).

    The text and the comparison key are computed once: every chunk of a session
    writes and compares the same few URIs.
    """

    host: str
    port: int | None = None
    session_id: str | None = None
    transport: str = "tcp"
    use_tls: bool = False
    user: str | None = None
    parameters: dict[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _HOST_RE.fullmatch(self.host):
            raise MSRPParseError(f"invalid MSRP URI host {self.host!r}")
        if self.port is not None and not 0 < self.port < 65536:
            raise MSRPParseError(f"MSRP URI port {self.port} is out of range 1-65535")
        if not _TOKEN_RE.fullmatch(self.transport):
            raise MSRPParseError(f"invalid MSRP URI transport {self.transport!r}")

    @property
    def scheme(self) -> str:
        return "msrps" if self.use_tls else "msrp"

    @property
    def effective_port(self) -> int:
        return DEFAULT_PORT if self.port is None else self.port

    @classmethod
    def parse(cls, text: str) -> MSRPURI:
        """Parse one URI; raises MSRPParseError saying what is wrong."""
        match = _URI_RE.fullmatch(text)
        if match is None:
            raise MSRPParseError(f"invalid MSRP URI {text!r}")
        scheme = match["scheme"].lower()
        if scheme not in _SCHEMES:
            raise MSRPParseError(f"MSRP URI scheme must be msrp or msrps, not {scheme!r}")
        transport, *rest = match["params"].split(";")
        parameters: dict[str, str | None] = {}
        for item in rest:
            name, sep, value = item.partition("=")
            if not _TOKEN_RE.fullmatch(name) or (sep and not _TOKEN_RE.fullmatch(value)):
                raise MSRPParseError(f"invalid parameter {item!r} in MSRP URI {text!r}")
            parameters[name] = value if sep else None
        host = match["host"]
        if host.startswith("["):
            try:
                ipaddress.IPv6Address(host[1:-1])
            except ValueError:
                raise MSRPParseError(f"invalid IPv6 address in MSRP URI {text!r}") from None
            host = host[1:-1]
        return cls(
            host=host,
            port=int(match["port"]) if match["port"] else None,
            session_id=match["session_id"],
            transport=transport,
            use_tls=scheme == "msrps",
            user=match["user"],
            parameters=parameters,
        )

    def __str__(self) -> str:
        return self._text

    @cached_property
    def _text(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        parts = [self.scheme, "://"]
        if self.user is not None:
            parts += [self.user, "@"]
        parts.append(host)
        if self.port is not None:
            parts.append(f":{self.port}")
        if self.session_id is not None:
            parts.append(f"/{self.session_id}")
        parts.append(f";{self.transport}")
        for name, value in self.parameters.items():
            parts.append(f";{name}" if value is None else f";{name}={value}")
        return "".join(parts)

    def __repr__(self) -> str:
        return f"MSRPURI({str(self)!r})"

    @cached_property
    def _key(self) -> tuple[object, ...]:
        host = unquote(self.host).lower()
        try:
            address: object = ipaddress.ip_address(host)
        except ValueError:
            address = host
        return (self.use_tls, address, self.port, self.session_id, self.transport.lower())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MSRPURI):
            return NotImplemented
        return self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)
