"""The XCAPManager's on-disk state for one account: the documents as the server last
gave them, with their ETags, and the journal of operations not yet applied.

Files live in ``<cache_directory>/<account id>/``: ``documents.json`` (per document
key: auid, ETag, location and the name of its body file), one body file per document,
and ``journal.json``. Every file is written atomically (temporary file, fsync, rename;
mode 0600), so a crash leaves the previous version or the new one, never a mix. A file
that does not parse is kept aside (``.corrupt``) and treated as empty.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from sipsimple.xcap.documents import Operation, StoredDocument
from sipsimple.xcap.model import from_json, to_json

__all__ = ["XCAPCache"]

log = logging.getLogger(__name__)

_VERSION = 1


class XCAPCache:
    """Blocking file I/O: call its methods from a worker thread on the SIP thread."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    # -- documents

    def load_documents(self) -> dict[str, tuple[str, StoredDocument]]:
        """key -> (auid, document) as last saved."""
        index = self._read_json("documents.json")
        if not isinstance(index, dict) or index.get("version") != _VERSION:
            return {}
        result = {}
        for key, entry in index.get("documents", {}).items():
            try:
                content = None
                if entry.get("file"):
                    content = (self.directory / entry["file"]).read_bytes()
                stored = StoredDocument(content, entry.get("etag"), entry.get("location"))
                result[key] = (entry["auid"], stored)
            except (OSError, KeyError, TypeError, AttributeError) as error:
                log.warning("XCAP cache %s: document %s unreadable: %s", self.directory, key, error)
        return result

    def save_documents(self, documents: dict[str, tuple[str, StoredDocument]]) -> None:
        entries = {}
        for key, (auid, stored) in documents.items():
            filename = None
            if stored.content is not None:
                filename = f"{key}.xml"
                self._write(filename, stored.content)
            entries[key] = {
                "auid": auid,
                "etag": stored.etag,
                "location": stored.location,
                "file": filename,
            }
        self._write_json("documents.json", {"version": _VERSION, "documents": entries})
        for path in self.directory.glob("*.xml"):
            if path.stem not in documents or documents[path.stem][1].content is None:
                path.unlink(missing_ok=True)

    # -- journal

    def load_journal(self) -> list[Operation]:
        """The saved operations; one that cannot be read is logged and left out."""
        data = self._read_json("journal.json")
        if not isinstance(data, dict) or data.get("version") != _VERSION:
            return []
        operations = []
        for item in data.get("operations", []):
            try:
                operations.append(
                    Operation(item["name"], from_json(item["args"]), token=str(item["token"]))
                )
            except (KeyError, TypeError, ValueError) as error:
                log.warning("XCAP journal %s: an operation unreadable: %s", self.directory, error)
        return operations

    def save_journal(self, operations: list[Operation]) -> None:
        data = {
            "version": _VERSION,
            "operations": [
                {"name": op.name, "args": to_json(op.args), "token": op.token} for op in operations
            ],
        }
        self._write_json("journal.json", data)

    # -- files

    def _read_json(self, name: str) -> Any:
        path = self.directory / name
        try:
            return json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            log.warning("XCAP cache file %s unreadable: %s", path, error)
            self._set_aside(name)
            return None

    def _write_json(self, name: str, data: Any) -> None:
        self._write(name, json.dumps(data, indent=1, sort_keys=True).encode())

    def _write(self, name: str, content: bytes) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.directory / name
        temporary = path.with_name(f".{name}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(content)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    def _set_aside(self, name: str) -> None:
        path = self.directory / name
        try:
            os.replace(path, path.with_name(f"{name}.corrupt"))
        except OSError:
            pass
