"""What the notifications of an Invitation carry of the message that caused them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from sipsimple.core.sip.message import SIPRequest, SIPResponse

__all__ = ["MessageHeaders", "message_fields"]


def message_fields(message: SIPRequest | SIPResponse) -> dict[str, Any]:
    if isinstance(message, SIPRequest):
        head: dict[str, Any] = {"method": message.method, "request_uri": message.request_uri}
    else:
        head = {"code": message.code, "reason": message.reason}
    head["headers"] = MessageHeaders(message)
    head["body"] = message.body
    return head


class MessageHeaders(Mapping[str, Any]):
    """The ``headers`` of a notification: ``message.header_dict()``, made when first read
    (typing every header of every message costs, and most observers never look)."""

    __slots__ = ("_dict", "_message")

    def __init__(self, message: SIPRequest | SIPResponse) -> None:
        self._message = message
        self._dict: dict[str, Any] | None = None

    def _headers(self) -> dict[str, Any]:
        if self._dict is None:
            self._dict = self._message.header_dict()
        return self._dict

    def __getitem__(self, name: str) -> Any:
        return self._headers()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._headers())

    def __len__(self) -> int:
        return len(self._headers())

    def __repr__(self) -> str:
        return repr(self._headers())

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (self._headers(),))
