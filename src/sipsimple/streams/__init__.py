"""Media streams: the interface a Session negotiates them through (spec: IMediaStream),
and the registry incoming sessions pick stream classes from (MediaStreamRegistry,
MediaStreamRegistrar).

A stream is any class implementing :class:`IMediaStream`; the SDK's own live in
:mod:`sipsimple.streams.rtp` (AudioStream) and :mod:`sipsimple.streams.msrp` (ChatStream,
FileTransferStream, DesktopSharingStream). An application adds its own the same way::

    from sipsimple.streams import IMediaStream, MediaStreamRegistrar

    class MyStream(IMediaStream, metaclass=MediaStreamRegistrar):
        type = "my-stream"          # defining a type registers the class
        priority = 5                # tried before lower priorities for incoming offers
        ...                         # the abstract methods below

The Session calls a stream's methods on the SIP thread, in this order: ``initialize``
once it is part of an offer or an accepted offer, ``get_local_media`` to build the SDP,
``start`` once the SDP is negotiated, then any of ``validate_update``, ``update``,
``hold``, ``unhold``, and finally ``deactivate`` (when it can still tell an orderly close
from a failure) and ``end``. ``end`` is called on every stream whose ``initialize`` was
called, even after it failed.

A stream reports back with notifications it posts with itself as the sender (the
Session waits for them; they may be posted from inside the method or later, on the SIP
thread):

MediaStreamDidInitialize
    ``initialize`` succeeded.
MediaStreamDidStart
    ``start`` succeeded.
MediaStreamDidFail
    ``reason`` (a str): a method failed, or the stream broke while in use. Before the
    stream started this fails the session or the proposal it was part of; afterwards the
    Session removes the stream (or ends the session when it was the last one).
MediaStreamWillEnd
    Posted as soon as ``end`` is called.
MediaStreamDidEnd
    ``end`` finished closing the stream.
"""

from __future__ import annotations

import threading
from abc import ABCMeta, abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from sipsimple.core.sdp import FrozenSDPSession, SDPMediaStream

__all__ = [
    "MEDIA_STREAM_NOTIFICATIONS",
    "AudioStream",
    "AudioStreamError",
    "IMediaStream",
    "InvalidStreamError",
    "MediaStreamRegistrar",
    "MediaStreamRegistry",
]

MEDIA_STREAM_NOTIFICATIONS = (
    "MediaStreamDidInitialize",
    "MediaStreamDidStart",
    "MediaStreamDidFail",
    "MediaStreamWillEnd",
    "MediaStreamDidEnd",
)
"""The notifications every stream posts (see the module docstring)."""


class InvalidStreamError(TypeError):
    """A class or object that cannot serve as a media stream."""


class IMediaStream(metaclass=ABCMeta):
    """What the Session needs from a media stream (spec: IMediaStream).

    ``type`` and ``priority`` are class attributes. ``hold_supported``,
    ``on_hold_by_local`` and ``on_hold_by_remote`` default to False here: a stream
    that supports hold overrides them (as attributes or properties).
    """

    type: ClassVar[str | None] = None
    priority: ClassVar[int] = 0

    hold_supported: bool = False
    on_hold_by_local: bool = False
    on_hold_by_remote: bool = False

    @property
    def on_hold(self) -> bool:
        """True when on hold by either party."""
        return bool(self.on_hold_by_local or self.on_hold_by_remote)

    @classmethod
    @abstractmethod
    def new_from_sdp(
        cls, account: Any, remote_sdp: FrozenSDPSession, stream_index: int
    ) -> IMediaStream | None:
        """A stream for m-line ``stream_index`` of an offer, or None when this class
        cannot handle it."""

    @abstractmethod
    def get_local_media(self, for_offer: bool) -> SDPMediaStream:
        """The m-line describing this stream: for an offer, or for the answer to one
        (then the Session's negotiator fits it to the offer: formats, direction)."""

    @abstractmethod
    def initialize(self, session: Any, direction: str) -> None:
        """Prepare (allocate ports...); ``direction`` is "outgoing" when we offer the
        stream, "incoming" when the peer did. Then MediaStreamDidInitialize or
        MediaStreamDidFail."""

    @abstractmethod
    def start(
        self, local_sdp: FrozenSDPSession, remote_sdp: FrozenSDPSession, stream_index: int
    ) -> None:
        """Start with the negotiated descriptions. Then MediaStreamDidStart or
        MediaStreamDidFail."""

    @abstractmethod
    def validate_update(self, remote_sdp: FrozenSDPSession, stream_index: int) -> bool:
        """Whether a new offer of the peer is acceptable for this stream; it must not
        change the stream (the update may not happen)."""

    @abstractmethod
    def update(
        self, local_sdp: FrozenSDPSession, remote_sdp: FrozenSDPSession, stream_index: int
    ) -> None:
        """Apply a completed renegotiation (including the peer putting us on hold)."""

    @abstractmethod
    def hold(self) -> None:
        """Stop sending and receiving; get_local_media() reflects it from now on."""

    @abstractmethod
    def unhold(self) -> None:
        """Resume; get_local_media() reflects it from now on."""

    @abstractmethod
    def deactivate(self) -> None:
        """The stream is about to be removed: a transport closed by the peer from now on
        is normal, not a failure."""

    @abstractmethod
    def end(self) -> None:
        """Close the stream: MediaStreamWillEnd at once, MediaStreamDidEnd when done."""


def _check_stream_class(cls: Any) -> None:
    if not isinstance(cls, type) or not issubclass(cls, IMediaStream):
        raise InvalidStreamError(f"{cls!r} is not a class implementing IMediaStream")
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:
        raise InvalidStreamError(
            f"{cls.__qualname__} does not implement IMediaStream: {', '.join(missing)} missing"
        )
    if not isinstance(cls.type, str) or not cls.type:
        raise InvalidStreamError(f"{cls.__qualname__}.type must be a non-empty str")
    if isinstance(cls.priority, bool) or not isinstance(cls.priority, int):
        raise InvalidStreamError(f"{cls.__qualname__}.priority must be an int")


class MediaStreamRegistry:
    """The stream classes incoming sessions may use, highest priority first; a
    singleton (spec: MediaStreamRegistry).

    Classes of equal priority keep the order they were added in. Adding a class whose
    module and qualified name are those of a registered one replaces it (a module
    reloaded, a test defining its stream again).
    """

    _instance: ClassVar[MediaStreamRegistry | None] = None
    _instance_lock: ClassVar[threading.Lock] = threading.Lock()
    _classes: list[type[IMediaStream]]
    _lock: threading.Lock

    def __new__(cls) -> MediaStreamRegistry:
        with cls._instance_lock:
            if cls._instance is None:
                instance = super().__new__(cls)
                instance._classes = []
                instance._lock = threading.Lock()
                cls._instance = instance
            return cls._instance

    def __iter__(self) -> Iterator[type[IMediaStream]]:
        with self._lock:
            return iter(list(self._classes))

    def add(self, cls: type[IMediaStream]) -> None:
        """Register ``cls`` (a concrete IMediaStream class with a ``type``)."""
        _check_stream_class(cls)
        key = (cls.__module__, cls.__qualname__)
        with self._lock:
            classes = [c for c in self._classes if (c.__module__, c.__qualname__) != key]
            classes.append(cls)
            classes.sort(key=lambda c: -c.priority)  # stable: ties keep their order
            self._classes = classes

    def remove(self, cls: type[IMediaStream]) -> None:
        """Unregister ``cls``; ValueError when it is not registered."""
        with self._lock:
            if cls not in self._classes:
                raise ValueError(f"{cls!r} is not registered")
            self._classes = [c for c in self._classes if c is not cls]


class MediaStreamRegistrar(ABCMeta):
    """Metaclass that registers every class defining a ``type`` of its own with the
    MediaStreamRegistry (spec: MediaStreamRegistrar). Classes without one (bases shared
    by several streams) are left out."""

    def __init__(cls, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> None:
        super().__init__(name, bases, namespace)
        if namespace.get("type") is not None:
            MediaStreamRegistry().add(cls)  # type: ignore[arg-type]


# The SDK's own streams, importable from here (spec) and registered on import.
from sipsimple.streams.rtp import AudioStream, AudioStreamError  # noqa: E402
