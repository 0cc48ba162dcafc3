"""FileTransferStream: sending and receiving a file over MSRP (RFC 5547; spec:
FileTransferStream).

The sender offers ``a=sendonly`` with the file's ``a=file-selector`` (name, type, size
and SHA-1 hash) and ``a=file-transfer-id``. The receiver answers ``a=recvonly``; when
it holds a partial file of the same transfer (same hash and size, left by an
interrupted one) it answers ``a=file-range:<first byte>-<size>`` and the sender starts
there (RFC 5547 section 6: 1-based, inclusive).

The receiver writes into ``SIPSimpleSettings.file_transfer.directory`` (see
:mod:`sipsimple.streams.msrp.files`: a ``.part`` file with its metadata while the data
arrives, then the final name, never overwriting a file and never outside the
directory), checks the SHA-1 hash, and keeps the partial file when the transfer is cut.
Reading, writing and hashing run in worker threads, never on the SIP thread, with one
exception: on a plain TCP connection the sender's chunks go from the file to the
socket with os.sendfile, which the kernel serves from the page cache (the sender asks
it to read ahead).  The receiver writes and hashes on the file's own worker thread,
several blocks queued there, and reads no more from the connection while its writes
lag behind.

Notifications (besides the MediaStream* ones), all with ``timestamp``:

FileTransferStreamGotChunk (receiver)
    ``content`` (bytes), ``content_type``, ``transferred_bytes`` (including a resumed
    part), ``file_size``.  One per piece of data as the connection delivers it (up to
    1 MB; the contents of all of them are the file).
FileTransferStreamDidDeliverChunk (sender)
    ``message_id``, ``chunk`` (the MSRPData of the 200 response or success REPORT),
    ``code``, ``reason``, ``transferred_bytes``, ``file_size``.  One per chunk (4 MB
    on a direct TCP connection, 1 MB over TLS: see ``sendfile_chunk_size`` and
    ``chunk_size``).
FileTransferStreamDidNotDeliverChunk (sender)
    ``message_id``, ``chunk`` (the error response or failure REPORT; None after a
    timeout), ``code``, ``reason``.
FileTransferStreamDidFinish (both)
    ``error`` (False when the file arrived whole and intact), ``reason`` (why not),
    ``filename`` (the receiver's final file, the sender's source; None otherwise).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

from sipsimple.configuration.settings import SIPSimpleSettings
from sipsimple.core import SDPAttribute
from sipsimple.msrp import (
    DEFAULT_CHUNK_SIZE,
    ByteRanges,
    FileRegion,
    FileSelector,
    MessageAborted,
    MessageDataReceived,
    MessageDeliveryFailed,
    MessageReceived,
    MSRPError,
    ReportReceived,
    ResponseReceived,
    TransactionTimedOut,
    make_id,
)
from sipsimple.msrp.transport import DEFAULT_WRITE_BUFFER_SIZE
from sipsimple.streams.msrp.base import MSRPStreamBase, MSRPStreamError, post_library_log
from sipsimple.streams.msrp.files import FileHashMismatchError, IncomingFile
from sipsimple.threading import run_in_worker

__all__ = ["FileSelector", "FileTransferStream"]

_ADVICE = 4 * 1024 * 1024  # the sender asks the kernel to read the next 8 MB every 4 MB


def _describe(selector: FileSelector) -> FileSelector:
    """Size, type and hash of the file a selector names (blocking)."""
    if selector.path is not None:
        return FileSelector.for_file(selector.path, selector.type, selector.hash is None)
    assert selector.fd is not None
    fd = selector.fd
    fd.seek(0)
    sha1 = hashlib.sha1()
    size = 0
    while block := fd.read(1 << 20):
        sha1.update(block)
        size += len(block)
    return FileSelector(
        selector.name, selector.type, size, "sha-1:" + sha1.digest().hex(":").upper()
    )


def _advise(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to read a part of the file ahead (blocking; errors are moot)."""
    try:
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_WILLNEED)
    except OSError:
        pass  # the stream ended and closed the file meanwhile


def _parse_file_range(value: str, size: int) -> int:
    """The 0-based offset an ``a=file-range:<start>-<stop>`` value asks to start at."""
    start_text, dash, stop_text = value.strip().partition("-")
    if not dash or not start_text.isdigit() or not (stop_text == "*" or stop_text.isdigit()):
        raise MSRPStreamError(f"invalid a=file-range {value!r}")
    start = int(start_text)
    if not 1 <= start <= size + 1 or (stop_text != "*" and int(stop_text) != size):
        raise MSRPStreamError(f"a=file-range {value!r} does not fit a file of {size} bytes")
    return start - 1


class FileTransferStream(MSRPStreamBase):
    """A file transfer (spec: FileTransferStream); see the module docstring.

    Constructed with a ``file_selector`` (FileSelector.for_file(path, type,
    compute_hash=False) is enough: the hash is computed in a worker thread while the
    stream initializes) it sends that file; made by new_from_sdp() for an incoming
    offer it receives one. ``offset`` is where the transfer (re)starts,
    ``transferred_bytes`` how far it got, ``finished`` whether it is over, ``filename``
    the receiver's final file.
    """

    type = "file-transfer"
    priority = 10
    media_type = "message"
    accept_types: ClassVar[list[str]] = ["*"]
    accept_wrapped_types: ClassVar[list[str] | None] = ["*"]
    use_msrp_session = False
    chunk_size: ClassVar[int] = 1024 * 1024
    """Body bytes per SEND chunk on a direct connection.  The transfer has its
    connection to itself, so nothing waits behind a chunk; large chunks mean few
    responses, headers and progress notifications.  Equal to ``read_size``: each
    chunk is one block read from the file, sent without a copy."""
    sendfile_chunk_size: ClassVar[int] = 4 * 1024 * 1024
    """Body bytes per chunk when the connection sends them from the file with
    os.sendfile (plain TCP): such a chunk holds no memory, and the wait for its
    response starts once it is written, so a slow link does not time it out."""
    relay_chunk_size: ClassVar[int] = DEFAULT_CHUNK_SIZE
    """Body bytes per chunk through a relay (relays take small frames only)."""
    read_size: ClassVar[int] = 1024 * 1024
    """Bytes the sender reads from the file at a time."""
    write_size: ClassVar[int] = 1024 * 1024
    """Bytes the receiver collects before writing them to the file."""
    writes_in_flight: ClassVar[int] = 4
    """Blocks of ``write_size`` the receiver may have queued for writing at once."""
    write_buffer_size: ClassVar[int] = DEFAULT_WRITE_BUFFER_SIZE
    """Bytes the connection may hold unsent before the sender waits."""

    def __init__(self, account: Any, file_selector: FileSelector | None = None) -> None:
        if file_selector is not None:
            if not isinstance(file_selector, FileSelector):
                raise TypeError(f"file_selector must be a FileSelector, not {file_selector!r}")
            if file_selector.path is None and file_selector.fd is None:
                raise ValueError("the file selector of an outgoing transfer needs a path or an fd")
        super().__init__(account, "sendonly" if file_selector is not None else "recvonly")
        self.file_selector = file_selector
        self.transfer_id = make_id(20)
        self.offset = 0
        self.transferred_bytes = 0
        self.finished = False
        self.filename: str | None = None
        self._message_id: str | None = None
        self._incoming: IncomingFile | None = None
        self._pieces: list[bytes] = []  # received data not written yet, as it came
        self._pieces_offset = 0
        self._pieces_size = 0
        self._writes: deque[asyncio.Future[None]] = deque()  # in order, oldest first
        self._disk: ThreadPoolExecutor | None = None  # the received file's one thread
        self._received = ByteRanges()
        self._acked = 0
        self._responses = 0
        self._sent_message: Any = None
        self._source: Any = None  # the file we opened to send (closed by end())

    @property
    def outgoing(self) -> bool:
        return self.direction == "sendonly"

    @classmethod
    def new_from_sdp(
        cls, account: Any, remote_sdp: Any, stream_index: int
    ) -> FileTransferStream | None:
        media = remote_sdp.media[stream_index]
        if not cls._acceptable_offer(account, media, cls.media_type):
            return None
        selector_text = media.attributes.getfirst("file-selector")
        if selector_text is None or media.direction != "sendonly":
            return None  # not a file, or a pull request: we only take files pushed to us
        try:
            selector = FileSelector.parse(selector_text)
        except MSRPError:
            return None
        stream = cls(account)
        stream.file_selector = selector
        stream.transfer_id = media.attributes.getfirst("file-transfer-id") or stream.transfer_id
        stream._take_offer(media)
        return stream

    # -- SDP ----------------------------------------------------------------------------

    def _media_attributes(self, for_offer: bool) -> list[SDPAttribute]:
        assert self.file_selector is not None
        attributes = [
            SDPAttribute("file-selector", self.file_selector.sdp_repr),
            SDPAttribute("file-transfer-id", self.transfer_id),
        ]
        size = self.file_selector.size
        if not self.outgoing and self.offset and size is not None:
            attributes.append(SDPAttribute("file-range", f"{self.offset + 1}-{size}"))
        return attributes

    def _check_remote_media(self, media: Any) -> None:
        if not self.outgoing:
            return
        assert self.file_selector is not None and self.file_selector.size is not None
        file_range = media.attributes.getfirst("file-range")
        if file_range is not None:
            self.offset = _parse_file_range(file_range, self.file_selector.size)
            self.transferred_bytes = self.offset

    def _session_options(self) -> dict[str, Any]:
        options = super()._session_options()
        options["write_buffer_size"] = self.write_buffer_size
        options["max_queued_bytes"] = 2 * self.write_size  # reads of write_size
        options["kernel_unsent_limit"] = None  # nothing on this connection waits behind the file
        if self._relay is not None or len(self.remote_path) > 1:
            options["chunk_size"] = self.relay_chunk_size  # relays take small frames only
        return options

    # -- preparing ----------------------------------------------------------------------

    async def _prepare(self, outgoing: bool) -> None:
        selector = self.file_selector
        if selector is None:
            raise MSRPStreamError("a file transfer needs a file selector")
        if outgoing:
            if selector.size is None or selector.hash is None:
                described = await run_in_worker(_describe, selector)
                selector.size, selector.hash = described.size, described.hash
                selector.type = selector.type or described.type
            selector.type = selector.type or "application/octet-stream"
            self.filename = selector.path
            return
        directory = SIPSimpleSettings().file_transfer.directory.normalized
        self._incoming = IncomingFile(
            directory, selector.name, selector.size, selector.hash, selector.type
        )
        self._disk = ThreadPoolExecutor(1, thread_name_prefix="msrp-file")
        offset = await self._on_disk(self._incoming.open)
        if selector.size:
            offset = min(offset, selector.size - 1)  # the last byte comes again: it ends it
        self.offset = self.transferred_bytes = offset
        if offset:
            post_library_log(f"resuming {selector.name!r} after {offset} bytes")

    # -- sending ------------------------------------------------------------------------

    def _NH_MediaStreamDidStart(self, notification: Any) -> None:
        if self.outgoing:
            self._spawn(self._send_file())

    async def _open_source(self) -> Any:
        selector = self.file_selector
        assert selector is not None
        if selector.fd is not None:
            return selector.fd
        assert selector.path is not None
        self._source = await run_in_worker(open, selector.path, "rb")
        return self._source

    def _sends_regions(self) -> bool:
        assert self.msrp is not None
        return self.msrp.sends_file_regions and self.msrp.session.chunk_size >= self.read_size

    async def _blocks(self, file: Any) -> AsyncIterator[bytes | FileRegion]:
        """The file from ``offset``: parts of the file of ``sendfile_chunk_size`` that
        the connection sends with os.sendfile when it can (the file stays open until
        the stream ends), else blocks of ``read_size`` read by a worker, one block read
        ahead."""
        assert self.msrp is not None and self.file_selector is not None
        if self._sends_regions():
            fd = file.fileno()
            offset, size = self.offset, self.file_selector.size or 0
            advised = offset  # the kernel reads ahead of sendfile, which then finds it cached
            loop = asyncio.get_running_loop()
            while offset < size:
                if hasattr(os, "posix_fadvise") and advised < min(offset + _ADVICE, size):
                    # Advice only: a worker asks, nothing waits for it (the first region
                    # would otherwise wait a thread's round trip before it goes out).
                    loop.run_in_executor(None, _advise, fd, advised, 2 * _ADVICE)
                    advised += 2 * _ADVICE
                count = min(self.sendfile_chunk_size, size - offset)
                yield FileRegion(fd, offset, count)
                offset += count
            return
        loop = asyncio.get_running_loop()
        reading = None
        try:
            await run_in_worker(file.seek, self.offset)
            reading = loop.create_task(run_in_worker(file.read, self.read_size))
            while block := await reading:
                reading = loop.create_task(run_in_worker(file.read, self.read_size))  # read ahead
                yield block
            reading = None
        finally:
            if reading is not None:
                reading.cancel()
                await asyncio.gather(reading, return_exceptions=True)

    async def _send_file(self) -> None:
        assert self.msrp is not None and self.file_selector is not None
        self._message_id = make_id()
        try:
            file = await self._open_source()
            options = {"chunk_size": self.sendfile_chunk_size} if self._sends_regions() else {}
            self._sent_message = await self.msrp.send_stream(
                self._blocks(file),
                self.file_selector.type,
                size=self.file_selector.size,
                start=self.offset + 1,
                message_id=self._message_id,
                success_report="no",
                failure_report="yes",
                **options,
            )
        except (MSRPError, OSError, ValueError) as error:
            self._finish(f"cannot send the file: {error}")
            return
        self._check_sent()

    def _check_sent(self) -> None:
        message = self._sent_message
        if message is not None and message.done and self._responses >= message.chunks_sent:
            self._finish(None)

    def _handle_delivery(self, event: Any) -> None:
        if (
            not self.outgoing
            or self.finished
            or self._message_id is None
            or getattr(event, "message_id", None) != self._message_id
        ):
            return  # a receiver's own frames (the bodiless SEND binding the connection)
        size = self.file_selector.size if self.file_selector is not None else None
        if isinstance(event, ResponseReceived):
            if event.code == 200:
                self._responses += 1
                if event.byte_range is not None and event.byte_range.end is not None:
                    self._acked += event.byte_range.end - event.byte_range.start + 1
                self.transferred_bytes = self.offset + self._acked
                self._post(
                    "FileTransferStreamDidDeliverChunk",
                    message_id=event.message_id,
                    chunk=event.frame,
                    code=event.code,
                    reason=event.comment,
                    transferred_bytes=self.transferred_bytes,
                    file_size=size,
                )
                self._check_sent()
            else:
                self._not_delivered(event.code, event.comment, event.frame)
        elif isinstance(event, TransactionTimedOut):
            self._not_delivered(408, "the chunk was not answered", None)
        elif isinstance(event, MessageDeliveryFailed):
            self._finish(f"the peer did not take the file: {event.code} {event.comment or ''}")

    def _handle_REPORT(self, event: ReportReceived) -> None:
        if event.message_id != self._message_id or self.finished:
            return
        if event.code == 200:
            self._post(
                "FileTransferStreamDidDeliverChunk",
                message_id=event.message_id,
                chunk=event.frame,
                code=event.code,
                reason=event.comment,
                transferred_bytes=self.transferred_bytes,
                file_size=self.file_selector.size if self.file_selector else None,
            )
            return
        self._not_delivered(event.code, event.comment, event.frame)
        self._finish(f"the peer did not take the file: {event.code} {event.comment or ''}")

    def _not_delivered(self, code: int, reason: str | None, chunk: Any) -> None:
        self._post(
            "FileTransferStreamDidNotDeliverChunk",
            message_id=self._message_id,
            chunk=chunk,
            code=code,
            reason=reason,
        )

    # -- receiving ----------------------------------------------------------------------

    def _handle_SEND(self, event: Any) -> Any:
        if self.outgoing or self.finished:
            return None
        if isinstance(event, MessageAborted):
            why = (
                "the sender abandoned it" if event.code is None else f"{event.code} {event.comment}"
            )
            return self._fail_transfer(f"the transfer was interrupted: {why}")
        if self._message_id is None and event.message_id:
            self._message_id = event.message_id
        if event.message_id != self._message_id:
            post_library_log(f"ignored a second message {event.message_id} in a file transfer")
            return None
        if isinstance(event, MessageDataReceived):
            return self._receive(event)
        if isinstance(event, MessageReceived):
            return self._complete()
        return None

    async def _receive(self, event: MessageDataReceived) -> None:
        selector = self.file_selector
        assert selector is not None and self._incoming is not None
        size = selector.size
        end = event.offset + len(event.data)
        if size is not None and (end > size or (event.total is not None and event.total != size)):
            await self._fail_transfer(
                f"the sender went past the announced size of {size} bytes "
                f"(bytes up to {end}, message of {event.total})"
            )
            return
        if not event.data:
            return
        self._received.add(event.offset + 1, end)
        if self._pieces and event.offset != self._pieces_offset + self._pieces_size:
            await self._flush()
        if not self._pieces:
            self._pieces_offset = event.offset
        self._pieces.append(event.data)
        self._pieces_size += len(event.data)
        self.transferred_bytes = max(self.transferred_bytes, end)
        self._post(
            "FileTransferStreamGotChunk",
            content=event.data,
            content_type=event.content_type or selector.type,
            transferred_bytes=self.transferred_bytes,
            file_size=size,
        )
        if self._pieces_size >= self.write_size:
            await self._flush()
        if size is not None and self._received.covers(self.offset + 1, size):
            await self._complete()

    def _on_disk(self, function: Callable[[], Any]) -> asyncio.Future[Any]:
        """Run ``function`` on the received file's own worker thread: its writes (with
        their hashing), its opening and closing run there one after the other, in the
        order given, without the event loop waiting between them."""
        assert self._disk is not None
        return asyncio.get_running_loop().run_in_executor(self._disk, function)

    async def _flush(self) -> None:
        """Hand the pieces received to the file's worker, which writes them (without
        joining them) and hashes them; wait only while ``writes_in_flight`` writes are
        queued there (what bounds the memory held)."""
        writes = self._writes
        while writes and writes[0].done():
            writes.popleft().result()
        while len(writes) >= self.writes_in_flight:
            await writes.popleft()
        if not self._pieces:
            return
        assert self._incoming is not None
        incoming = self._incoming
        pieces, offset = self._pieces, self._pieces_offset
        self._pieces, self._pieces_size = [], 0

        def write() -> None:
            incoming.write(offset, *pieces)
            incoming.save()

        writes.append(self._on_disk(write))

    async def _settle(self) -> None:
        """Write what is left and wait for every queued write; raises the first error."""
        await self._flush()
        writes, self._writes = list(self._writes), deque()
        for outcome in await asyncio.gather(*writes, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome

    async def _complete(self) -> None:
        if self.finished or self._incoming is None:
            return
        size = self.file_selector.size if self.file_selector is not None else None
        if size is not None and not self._received.covers(self.offset + 1, size):
            await self._fail_transfer(f"the file ended before its announced size of {size} bytes")
            return
        try:
            await self._settle()
            path = await self._on_disk(self._incoming.finish)
        except FileHashMismatchError as error:
            self._incoming = None
            self._finish(str(error))
            return
        except OSError as error:
            await self._fail_transfer(f"cannot write the file: {error}")
            return
        self._incoming = None
        self.filename = str(path)
        self._finish(None)

    async def _fail_transfer(self, reason: str) -> None:
        """Keep what arrived as a partial file, end the transfer and the MSRP session."""
        await self._keep_partial()
        self._finish(reason)
        if self.msrp is not None:
            await self.msrp.close(timeout=self.close_timeout)

    async def _keep_partial(self) -> None:
        incoming = self._incoming
        if incoming is None:
            return
        try:
            await self._settle()
        except OSError as error:
            post_library_log(f"cannot save the partial file: {error}", logging.ERROR)
        self._incoming = None
        await self._on_disk(incoming.close)

    # -- ending -------------------------------------------------------------------------

    def _finish(self, error: str | None) -> None:
        if self.finished:
            return
        self.finished = True
        self._post(
            "FileTransferStreamDidFinish",
            error=error is not None,
            reason=error,
            filename=self.filename,
        )

    async def _connection_ended(self, error: str | None) -> None:
        if self.finished:
            return
        await self._keep_partial()
        self._finish(f"the transfer was interrupted{': ' + error if error else ''}")

    async def _cleanup(self) -> None:
        if self._source is not None:
            source, self._source = self._source, None
            await run_in_worker(source.close)
        if not self.finished:
            await self._keep_partial()
            self._finish("the transfer was interrupted: the stream ended")
        if self._disk is not None:
            self._disk.shutdown(wait=False)  # its thread ends after the jobs queued
            self._disk = None
