"""Real third-party peers for the interop tests, on 127.0.0.1 only.

Run the tests that use them as root inside a loopback-only network namespace:

    unshare -n sh -c 'ip link set lo up; PYTHONPATH=src python -m pytest tests/interop -q'

Every peer is a PeerProcess: it gets its own temp directory (configuration,
log; removed at stop(), kept when SIPSIMPLE_KEEP_PEER_DIRS=1), free ports on
127.0.0.1 chosen when it is constructed (so they can go into the SDK's
settings before it starts), and start() returns only when it serves - or
raises PeerStartError, whose message holds the command line and the log tail,
after `start_timeout` seconds.  stop() kills its whole process group; peers
left running are stopped at interpreter exit, and (when started from the
main thread) the kernel sends them SIGTERM if the Python process dies.  All
are context managers, and log_text() / log_tail() give their output at any
time (put it in assertion messages).

Kamailio 5.6 - registrar and record-routing proxy for one domain:

    with Kamailio(domain="example.test", auth=True) as proxy:
        proxy.add_user("alice", "secret")       # digest user (realm = domain)
        proxy.ports                             # {"udp": p, "tcp": p, "tls": q}
        proxy.address("tls")                    # ("127.0.0.1", q)
        proxy.uri("tcp")                        # "sip:127.0.0.1:p;transport=tcp"
        proxy.ca_file                           # the test CA that signed its TLS cert
        proxy.contacts("alice")                 # registered contact URIs (usrloc via kamcmd)
        proxy.add_contact("svc", sipp.contact())  # a "registration" for a peer that cannot
        proxy.rpc("ul.dump")                    # any kamcmd RPC command
        proxy.log_text()

  auth=True: REGISTER and requests whose From is a local user get a digest
  challenge; requests from elsewhere to a registered user pass (so SIPp can
  call baresip).  auth=False: no authentication.  Initial requests go only to
  registered users of the domain (404 otherwise, 403 for other domains) and
  only to loopback contacts; INVITE, SUBSCRIBE and REFER are record-routed;
  in-dialog requests without a Route set that name a user are taken to the
  user's contact (SIPp's built-in uac needs this).  OPTIONS to the proxy
  itself gets 200.  TCP/TLS clients that do not listen are reached back over
  their connection.  Options: workers=1 (Kamailio children), server_cert=
  "valid" | "expired" | "wrong_name", certificates=make_certificates(...)
  to share one CA, debug=2 (Kamailio's log level), msrp_relay=True for an
  RFC 4976 MSRP relay on the TLS port (AUTH with the users' digest credentials;
  proxy.msrp_relay_address is the account's nat_traversal.msrp_relay value).  DNS is off; usrloc is
  memory only.  Features are switched in templates/kamailio.cfg by #!define
  lines (self.defines): add new ones there the same way.  presence=True
  (WITH_PRESENCE) adds the presence server: PUBLISH and SUBSCRIBE for the
  domain's AORs (presence, presence.winfo; every watcher authorized; tables in
  the same SQLite file), in-dialog SUBSCRIBEs to the server itself.

SIPp 3.6.1 - one run of a scenario:

    result = Sipp("uac", proxy.address(), service="alice", calls=3, rate=10,
                  call_duration_ms=500, timeout=15).run()    # start + wait + stop
    assert result.ok, result.describe()   # returncode, created, successful, failed
    with Sipp("uas") as uas:                                 # listens, in the background
        proxy.add_contact("service", uas.contact())
        ...
        uas_result = uas.finish()     # SIGUSR1, waits for ongoing calls (uas: +4 s)
    Sipp(scenario_file("register"), proxy.address(), service="alice",
         auth_username="alice", auth_password="secret", keys={"domain": proxy.domain})
    Sipp(scenario_file("options"), proxy.address("tcp"), transport="tcp")
    Sipp(scenario_file("message"), proxy.address(), service="bob", keys={"text": "hi"})

  Each instance has its own -p, -mp (4 ports), -cp; -timeout bounds the run
  (counted as a failure), wait() bounds it again.  Debian's SIPp has no TLS:
  use a Python ssl socket for TLS (see tests/interop/test_peers.py).

coturn 4.6 - STUN and TURN (long-term credentials) on 127.0.0.1:

    with Coturn(users={"turnuser": "turnpass"}, realm="example.test") as turn:
        turn.address                          # ("127.0.0.1", port), UDP and TCP
        mapped, local = stun_binding(turn.address)
    Coturn(certificates=make_certificates(path)) adds TURN over TLS on tls_port.

  Loopback peers are allowed; relays use a private range (relay_ports).

baresip 1.0 - a user agent registered at the Kamailio above, driven by ctrl_tcp:

    with Baresip("bob", "secret", proxy.address(), transport="udp",
                 audio_codecs=("PCMU/8000/1",), mediaenc="srtp",
                 audio_file=Path("in.wav")) as bob:      # registered when start() returns
        bob.dial("sip:alice@example.test")
        bob.wait_event("CALL_ESTABLISHED")   # ctrl_tcp events: CALL_INCOMING, CALL_CLOSED,
        bob.send_dtmf("12#")                 #   CALL_DTMF_START (param = digit) ...
        bob.hangup()
        bob.recordings()   # recordings_dir/dump-<date-time>-enc.wav (sent), -dec.wav (received)

  transport="tls" needs ca_file=proxy.ca_file (baresip 1.0 does not check
  the server certificate's dates or names).
  Calls are answered at once (answermode="auto"; "manual" + accept()).  The
  microphone is aufile: a mono 16-bit WAV at sample_rate (8000 by default;
  write_tone() makes one; a 30 s 440 Hz tone is the default).  sndfile
  writes one pair of WAV files per call, named by the second it started.
  send_command("name", "params") runs any baresip menu command.

certs.make_certificates(directory, domain) -> Certificates: ca_cert, server
(127.0.0.1, localhost, domain), expired, wrong_name, client (CertPair: cert,
key; PEM, EC P-256).  ports.free_port() / free_port_range(n) /
is_listening(port, "udp"|"tcp") for anything else started by a test.
"""

from .baresip import Baresip, BaresipControl, BaresipError, write_tone
from .certs import Certificates, CertPair, make_certificates
from .coturn import Coturn, StunError, stun_binding
from .kamailio import Kamailio, KamailioError
from .ports import LOOPBACK, free_port, free_port_range, is_listening
from .process import PeerProcess, PeerStartError, wait_for
from .sipp import Sipp, SippResult, scenario_file

__all__ = [
    "LOOPBACK",
    "Baresip",
    "BaresipControl",
    "BaresipError",
    "CertPair",
    "Certificates",
    "Coturn",
    "Kamailio",
    "KamailioError",
    "PeerProcess",
    "PeerStartError",
    "Sipp",
    "SippResult",
    "StunError",
    "free_port",
    "free_port_range",
    "is_listening",
    "make_certificates",
    "scenario_file",
    "stun_binding",
    "wait_for",
    "write_tone",
]
