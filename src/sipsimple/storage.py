"""Where an application keeps its data: settings and, later, other state (XCAP cache,
file transfer state). SIPApplication starts the ConfigurationManager with
`storage.configuration_backend`."""

from __future__ import annotations

import os

from sipsimple.configuration.backend.file import FileBackend
from sipsimple.configuration.backend.memory import MemoryBackend

__all__ = ["FileStorage", "MemoryStorage"]


class FileStorage:
    """Data under a directory (created with mode 0700): settings in `directory`/config."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = os.path.abspath(os.path.expanduser(os.fspath(directory)))
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        self.configuration_backend = FileBackend(os.path.join(self.directory, "config"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.directory!r})"


class MemoryStorage:
    """Data in memory only; `directory` is None."""

    def __init__(self) -> None:
        self.directory: str | None = None
        self.configuration_backend = MemoryBackend()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
