"""Where the ConfigurationManager keeps its data: MemoryBackend or FileBackend."""

from __future__ import annotations

from typing import Any, Protocol

from sipsimple.configuration import ConfigurationError

__all__ = ["ConfigurationBackend", "ConfigurationBackendError"]


class ConfigurationBackendError(ConfigurationError):
    """The backend could not read or write its data.

    `filename` and `lineno` say where, when known.
    """

    def __init__(self, message: str, filename: str | None = None, lineno: int | None = None):
        super().__init__(message)
        self.filename = filename
        self.lineno = lineno


class ConfigurationBackend(Protocol):
    """Loads and saves the whole configuration tree: dicts whose leaves are str,
    list[str] or None. save() may be called from any thread."""

    def load(self) -> dict[str, Any]: ...

    def save(self, data: dict[str, Any]) -> None: ...
