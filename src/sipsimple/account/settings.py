"""The settings of SIP accounts and of the Bonjour account.

`sipsimple.account.Account` subclasses AccountSettings and BonjourAccount subclasses
BonjourAccountSettings, adding behaviour (registration, presence, ...) to the stored
settings. Accounts are stored under ``["Accounts", <id>]``.
"""

from __future__ import annotations

import getpass
import os

from sipsimple.configuration import (
    RuntimeSetting,
    Setting,
    SettingsGroup,
    SettingsObject,
    SettingsObjectID,
)
from sipsimple.configuration.datatypes import (
    AudioCodecList,
    Hostname,
    MSRPConnectionModel,
    MSRPRelayAddress,
    MSRPTransport,
    PositiveInteger,
    SIPAddress,
    SIPProxyAddress,
    SIPTransport,
    SRTPKeyNegotiation,
    STUNServerAddressList,
    XCAPRoot,
)

__all__ = [
    "AccountSettings",
    "AuthSettings",
    "BonjourAccountSettings",
    "BonjourMSRPSettings",
    "BonjourNATTraversalSettings",
    "BonjourSIPSettings",
    "BonjourXCAPSettings",
    "DialogEventSettings",
    "MSRPSettings",
    "MessageSummarySettings",
    "NATTraversalSettings",
    "PresenceSettings",
    "RTPSettings",
    "RegistrationSettings",
    "SIPSettings",
    "SRTPEncryptionSettings",
    "XCAPSettings",
    "user_full_name",
]


def user_full_name() -> str:
    """The user's full name from the password database, else the login name."""
    try:
        import pwd

        entry = pwd.getpwuid(os.getuid())
    except (ImportError, KeyError):
        try:
            return getpass.getuser()
        except OSError:
            return "Bonjour"
    return entry.pw_gecos.split(",")[0].strip() or entry.pw_name


class AuthSettings(SettingsGroup):
    username = Setting(type=str, default=None, nillable=True)  # None: the id's username
    password = Setting(type=str, default="")


class SIPSettings(SettingsGroup):
    """outbound_proxy None: requests go where RFC 3263 lookups of the domain lead.
    always_use_my_proxy: also send out-of-account requests (to other domains) through
    it. tls_name: the name the proxy's TLS certificate must carry (None: its host)."""

    always_use_my_proxy = Setting(type=bool, default=False)
    outbound_proxy = Setting(type=SIPProxyAddress, default=None, nillable=True)
    register_interval = Setting(type=PositiveInteger, default=3600)  # seconds
    subscribe_interval = Setting(type=PositiveInteger, default=3600)
    publish_interval = Setting(type=PositiveInteger, default=3600)
    tls_name = Setting(type=Hostname, default=None, nillable=True)


class RegistrationSettings(SettingsGroup):
    enabled = Setting(type=bool, default=True)


class SRTPEncryptionSettings(SettingsGroup):
    enabled = Setting(type=bool, default=True)
    key_negotiation = Setting(type=SRTPKeyNegotiation, default="opportunistic")


class RTPSettings(SettingsGroup):
    """audio_codec_list None: SIPSimpleSettings().rtp.audio_codec_list."""

    audio_codec_list = Setting(type=AudioCodecList, default=None, nillable=True)
    encryption = SRTPEncryptionSettings


class NATTraversalSettings(SettingsGroup):
    """stun_server_list None: found with DNS SRV (_stun._udp.<domain>). msrp_relay None:
    found with DNS SRV (_msrps._tcp.<domain>); used for incoming MSRP and, with
    use_msrp_relay_for_outbound, for outgoing too."""

    use_ice = Setting(type=bool, default=False)
    stun_server_list = Setting(type=STUNServerAddressList, default=None, nillable=True)
    msrp_relay = Setting(type=MSRPRelayAddress, default=None, nillable=True)
    use_msrp_relay_for_outbound = Setting(type=bool, default=False)


class MessageSummarySettings(SettingsGroup):
    """Voicemail notifications (RFC 3842); voicemail_uri None: the account's own."""

    enabled = Setting(type=bool, default=False)
    voicemail_uri = Setting(type=SIPAddress, default=None, nillable=True)


class MSRPSettings(SettingsGroup):
    transport = Setting(type=MSRPTransport, default="tls")
    connection_model = Setting(type=MSRPConnectionModel, default="relay")


class PresenceSettings(SettingsGroup):
    enabled = Setting(type=bool, default=False)


class DialogEventSettings(SettingsGroup):
    enabled = Setting(type=bool, default=False)


class XCAPSettings(SettingsGroup):
    """xcap_root None: looked up in DNS (TXT record of xcap.<domain>). discovered is set
    once the server's capabilities were read. xcap_diff: subscribe to xcap-diff."""

    enabled = Setting(type=bool, default=False)
    discovered = Setting(type=bool, default=False)
    xcap_root = Setting(type=XCAPRoot, default=None, nillable=True)
    xcap_diff = Setting(type=bool, default=True)


class AccountSettings(SettingsObject):
    """The stored settings of a SIP account, identified by its SIP address.

    Each function also needs its own flag: registration.enabled, presence.enabled,
    dialog_event.enabled, message_summary.enabled, xcap.enabled.
    """

    __group__ = "Accounts"
    __id__ = SettingsObjectID(type=SIPAddress)

    id = __id__
    enabled = Setting(type=bool, default=False)
    display_name = Setting(type=str, default=None, nillable=True)

    auth = AuthSettings
    sip = SIPSettings
    registration = RegistrationSettings
    rtp = RTPSettings
    nat_traversal = NATTraversalSettings
    message_summary = MessageSummarySettings
    msrp = MSRPSettings
    presence = PresenceSettings
    dialog_event = DialogEventSettings
    xcap = XCAPSettings


class BonjourMSRPSettings(SettingsGroup):
    transport = Setting(type=MSRPTransport, default="tcp")


class BonjourSIPSettings(SettingsGroup):
    transport = Setting(type=SIPTransport, default="udp")


class BonjourNATTraversalSettings(SettingsGroup):
    """Fixed values (in memory only) so that code can treat both account kinds alike."""

    use_ice = RuntimeSetting(type=bool, default=False)
    stun_server_list = RuntimeSetting(type=STUNServerAddressList, default=None, nillable=True)
    msrp_relay = RuntimeSetting(type=MSRPRelayAddress, default=None, nillable=True)
    use_msrp_relay_for_outbound = RuntimeSetting(type=bool, default=False)


class BonjourXCAPSettings(SettingsGroup):
    """Fixed values (in memory only): the Bonjour account has no XCAP server."""

    enabled = RuntimeSetting(type=bool, default=False)
    discovered = RuntimeSetting(type=bool, default=False)
    xcap_root = RuntimeSetting(type=XCAPRoot, default=None, nillable=True)


class BonjourAccountSettings(SettingsObject):
    """The stored settings of the peer-to-peer (mDNS) account, id bonjour@local."""

    __group__ = "Accounts"
    __id__ = SIPAddress("bonjour@local")

    enabled = Setting(type=bool, default=True)
    display_name = Setting(type=str, default_factory=user_full_name)

    msrp = BonjourMSRPSettings
    presence = PresenceSettings
    rtp = RTPSettings
    sip = BonjourSIPSettings
    nat_traversal = BonjourNATTraversalSettings
    xcap = BonjourXCAPSettings

    @property
    def id(self) -> SIPAddress:
        return SIPAddress(type(self).__id__)
