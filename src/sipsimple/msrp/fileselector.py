"""The SDP ``file-selector`` attribute of RFC 5547 (file transfer over MSRP)."""

from __future__ import annotations

import hashlib
import mimetypes
import os
import re
from typing import IO, Any
from urllib.parse import unquote_to_bytes

from sipsimple.msrp.errors import MSRPParseError

__all__ = ["FileSelector"]

_SELECTOR_RE = re.compile(
    r"""
    name:"(?P<name>[^"]*)"
    | size:(?P<size>[0-9]+)
    | type:(?P<type>[^\s";]+(?:;[^\s=";]+="[^"]*")*)
    | hash:(?P<algorithm>[A-Za-z0-9\-]+):(?P<digest>[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2})*)
    | (?P<other>(?!(?:name|size|type|hash):)[A-Za-z0-9\-]+:(?:"[^"]*"|\S)*)
    """,
    re.VERBOSE,
)
_HASH_ALIASES = {"sha1": "sha-1"}
_ESCAPED = {"%": "%25", '"': "%22", "\r": "%0D", "\n": "%0A", "\0": "%00"}


class FileSelector:
    """What a file transfer is about: ``name`` (a base name), MIME ``type``,
    ``size`` in bytes and ``hash`` as ``sha-1:XX:XX:...`` (upper-case hex).

    ``fd`` is a file the application already opened; ``path`` the local file a
    selector made by for_file() describes.
    """

    def __init__(
        self,
        name: str | None = None,
        type: str | None = None,
        size: int | None = None,
        hash: str | None = None,
        fd: IO[bytes] | None = None,
        *,
        path: str | None = None,
    ) -> None:
        if size is not None and size < 0:
            raise ValueError(f"file size cannot be negative: {size}")
        self.name = name
        self.type = type
        self.size = size
        self.hash = hash
        self.fd = fd
        self.path = path

    @classmethod
    def parse(cls, string: str) -> FileSelector:
        """Parse the value of an ``a=file-selector`` attribute (unknown selectors are ignored)."""
        text = string.strip()
        for prefix in ("a=file-selector:", "file-selector:"):
            if text.startswith(prefix):
                text = text[len(prefix) :]
        values: dict[str, Any] = {}
        position = 0
        while position < len(text):
            if text[position] == " ":
                position += 1
                continue
            match = _SELECTOR_RE.match(text, position)
            end = match.end() if match is not None else -1
            if match is None or (end < len(text) and text[end] != " "):
                raise MSRPParseError(f"invalid file-selector {string!r} at {text[position:]!r}")
            position = end
            if match["name"] is not None:
                try:
                    values["name"] = unquote_to_bytes(match["name"]).decode()
                except UnicodeDecodeError:
                    raise MSRPParseError(f"file-selector name is not UTF-8: {string!r}") from None
            elif match["size"] is not None:
                values["size"] = int(match["size"])
            elif match["type"] is not None:
                values["type"] = match["type"]
            elif match["algorithm"] is not None:
                algorithm = match["algorithm"].lower()
                algorithm = _HASH_ALIASES.get(algorithm, algorithm)
                values["hash"] = f"{algorithm}:{match['digest'].upper()}"
        return cls(**values)

    @classmethod
    def for_file(
        cls,
        path: str | os.PathLike[str],
        content_type: str | None = None,
        compute_hash: bool = True,
    ) -> FileSelector:
        """Describe an existing file.  With ``compute_hash`` this reads the whole file:
        it blocks, so call it off the event loop."""
        path = os.fspath(path)
        size = os.stat(path).st_size
        if content_type is None:
            content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        digest = None
        if compute_hash:
            sha1 = hashlib.sha1()
            with open(path, "rb") as file:
                while block := file.read(1 << 20):
                    sha1.update(block)
            digest = "sha-1:" + sha1.digest().hex(":").upper()
        return cls(os.path.basename(path), content_type, size, digest, path=path)

    @property
    def sdp_repr(self) -> str:
        """The value of the ``a=file-selector`` attribute describing this file."""
        items = []
        if self.name is not None:
            name = "".join(_ESCAPED.get(c, c) for c in os.path.basename(self.name))
            items.append(f'name:"{name}"')
        if self.type is not None:
            items.append(f"type:{self.type}")
        if self.size is not None:
            items.append(f"size:{self.size}")
        if self.hash is not None:
            items.append(f"hash:{self.hash}")
        return " ".join(items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FileSelector):
            return NotImplemented
        return (self.name, self.type, self.size, self.hash) == (
            other.name,
            other.type,
            other.size,
            other.hash,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"FileSelector(name={self.name!r}, type={self.type!r}, size={self.size!r}, "
            f"hash={self.hash!r})"
        )
