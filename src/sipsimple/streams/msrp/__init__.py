"""Streams carried by MSRP (RFC 4975): chat and file transfer (spec: MSRPStreamBase,
ChatStream, FileSelector, FileTransferStream).

Importing this package registers ChatStream and FileTransferStream with the
MediaStreamRegistry, so incoming sessions offering them are taken.
"""

from sipsimple.msrp import FileSelector
from sipsimple.streams.msrp.base import MSRPStreamBase, MSRPStreamError
from sipsimple.streams.msrp.chat import (
    ChatIdentity,
    ChatMessage,
    ChatStream,
    ChatStreamError,
    CPIMIdentity,
    CPIMMessage,
)
from sipsimple.streams.msrp.desktop import (
    DesktopSharingHandlerBase,
    DesktopSharingStream,
    ExternalVNCServerHandler,
    ExternalVNCViewerHandler,
    IDesktopSharingHandler,
    InternalVNCServerHandler,
    InternalVNCViewerHandler,
    VNCConnectionError,
)
from sipsimple.streams.msrp.filetransfer import FileTransferStream

__all__ = [
    "CPIMIdentity",
    "CPIMMessage",
    "ChatIdentity",
    "ChatMessage",
    "ChatStream",
    "ChatStreamError",
    "DesktopSharingHandlerBase",
    "DesktopSharingStream",
    "ExternalVNCServerHandler",
    "ExternalVNCViewerHandler",
    "FileSelector",
    "FileTransferStream",
    "IDesktopSharingHandler",
    "InternalVNCServerHandler",
    "InternalVNCViewerHandler",
    "MSRPStreamBase",
    "MSRPStreamError",
    "VNCConnectionError",
]
