"""Message/CPIM (RFC 3862): the envelope chat messages travel in over MSRP.

A CPIM message is a block of message headers (From, To, cc, DateTime, Subject,
NS, Require and namespaced extension headers), a blank line, then an
encapsulated MIME object: content headers, a blank line and the body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

__all__ = [
    "CPIM_CONTENT_TYPE",
    "STANDARD_NAMESPACE",
    "CPIMHeader",
    "CPIMIdentity",
    "CPIMNamespace",
    "CPIMParseError",
    "CPIMPayload",
]

CPIM_CONTENT_TYPE = "message/cpim"
STANDARD_NAMESPACE = "urn:ietf:params:cpim-headers:"
"""The namespace of the headers RFC 3862 defines (and of unprefixed headers)."""


class CPIMParseError(ValueError):
    """A Message/CPIM body that could not be parsed; the message says where."""


@dataclass(frozen=True, slots=True)
class CPIMNamespace:
    """A header namespace; ``prefix`` is what its headers are written with."""

    uri: str
    prefix: str | None = None


@dataclass(frozen=True, slots=True)
class CPIMHeader:
    """An extension header: ``name`` in ``namespace`` (the standard one by default)."""

    name: str
    value: str
    namespace: CPIMNamespace = CPIMNamespace(STANDARD_NAMESPACE)


_ESCAPES = {'"': '"', "\\": "\\", "'": "'", "b": "\b", "t": "\t", "n": "\n", "r": "\r"}
_ESCAPE_RE = re.compile(r"\\(u[0-9A-Fa-f]{4}|.)", re.DOTALL)
_IDENTITY_RE = re.compile(
    r'\s*(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<plain>[^<"]*?))\s*<(?P<uri>[^<>\s]+)>\s*'
)
_HEADER_RE = re.compile(
    r"(?:(?P<prefix>[^\s.:;]+)\.)?(?P<name>[^\s.:;]+):(?P<params>(?:;[^\s;]+)*) (?P<value>.*)",
    re.DOTALL,
)
_NS_RE = re.compile(r"(?:(?P<prefix>[^\s<]+) )?<(?P<uri>[^<>\s]+)>")
_NAME_RE = re.compile(r"[!#$%&'*+\-^_`|~A-Za-z0-9]+")


def _unescape(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        escape = match[1]
        if escape[0] == "u" and len(escape) == 5:
            return chr(int(escape[1:], 16))
        if escape not in _ESCAPES:
            raise CPIMParseError(f"invalid escape \\{escape} in {text!r}")
        return _ESCAPES[escape]

    return _ESCAPE_RE.sub(replace, text)


def _quote(text: str) -> str:
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


@dataclass(frozen=True, slots=True)
class CPIMIdentity:
    """``"Display Name" <uri>`` in From, To and cc."""

    uri: str
    display_name: str | None = None

    @classmethod
    def parse(cls, text: str) -> CPIMIdentity:
        match = _IDENTITY_RE.fullmatch(text)
        if match is None:
            raise CPIMParseError(f"invalid CPIM identity {text!r}")
        if match["quoted"] is not None:
            name: str | None = _unescape(match["quoted"])
        else:
            name = match["plain"] or None
        return cls(match["uri"], name)

    def __str__(self) -> str:
        if self.display_name:
            return f"{_quote(self.display_name)} <{self.uri}>"
        return f"<{self.uri}>"


def _check_value(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError(f"CPIM header {name} cannot contain a line break: {value!r}")
    return value


@dataclass(slots=True)
class CPIMPayload:
    """One Message/CPIM body.

    ``content`` given as ``str`` is encoded with ``charset`` (UTF-8 by default);
    decoded payloads hold the body bytes as received, ``text`` decodes them.
    ``content_type`` is the media type with its parameters other than charset.
    ``subject`` is the Subject without a language, ``subject_translations`` maps
    language tags to the others.  ``content_headers`` are the other MIME headers
    of the encapsulated object (Content-ID, Content-Disposition, ...).
    """

    content: bytes | str
    content_type: str
    charset: str | None = None
    sender: CPIMIdentity | None = None
    recipients: list[CPIMIdentity] = field(default_factory=list)
    courtesy_recipients: list[CPIMIdentity] = field(default_factory=list)
    subject: str | None = None
    subject_translations: dict[str, str] = field(default_factory=dict)
    timestamp: datetime | None = None
    required: list[str] = field(default_factory=list)
    additional_headers: list[CPIMHeader] = field(default_factory=list)
    content_headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def body(self) -> bytes:
        if isinstance(self.content, str):
            return self.content.encode(self.charset or "utf-8")
        return self.content

    @property
    def text(self) -> str:
        """The body decoded with its charset (UTF-8 when none is given)."""
        if isinstance(self.content, str):
            return self.content
        try:
            return self.content.decode(self.charset or "utf-8")
        except (UnicodeDecodeError, LookupError) as error:
            raise CPIMParseError(f"body is not valid {self.charset or 'utf-8'}: {error}") from None

    # -- encoding --------------------------------------------------------------------

    def encode(self) -> bytes:
        lines: list[str] = []
        prefixes: dict[str, str | None] = {STANDARD_NAMESPACE: None}
        for header in self.additional_headers:
            namespace = header.namespace
            if namespace.uri in prefixes:
                continue
            if not namespace.prefix or not _NAME_RE.fullmatch(namespace.prefix):
                raise ValueError(f"namespace {namespace.uri} needs a valid prefix")
            prefixes[namespace.uri] = namespace.prefix
            lines.append(f"NS: {namespace.prefix} <{namespace.uri}>")
        if self.sender is not None:
            lines.append(f"From: {self.sender}")
        lines.extend(f"To: {identity}" for identity in self.recipients)
        lines.extend(f"cc: {identity}" for identity in self.courtesy_recipients)
        if self.timestamp is not None:
            if self.timestamp.tzinfo is None:
                raise ValueError("the CPIM DateTime needs a timezone-aware datetime")
            lines.append(f"DateTime: {self.timestamp.isoformat()}")
        if self.subject is not None:
            lines.append(f"Subject: {_check_value('Subject', self.subject)}")
        for language, text in self.subject_translations.items():
            if not _NAME_RE.fullmatch(language):
                raise ValueError(f"invalid language tag {language!r}")
            lines.append(f"Subject:;lang={language} {_check_value('Subject', text)}")
        if self.required:
            lines.append("Require: " + ",".join(self.required))
        for header in self.additional_headers:
            if not _NAME_RE.fullmatch(header.name):
                raise ValueError(f"invalid CPIM header name {header.name!r}")
            prefix = prefixes[header.namespace.uri]
            name = header.name if prefix is None else f"{prefix}.{header.name}"
            lines.append(f"{name}: {_check_value(name, header.value)}")
        content_type = self.content_type
        if self.charset is not None or isinstance(self.content, str):
            content_type += f"; charset={self.charset or 'utf-8'}"
        content_lines = [f"Content-Type: {content_type}"]
        for name, value in self.content_headers:
            content_lines.append(f"{name}: {_check_value(name, value)}")
        head = "\r\n".join(lines) + "\r\n\r\n" + "\r\n".join(content_lines) + "\r\n\r\n"
        return head.encode() + self.body

    # -- decoding --------------------------------------------------------------------

    @classmethod
    def decode(cls, data: bytes) -> CPIMPayload:
        message_headers, rest = _split_block(data, "message headers")
        content_headers, body = _split_block(rest, "content headers")
        payload = cls(content=body, content_type="")
        payload._decode_message_headers(message_headers)
        payload._decode_content_headers(content_headers)
        return payload

    def _decode_message_headers(self, lines: list[str]) -> None:
        namespaces: dict[str | None, str] = {None: STANDARD_NAMESPACE}
        for line in lines:
            match = _HEADER_RE.fullmatch(line)
            if match is None:
                raise CPIMParseError(f"invalid CPIM header line {line!r}")
            prefix, name, params, value = match.group("prefix", "name", "params", "value")
            if prefix not in namespaces:
                raise CPIMParseError(f"header {prefix}.{name} uses an undeclared prefix")
            uri = namespaces[prefix]
            if uri != STANDARD_NAMESPACE:
                self.additional_headers.append(CPIMHeader(name, value, CPIMNamespace(uri, prefix)))
                continue
            if name == "NS":
                declaration = _NS_RE.fullmatch(value)
                if declaration is None:
                    raise CPIMParseError(f"invalid NS header {value!r}")
                namespaces[declaration["prefix"]] = declaration["uri"]
            elif name == "From":
                self.sender = CPIMIdentity.parse(value)
            elif name == "To":
                self.recipients.append(CPIMIdentity.parse(value))
            elif name == "cc":
                self.courtesy_recipients.append(CPIMIdentity.parse(value))
            elif name == "DateTime":
                self.timestamp = _parse_datetime(value)
            elif name == "Subject":
                language = _language(params)
                if language is None:
                    self.subject = value
                else:
                    self.subject_translations[language] = value
            elif name == "Require":
                self.required.extend(item.strip() for item in value.split(",") if item.strip())
            else:
                self.additional_headers.append(CPIMHeader(name, value))

    def _decode_content_headers(self, lines: list[str]) -> None:
        for line in lines:
            name, sep, value = line.partition(":")
            if not sep or not _NAME_RE.fullmatch(name):
                raise CPIMParseError(f"invalid content header line {line!r}")
            value = value.strip()
            if name.lower() != "content-type":
                self.content_headers.append((name, value))
                continue
            media, *params = (item.strip() for item in value.split(";"))
            if "/" not in media:
                raise CPIMParseError(f"invalid Content-Type {value!r}")
            kept = []
            for param in params:
                key, _, param_value = param.partition("=")
                if key.strip().lower() == "charset":
                    self.charset = param_value.strip().strip('"')
                elif param:
                    kept.append(param)
            self.content_type = "; ".join([media, *kept])
        if not self.content_type:
            raise CPIMParseError("encapsulated MIME object without a Content-Type")


def _split_block(data: bytes, what: str) -> tuple[list[str], bytes]:
    match = re.search(rb"\r?\n\r?\n", data)
    if match is None:
        raise CPIMParseError(f"no blank line after the {what}")
    try:
        text = data[: match.start()].decode()
    except UnicodeDecodeError:
        raise CPIMParseError(f"{what} are not UTF-8") from None
    lines = [line.rstrip("\r") for line in text.split("\n")] if text else []
    return lines, data[match.end() :]


def _language(params: str) -> str | None:
    for param in params.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.lower() == "lang" and value:
            return value
    return None


def _parse_datetime(value: str) -> datetime:
    try:
        timestamp = datetime.fromisoformat(value.strip())
    except ValueError:
        raise CPIMParseError(f"invalid DateTime {value!r}") from None
    if timestamp.tzinfo is None:
        raise CPIMParseError(f"DateTime {value!r} has no timezone")
    return timestamp
