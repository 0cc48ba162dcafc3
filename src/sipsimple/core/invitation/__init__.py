"""The INVITE dialog usage: :class:`Invitation` (see :mod:`.invitation`), with RFC 4028
session timers in :mod:`.timer`, its SDP handling in :mod:`.sdp` and what its
notifications carry of a message in :mod:`.messages`.

Importing it makes the Engine take new INVITEs (each becomes an Invitation announced by
SIPInvitationChangedState with state "incoming") and list INVITE, ACK, CANCEL, BYE,
PRACK and UPDATE in Allow, and 100rel, replaces and timer in Supported; when the Engine
stops, the Invitations still up are disconnected ("engine stopped").
"""

from sipsimple.core.engine import Engine
from sipsimple.core.invitation.invitation import (
    METHODS,
    SUPPORTED,
    Invitation,
    InvitationStateError,
    engine_stopped,
    incoming_invite,
)
from sipsimple.core.invitation.sdp import InvitationSDP
from sipsimple.notification import NotificationCenter

__all__ = ["Invitation", "InvitationSDP", "InvitationStateError"]


def _install(engine: Engine) -> None:
    engine.register_request_handler("INVITE", incoming_invite)
    engine.add_allowed_methods(*METHODS)
    engine.add_supported(*SUPPORTED)
    NotificationCenter().add_observer(engine_stopped, "SIPEngineDidEnd", engine)


_install(Engine())
