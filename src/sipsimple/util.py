"""Small helpers of the public API (the spec's sipsimple.util)."""

from __future__ import annotations

import ipaddress
from typing import Any as _Any

__all__ = ["All", "Any", "Route"]

_TRANSPORTS = ("udp", "tcp", "tls")


class Route:
    """Where to send SIP requests: an IP address, a port and a transport.

    DNSLookup.lookup_sip_proxy returns these; sessions and the SIP core objects take
    them (or a RouteHeader made from :meth:`get_uri`). The attributes are validated
    whenever they are set.
    """

    def __init__(self, address: str, port: int | None = None, transport: str = "udp") -> None:
        self.address = address
        self.port = port
        self.transport = transport

    @property
    def address(self) -> str:
        """The IPv4 (or IPv6) address, without brackets."""
        return self._address

    @address.setter
    def address(self, value: str) -> None:
        try:
            self._address = str(ipaddress.ip_address(value))
        except ValueError:
            raise ValueError(f"Route address must be an IP address, not {value!r}") from None

    @property
    def port(self) -> int | None:
        """The port, or None for the transport's default port."""
        return self._port

    @port.setter
    def port(self, value: int | None) -> None:
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536
        ):
            raise ValueError(f"Route port must be None or an int in 1..65535, not {value!r}")
        self._port = value

    @property
    def transport(self) -> str:
        """'udp', 'tcp' or 'tls' (given in any case, kept in lower case)."""
        return self._transport

    @transport.setter
    def transport(self, value: str) -> None:
        if not isinstance(value, str) or value.lower() not in _TRANSPORTS:
            raise ValueError(f"Route transport must be one of {_TRANSPORTS}, not {value!r}")
        self._transport = value.lower()

    def get_uri(self) -> _Any:
        """A SIPURI with this address, port and transport parameter, for a RouteHeader."""
        from sipsimple.core import SIPURI  # on use, so that importing util never loads the core

        host = f"[{self.address}]" if ":" in self.address else self.address
        return SIPURI(host=host, port=self.port, parameters={"transport": self.transport})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Route):
            return NotImplemented
        return (self.address, self.port, self.transport) == (
            other.address,
            other.port,
            other.transport,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Route(address={self.address!r}, port={self.port!r}, transport={self.transport!r})"


class _Marker:
    """A named singleton value (see All and Any)."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __reduce__(self) -> str:
        return self._name


All = _Marker("All")
"""Everything of a kind (e.g. XCAP PresencePolicy.provide_devices: every device)."""

Any = _Marker("Any")
"""No constraint (e.g. Policy.check_validity's sphere: whatever the sphere)."""
