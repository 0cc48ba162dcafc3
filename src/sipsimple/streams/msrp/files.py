"""Received files on disk: safe names in the download directory, never overwriting
anything, and partial files that an interrupted transfer leaves for a later one to
resume.

While a file arrives its data goes to ``<name>.part`` with ``<name>.part.json`` beside
it (the offered name, size, type and hash, and how many leading bytes are on disk);
its disk blocks are allocated when it opens, where Linux can (see ``_reserve``).
Once complete and matching its hash it takes its name in the directory (a hard link,
see move_unique), with `` (1)``, `` (2)``... before the extension when that name is
taken. A later transfer of a file with the same hash and size finds the partial file
and resumes after its leading bytes.

Everything here blocks on the disk or hashes: the streams run it in a worker thread
(:func:`sipsimple.threading.run_in_worker`), one operation at a time per file.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import sys
import tempfile
import threading
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sipsimple.msrp import ByteRanges

__all__ = [
    "METADATA_SUFFIX",
    "PARTIAL_SUFFIX",
    "FileHashMismatchError",
    "IncomingFile",
    "PartialFile",
    "find_partial",
    "move_unique",
    "safe_name",
    "sha1_selector_hash",
]

PARTIAL_SUFFIX = ".part"
METADATA_SUFFIX = ".part.json"
_NAME_LIMIT = 200  # bytes of UTF-8, leaving room for " (123).part.json" under 255
_HASH_BLOCK = 1 << 20
_SAVE_EVERY = 16 << 20
_IOV_MAX = 1024  # buffers one pwritev() takes at most (Linux, BSD)

_in_use: set[Path] = set()  # partial files some transfer of this process is writing
_in_use_lock = threading.Lock()


class FileHashMismatchError(Exception):
    """The received data does not have the hash the sender announced."""


def sha1_selector_hash(digest: bytes) -> str:
    """A SHA-1 digest the way a file-selector writes it (``sha-1:AB:CD:...``)."""
    return "sha-1:" + digest.hex(":").upper()


def safe_name(name: str | None) -> str:
    """A file name from a peer made safe for the download directory: no directory
    part, no control characters, no leading dots, not empty, at most 200 bytes."""
    text = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(c for c in text if unicodedata.category(c)[0] != "C")
    text = text.strip().lstrip(".").strip()
    if not text:
        text = "file"
    stem, dot, extension = text.rpartition(".")
    if not dot or not stem or len(extension.encode()) > 32:
        stem, extension = text, ""
    suffix = f".{extension}" if extension else ""
    limit = _NAME_LIMIT - len(suffix.encode())
    encoded = stem.encode()
    if len(encoded) > limit:
        stem = encoded[:limit].decode("utf-8", "ignore").rstrip() or "file"
    return stem + suffix


def _candidates(name: str) -> Iterator[str]:
    yield name
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem:
        stem, extension = name, ""
    suffix = f".{extension}" if extension else ""
    for number in range(1, 10000):
        yield f"{stem} ({number}){suffix}"
    raise FileExistsError(f"no free name for {name!r}")


def _create(path: Path) -> bool:
    """Create ``path`` empty; False when something (a file, a link) is there already."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def _link(source: Path, path: Path) -> bool | None:
    """Give ``source`` the new name ``path``: False when ``path`` exists, None when
    the file system has no hard links."""
    try:
        os.link(source, path)
    except FileExistsError:
        return False
    except OSError as error:
        if error.errno in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            return None
        raise
    return True


def _find_fallocate() -> Callable[[int, int, int, int], int] | None:
    # Linux's fallocate(), not posix_fallocate(): that one changes the file's size and,
    # where the file system cannot allocate, writes zeros over the whole range instead.
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    for name in ("fallocate64", "fallocate"):  # a 64-bit offset on every libc
        function = getattr(libc, name, None)
        if function is not None:
            function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
            function.restype = ctypes.c_int
            return function  # type: ignore[no-any-return]
    return None


_fallocate = _find_fallocate()
_FALLOC_FL_KEEP_SIZE = 1


def _reserve(fd: int, offset: int, length: int) -> None:
    """Allocate the disk blocks of the bytes still to come, leaving the file's size
    alone (a partial file still ends where its data does).  Writes into allocated
    blocks skip ext4's delayed allocation: about a third less CPU per byte written.
    Only a hint: where it cannot be done, or the disk has not twice the room, the
    writes allocate as usual.  A file kept partial gives back what it did not use
    (``_unreserve``)."""
    if _fallocate is None or length <= 0:
        return
    disk = os.fstatvfs(fd)
    if length <= disk.f_bavail * disk.f_frsize // 2:
        _fallocate(fd, _FALLOC_FL_KEEP_SIZE, offset, length)  # a failure changes nothing


def _unreserve(fd: int) -> None:
    """Free the blocks allocated past the end of the file (truncating it to its own
    size does that)."""
    if _fallocate is not None:
        try:
            os.ftruncate(fd, os.fstat(fd).st_size)
        except OSError:
            pass  # the blocks stay reserved until the file is resumed or removed


def _pwrite_all(fd: int, views: list[memoryview], offset: int) -> None:
    """Write all of ``views`` at ``offset``, as pwritev() does, also when it writes less."""
    first = 0
    while first < len(views):
        batch = views[first : first + _IOV_MAX]
        written = os.pwritev(fd, batch, offset)
        if not written and any(batch):
            raise OSError(f"pwritev() wrote nothing at offset {offset}")
        offset += written
        while first < len(views) and written >= len(views[first]):
            written -= len(views[first])
            first += 1
        if written:
            views[first] = views[first][written:]


def move_unique(source: Path, directory: Path, name: str) -> Path:
    """Move ``source`` to the first free one of ``name``, ``name (1)``... in
    ``directory`` (the same file system), never replacing a file; the name must be a
    plain file name (see safe_name).

    A hard link takes the free name and the source name is then removed: renaming onto
    a placeholder instead would replace an existing file, which makes ext4 (its
    auto_da_alloc) allocate and start writing the whole file at once, tens of
    milliseconds for 100 MB.  Without hard links the placeholder it is."""
    for candidate in _candidates(name):
        path = directory / candidate
        if path.parent != directory:
            raise ValueError(f"{name!r} is not a plain file name")
        linked = _link(source, path)
        if linked:
            os.unlink(source)
            return path
        if linked is None and _create(path):
            os.replace(source, path)
            return path
    raise AssertionError("unreachable")


@dataclass
class PartialFile:
    """A partial file and what its metadata says; ``offset`` bytes are usable."""

    path: Path
    metadata_path: Path
    name: str
    size: int
    hash: str
    content_type: str | None
    offset: int


def _read_metadata(metadata_path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(metadata_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("offset"), int):
        return None
    return data


def find_partial(directory: Path, file_hash: str, size: int) -> PartialFile | None:
    """The partial file of the transfer with this hash and size that has the most data
    (and no other transfer is writing), or None. It is marked in use: its IncomingFile
    releases it."""
    best: PartialFile | None = None
    try:
        metadata_paths = sorted(directory.glob(f"*{METADATA_SUFFIX}"))
    except OSError:
        return None
    with _in_use_lock:
        for metadata_path in metadata_paths:
            data = _read_metadata(metadata_path)
            if data is None or data.get("hash") != file_hash or data.get("size") != size:
                continue
            path = metadata_path.with_name(metadata_path.name[: -len(".json")])
            if path in _in_use:
                continue
            try:
                on_disk = path.stat().st_size
            except OSError:
                continue
            offset = max(0, min(data["offset"], on_disk, size))
            if best is None or offset > best.offset:
                best = PartialFile(
                    path,
                    metadata_path,
                    str(data.get("name") or path.name),
                    size,
                    file_hash,
                    data.get("type"),
                    offset,
                )
        if best is not None:
            _in_use.add(best.path)
    return best


class IncomingFile:
    """One file being received into ``directory`` (blocking; see the module docstring).

    ``open()`` finds a partial file of the same transfer (when ``file_hash`` and
    ``size`` are known) or starts a new one, and returns the number of leading bytes
    already there. ``write()`` stores data at a 0-based offset, ``finish()`` checks the
    hash and gives the file its final name, ``close()`` keeps the partial file for a
    later transfer.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        name: str | None,
        size: int | None,
        file_hash: str | None,
        content_type: str | None,
    ) -> None:
        self.directory = Path(directory)
        self.name = safe_name(name)
        self.size = size
        self.hash = file_hash
        self.content_type = content_type
        self.partial: Path | None = None
        self.metadata: Path | None = None
        self.offset = 0
        self._file: BinaryIO | None = None
        self._sha1 = hashlib.sha1()
        self._hashed = 0
        self._rehash = False
        self._ranges = ByteRanges()
        self._saved_offset = -1

    @property
    def verifiable(self) -> bool:
        return self.hash is not None and self.hash.lower().startswith("sha-1:")

    @property
    def contiguous(self) -> int:
        """Leading bytes written."""
        for start, end in self._ranges:
            return end if start == 1 else 0
        return 0

    def open(self) -> int:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory = self.directory.resolve()
        partial = None
        if self.verifiable and self.size is not None:
            partial = find_partial(self.directory, self.hash or "", self.size)
        if partial is not None:
            self.partial, self.metadata = partial.path, partial.metadata_path
            self.offset = partial.offset
            self._file = open(self.partial, "r+b", buffering=0)  # noqa: SIM115
            self._file.truncate(self.offset)
            self._hash_prefix()
            if self.offset:
                self._ranges.add(1, self.offset)
        else:
            self._new_partial()
            self._file = open(self.partial, "r+b", buffering=0)  # noqa: SIM115
        if self.size is not None:
            _reserve(self._file.fileno(), self.offset, self.size - self.offset)
        self._save_metadata()
        return self.offset

    def _new_partial(self) -> None:
        for candidate in _candidates(self.name + PARTIAL_SUFFIX):
            path = self.directory / candidate
            metadata = path.with_name(path.name + ".json")
            if not _create(path):
                continue
            if not _create(metadata):
                path.unlink()
                continue
            with _in_use_lock:
                _in_use.add(path)
            self.partial, self.metadata = path, metadata
            return

    def _hash_prefix(self) -> None:
        assert self._file is not None
        self._file.seek(0)
        left = self.offset
        while left:
            block = self._file.read(min(left, _HASH_BLOCK))
            if not block:
                raise OSError(f"{self.partial} is shorter than its metadata says")
            self._sha1.update(block)
            left -= len(block)
        self._hashed = self.offset

    def write(self, offset: int, *pieces: bytes | bytearray | memoryview) -> None:
        """Store the pieces one after the other from 0-based ``offset``, in one system
        call without joining them, and hash them in the same pass when they continue
        what was hashed."""
        if self._file is None:
            raise ValueError("the file is not open")
        views = [memoryview(piece).cast("B") for piece in pieces]
        length = sum(len(view) for view in views)
        _pwrite_all(self._file.fileno(), views, offset)
        if length:
            self._ranges.add(offset + 1, offset + length)
        if offset == self._hashed:
            for view in views:
                self._sha1.update(view)
            self._hashed += length
        elif offset + length > self._hashed:
            self._rehash = True  # out of order or overlapping: hash the file at the end

    def save(self) -> None:
        """Record how much is on disk; called after every write, it rewrites the
        metadata only every 16 MB (a crash loses at most that much of a resume)."""
        if self.contiguous - self._saved_offset >= _SAVE_EVERY:
            self._save_metadata()

    def _save_metadata(self) -> None:
        assert self.metadata is not None
        offset = self.contiguous
        document = {
            "name": self.name,
            "size": self.size,
            "type": self.content_type,
            "hash": self.hash,
            "offset": offset,
        }
        fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(document, file)
            os.replace(temporary, self.metadata)
        except BaseException:
            os.unlink(temporary)
            raise
        self._saved_offset = offset

    def finish(self) -> Path:
        """Check the hash (FileHashMismatchError: the partial file is removed, its data
        cannot be trusted) and move the file to its final name, which is returned."""
        assert self._file is not None and self.partial is not None and self.metadata is not None
        if self.verifiable:
            if self._rehash or self._hashed != (self.size if self.size is not None else -1):
                self._sha1 = hashlib.sha1()
                self._file.seek(0)
                while block := self._file.read(_HASH_BLOCK):
                    self._sha1.update(block)
            actual = sha1_selector_hash(self._sha1.digest())
            if actual.upper() != (self.hash or "").upper():
                self.discard()
                raise FileHashMismatchError(
                    f"the received file's hash {actual} differs from the announced {self.hash}"
                )
        self._file.close()
        self._file = None
        final = move_unique(self.partial, self.directory, self.name)
        self.metadata.unlink(missing_ok=True)
        self._release()
        return final

    def close(self) -> None:
        """Stop receiving and keep the partial file (and its metadata) for later."""
        if self._file is None:
            return
        _unreserve(self._file.fileno())
        self._file.close()
        self._file = None
        self._save_metadata()
        self._release()

    def discard(self) -> None:
        """Remove the partial file and its metadata."""
        if self._file is not None:
            self._file.close()
            self._file = None
        for path in (self.partial, self.metadata):
            if path is not None:
                path.unlink(missing_ok=True)
        self._release()

    def _release(self) -> None:
        with _in_use_lock:
            _in_use.discard(self.partial)  # type: ignore[arg-type]
