"""The global (not per account) settings: SIPSimpleSettings()."""

from __future__ import annotations

import socket

from sipsimple import __version__
from sipsimple.configuration import (
    CorrelatedSetting,
    RuntimeSetting,
    Setting,
    SettingsGroup,
    SettingsObject,
)
from sipsimple.configuration.datatypes import (
    AudioCodecList,
    Hostname,
    IPAddress,
    NameserverAddressList,
    NonNegativeInteger,
    Path,
    Port,
    PortRange,
    SampleRate,
    SIPAddress,
    SIPTransportList,
)

__all__ = ["SIPSimpleSettings", "default_local_ip"]


def default_local_ip() -> IPAddress:
    """The address this machine uses to reach the Internet, or 127.0.0.1 without a route.

    Connecting a UDP socket only selects the route: no packet is sent. The targets are
    documentation addresses (RFC 5737, RFC 3849).
    """
    for family, target in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.connect((target, 9))
                return IPAddress(probe.getsockname()[0])
        except OSError:
            continue
    return IPAddress("127.0.0.1")


class EchoCancellerSettings(SettingsGroup):
    enabled = Setting(type=bool, default=True)
    tail_length = Setting(type=NonNegativeInteger, default=200)  # milliseconds


class AudioSettings(SettingsGroup):
    """Devices are names from Engine().input_devices / output_devices, 'system_default',
    or None for no device."""

    alert_device = Setting(type=str, default="system_default", nillable=True)
    input_device = Setting(type=str, default="system_default", nillable=True)
    output_device = Setting(type=str, default="system_default", nillable=True)
    sample_rate = Setting(type=SampleRate, default=48000)
    muted = RuntimeSetting(type=bool, default=False)
    silent = Setting(type=bool, default=False)
    recordings_directory = Setting(type=Path, default=Path("~/.sipsimple/recordings"))
    echo_canceller = EchoCancellerSettings


class ChatSettings(SettingsGroup):
    pass


class DesktopSharingSettings(SettingsGroup):
    pass


class FileTransferSettings(SettingsGroup):
    directory = Setting(type=Path, default=Path("~/Downloads"))


class LogsSettings(SettingsGroup):
    directory = Setting(type=Path, default=Path("~/.sipsimple/logs"))
    trace_sip = Setting(type=bool, default=False)
    trace_msrp = Setting(type=bool, default=False)


class RTPSettings(SettingsGroup):
    port_range = Setting(type=PortRange, default=PortRange(50000, 50500))
    timeout = Setting(type=NonNegativeInteger, default=30)  # seconds without RTP; 0 = never
    audio_codec_list = Setting(
        type=AudioCodecList, default=AudioCodecList(("opus", "G722", "PCMU", "PCMA"))
    )


def _different_ports(port: int, sibling_port: int) -> None:
    if port == sibling_port != 0:
        raise ValueError(f"the TCP and TLS ports must differ (both are {port})")


class SIPSettings(SettingsGroup):
    """Ports: 0 binds any free port; transport_list says which transports are used, in
    order of preference."""

    invite_timeout = Setting(type=NonNegativeInteger, default=90, nillable=True)  # seconds
    udp_port = Setting(type=Port, default=0)
    tcp_port = CorrelatedSetting(
        type=Port, sibling="tls_port", validator=_different_ports, default=0
    )
    tls_port = CorrelatedSetting(
        type=Port, sibling="tcp_port", validator=_different_ports, default=0
    )
    transport_list = Setting(type=SIPTransportList, default=SIPTransportList(("tls", "tcp", "udp")))


class TLSSettings(SettingsGroup):
    """ca_list: PEM file of trusted CAs (None: the system's); certificate: PEM file with
    our certificate and its private key, for TLS servers that ask for one."""

    ca_list = Setting(type=Path, default=None, nillable=True)
    certificate = Setting(type=Path, default=None, nillable=True)
    verify_server = Setting(type=bool, default=False)


class DNSSettings(SettingsGroup):
    """nameservers None: the system's (/etc/resolv.conf). The DNSManager checks them by
    resolving probe_domain and uses fallback_nameservers while they fail; probe_domain
    None skips the check."""

    nameservers = Setting(type=NameserverAddressList, default=None, nillable=True)
    fallback_nameservers = Setting(
        type=NameserverAddressList, default=NameserverAddressList(("8.8.8.8", "8.8.4.4"))
    )
    probe_domain = Setting(type=Hostname, default="sip2sip.info", nillable=True)


class SIPSimpleSettings(SettingsObject):
    """The global settings; SIPSimpleSettings() is the one instance.

    local_ip is the address the Engine listens on and puts in Contact URIs; unless set,
    it is the machine's current outgoing address (see default_local_ip).
    """

    __id__ = "SIPSimpleSettings"

    default_account = Setting(type=SIPAddress, default="bonjour@local", nillable=True)
    user_agent = Setting(type=str, default=f"sipsimple {__version__}")
    instance_id = Setting(type=str, default="")  # +sip.instance (RFC 5626), e.g. urn:uuid:...
    local_ip = Setting(type=IPAddress, default_factory=default_local_ip)

    audio = AudioSettings
    chat = ChatSettings
    desktop_sharing = DesktopSharingSettings
    file_transfer = FileTransferSettings
    logs = LogsSettings
    rtp = RTPSettings
    sip = SIPSettings
    tls = TLSSettings
    dns = DNSSettings
