"""A configuration backend storing the settings in a JSON file.

The file is pretty-printed with sorted keys so that people can read, diff and edit
it. Hand edits may use JSON booleans and numbers; they are read as their text form
('true', '5060'). Writes are atomic: a temporary file in the same directory is
written, fsync'ed and renamed over the old one, then the directory is fsync'ed; the
file has mode 0600. A file that cannot be read or parsed is reported with its name
and line and is never overwritten by this backend.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
import threading
from typing import Any

from sipsimple.configuration.backend import ConfigurationBackendError

__all__ = ["FileBackend"]


class _Object(dict[str, Any]):
    """A parsed JSON object that remembers names given more than once."""

    duplicates: list[str]


def _object_from_pairs(pairs: list[tuple[str, Any]]) -> _Object:
    result = _Object()
    result.duplicates = []
    for name, value in pairs:
        if name in result:
            result.duplicates.append(name)
        result[name] = value
    return result


def _line_of(text: str, path: tuple[str, ...], occurrence: int = 1) -> int | None:
    """Best-effort line of the name at path (descending through the object names)."""
    position = 0
    for index, part in enumerate(path):
        name = re.compile(re.escape(json.dumps(part, ensure_ascii=False)) + r"\s*:")
        repeat = occurrence if index == len(path) - 1 else 1
        for _ in range(repeat):
            match = name.search(text, position)
            if match is None:
                return None
            position = match.end()
    return text.count("\n", 0, position) + 1


class FileBackend:
    """Stores the configuration in `filename` (its directory is created, mode 0700)."""

    def __init__(self, filename: str | os.PathLike[str]) -> None:
        self.filename = os.path.abspath(os.fspath(filename))
        self._lock = threading.Lock()
        self._loaded = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.filename!r})"

    def load(self) -> dict[str, Any]:
        with self._lock:
            self._loaded = False
            try:
                with open(self.filename, "rb") as file:
                    raw = file.read()
            except FileNotFoundError:
                self._loaded = True
                return {}
            except OSError as error:
                raise ConfigurationBackendError(
                    f"cannot read the configuration file {self.filename}: {error.strerror}",
                    self.filename,
                ) from error
            data = self._parse(raw)
            self._loaded = True
            return data

    def save(self, data: dict[str, Any]) -> None:
        text = json.dumps(data, indent=4, sort_keys=True, ensure_ascii=False) + "\n"
        with self._lock:
            if not self._loaded:
                raise ConfigurationBackendError(
                    f"not writing {self.filename}: it has not been loaded successfully,"
                    " and a file that could not be loaded is never overwritten",
                    self.filename,
                )
            target = os.path.realpath(self.filename)
            directory, name = os.path.split(target)
            try:
                os.makedirs(directory, mode=0o700, exist_ok=True)
                self._replace(target, directory, name, text.encode("utf-8"))
            except OSError as error:
                raise ConfigurationBackendError(
                    f"cannot write the configuration file {self.filename}: {error}",
                    self.filename,
                ) from error

    @staticmethod
    def _replace(target: str, directory: str, name: str, content: bytes) -> None:
        fd, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as file:
                os.fchmod(file.fileno(), 0o600)
                file.write(content)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        directory_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(directory_fd)
        except OSError as error:
            if error.errno not in (errno.EINVAL, errno.ENOTSUP):
                raise
        finally:
            os.close(directory_fd)

    def _error(self, message: str, lineno: int | None) -> ConfigurationBackendError:
        where = self.filename if lineno is None else f"{self.filename}, line {lineno}"
        return ConfigurationBackendError(f"{where}: {message}", self.filename, lineno)

    def _parse(self, raw: bytes) -> dict[str, Any]:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise self._error("not valid UTF-8", raw.count(b"\n", 0, error.start) + 1) from None
        if not text.strip():
            return {}
        try:
            data = json.loads(text, object_pairs_hook=_object_from_pairs)
        except json.JSONDecodeError as error:
            message = f"column {error.colno}: {error.msg} (the file must be JSON)"
            raise self._error(message, error.lineno) from None
        except RecursionError:
            raise self._error("nested too deeply", None) from None
        if not isinstance(data, dict):
            raise self._error("expected a JSON object at the top", 1)
        return self._normalize(data, (), text)

    def _normalize(self, value: Any, path: tuple[str, ...], text: str) -> Any:
        """Leaves as str, list[str] or None; JSON booleans and numbers become text."""
        where = "/".join(path)
        if isinstance(value, dict):
            for name in getattr(value, "duplicates", ()):
                line = _line_of(text, (*path, name), occurrence=2)
                raise self._error(f"{'/'.join((*path, name))} is given more than once", line)
            return {
                name: self._normalize(item, (*path, name), text) for name, item in value.items()
            }
        if isinstance(value, list):
            items = [self._scalar(item) for item in value]
            if any(item is None for item in items):
                message = f"{where}: list items must be strings, numbers or booleans"
                raise self._error(message, _line_of(text, path))
            return items
        if value is None:
            return None
        scalar = self._scalar(value)
        if scalar is None:
            raise self._error(f"{where}: unexpected value {value!r}", _line_of(text, path))
        return scalar

    @staticmethod
    def _scalar(value: Any) -> str | None:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str):
            return value
        if isinstance(value, int | float):
            return str(value)
        return None
