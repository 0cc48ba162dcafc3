"""The message summary document (RFC 3842, application/simple-message-summary): what
a voicemail server tells a subscriber in the NOTIFYs of the message-summary event.

It looks like a block of headers::

    Messages-Waiting: yes
    Message-Account: sip:alice@vmail.example.com
    Voice-Message: 2/8 (0/2)

    To: <sip:alice@example.com>
    From: <sip:bob@example.com>
    Subject: call me back

The status line comes first; a Message-Account and one summary line per message
context class (RFC 3458) may follow; after a blank line, blocks of optional message
headers describe individual messages. Lines may be folded (SIP rules: a line that
starts with whitespace continues the previous one) and names are case-insensitive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = [
    "MESSAGE_CONTEXT_CLASSES",
    "MESSAGE_SUMMARY_CONTENT_TYPE",
    "MessageCounts",
    "MessageSummary",
    "MessageSummaryParseError",
]

MESSAGE_SUMMARY_CONTENT_TYPE = "application/simple-message-summary"
MESSAGE_CONTEXT_CLASSES = (
    "voice-message",
    "fax-message",
    "pager-message",
    "multimedia-message",
    "text-message",
    "none",
)
"""The message context classes of RFC 3458 (summary line names, in lower case)."""

_MAX_COUNT = 2**32 - 1  # RFC 3842 section 5.2: a count MUST NOT exceed 2^32-1
_MAX_SIZE = 64 * 1024
_COUNT = r"([0-9]{1,10})"
_COUNTS = re.compile(
    rf"{_COUNT}[ \t]*/[ \t]*{_COUNT}(?:[ \t]*\([ \t]*{_COUNT}[ \t]*/[ \t]*{_COUNT}[ \t]*\))?"
)
_NAME = re.compile(r"[!%'*+\-.0-9A-Z_`a-z~]+")  # an RFC 3261 token


class MessageSummaryParseError(ValueError):
    """A message summary document that could not be parsed."""


@dataclass(frozen=True, slots=True)
class MessageCounts:
    """The counts of one message context class: new and old messages, and how many of
    each are urgent."""

    new_messages: int
    old_messages: int
    new_urgent_messages: int = 0
    old_urgent_messages: int = 0

    def __post_init__(self) -> None:
        for name in self.__slots__:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, not {value!r}")
            if value > _MAX_COUNT:
                raise ValueError(f"{name} must not exceed 2^32-1, got {value}")

    def __str__(self) -> str:
        text = f"{self.new_messages}/{self.old_messages}"
        if self.new_urgent_messages or self.old_urgent_messages:
            text += f" ({self.new_urgent_messages}/{self.old_urgent_messages})"
        return text


@dataclass(slots=True)
class MessageSummary:
    """A parsed message summary.

    ``summaries`` maps a message context class (lower case, e.g. ``"voice-message"``)
    to its :class:`MessageCounts`; ``message_account`` is the URI of the mailbox the
    summary is about (None when not given); ``optional_headers`` holds one list of
    ``(name, value)`` pairs per described message.
    """

    messages_waiting: bool = False
    message_account: str | None = None
    summaries: dict[str, MessageCounts] = field(default_factory=dict)
    optional_headers: list[list[tuple[str, str]]] = field(default_factory=list)

    @classmethod
    def parse(cls, data: bytes | str) -> MessageSummary:
        """Parse a document; MessageSummaryParseError says what is wrong."""
        if isinstance(data, bytes):
            if len(data) > _MAX_SIZE:
                raise MessageSummaryParseError(f"document larger than {_MAX_SIZE} bytes")
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as e:
                raise MessageSummaryParseError(f"not UTF-8: {e}") from None
        elif isinstance(data, str):
            text = data
        else:
            raise TypeError(f"expected bytes or str, not {type(data).__name__}")
        if len(text) > _MAX_SIZE:
            raise MessageSummaryParseError(f"document larger than {_MAX_SIZE} characters")
        blocks = _blocks(text)
        if not blocks:
            raise MessageSummaryParseError("empty document: the Messages-Waiting line is missing")
        summary = cls()
        summary._read_summary(blocks[0])
        summary.optional_headers = [block for block in blocks[1:] if block]
        return summary

    def _read_summary(self, lines: list[tuple[str, str]]) -> None:
        name, value = lines[0]
        if name.lower() != "messages-waiting":
            raise MessageSummaryParseError(f"the first line must be Messages-Waiting, not {name}")
        status = value.lower()
        if status not in ("yes", "no"):
            raise MessageSummaryParseError(f"Messages-Waiting must be yes or no, not {value!r}")
        self.messages_waiting = status == "yes"
        for name, value in lines[1:]:
            key = name.lower()
            if key == "message-account":
                if not value:
                    raise MessageSummaryParseError("empty Message-Account")
                self.message_account = value
            elif key in MESSAGE_CONTEXT_CLASSES:
                self.summaries[key] = _counts(name, value)
            elif key == "messages-waiting":
                raise MessageSummaryParseError("more than one Messages-Waiting line")
            # other lines of the first block are extensions we do not know: ignored

    def build(self) -> bytes:
        """The document as bytes (CRLF line ends)."""
        lines = [f"Messages-Waiting: {'yes' if self.messages_waiting else 'no'}"]
        if self.message_account is not None:
            lines.append(f"Message-Account: {self.message_account}")
        for name, counts in self.summaries.items():
            if name not in MESSAGE_CONTEXT_CLASSES:
                raise ValueError(f"unknown message context class {name!r}")
            lines.append(f"{name.title()}: {counts}")
        for block in self.optional_headers:
            lines.append("")
            lines.extend(f"{name}: {value}" for name, value in block)
        return ("\r\n".join(lines) + "\r\n").encode()


def _blocks(text: str) -> list[list[tuple[str, str]]]:
    """Blocks of (name, value) lines separated by blank lines, folded lines joined."""
    blocks: list[list[tuple[str, str]]] = [[]]
    for raw in re.split(r"\r\n|\n|\r", text):
        if not raw.strip():
            if blocks[-1]:
                blocks.append([])
            continue
        if raw[0] in " \t":
            if not blocks[-1]:
                raise MessageSummaryParseError(f"continuation line without a header: {raw!r}")
            name, value = blocks[-1][-1]
            blocks[-1][-1] = (name, f"{value} {raw.strip()}".strip())
            continue
        name, colon, value = raw.partition(":")
        name = name.strip()
        if not colon or _NAME.fullmatch(name) is None:
            raise MessageSummaryParseError(f"not a 'name: value' line: {raw!r}")
        blocks[-1].append((name, value.strip()))
    if not blocks[-1]:
        blocks.pop()
    return blocks


def _counts(name: str, value: str) -> MessageCounts:
    match = _COUNTS.fullmatch(value)
    if match is None:
        raise MessageSummaryParseError(f"{name}: expected new/old [(new/old)], got {value!r}")
    numbers = [int(group) if group is not None else 0 for group in match.groups()]
    try:
        return MessageCounts(*numbers)
    except ValueError as e:
        raise MessageSummaryParseError(f"{name}: {e}") from None
