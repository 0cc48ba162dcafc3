"""Kamailio 5.6 as the test domain's registrar and record-routing proxy on 127.0.0.1."""

from __future__ import annotations

import hashlib
import re
import socket
import sqlite3
import subprocess
import uuid
from pathlib import Path

from .certs import Certificates, make_certificates
from .ports import LOOPBACK, free_port, is_listening
from .process import PeerProcess, render_template

SCHEMA_DIR = Path("/usr/share/kamailio/db_sqlite")
_ALL_METHODS = str(2**31 - 1)  # usrloc's allowed-methods bit mask, every method
TRANSPORTS = ("udp", "tcp", "tls")


class KamailioError(RuntimeError):
    """A kamcmd RPC call failed."""


class Kamailio(PeerProcess):
    """Registrar + proxy for `domain` listening on UDP and TCP (one port) and TLS.

    auth=True asks digest credentials (realm = domain) for REGISTER and for
    requests From a local user; users come from add_user().  server_cert picks
    the TLS certificate shown: "valid", "expired" or "wrong_name" (see certs.py).
    presence=True makes it the domain's presence server too (PUBLISH and SUBSCRIBE
    for its users' AORs, the presence and presence.winfo events, every watcher
    authorized).  msrp_relay=True adds an RFC 4976 MSRP relay on the TLS port
    (AUTH with the users' digest credentials, realm = domain); msrp_relay_address
    is the account setting that uses it.  xcap=True adds an XCAP server (xhttp +
    xcap_server, digest authentication with the users' credentials) at xcap_root; halt()
    and start() take it down and up again with its documents kept.
    """

    name = "kamailio"

    def __init__(
        self,
        *,
        domain: str = "example.test",
        auth: bool = True,
        workers: int = 1,
        certificates: Certificates | None = None,
        server_cert: str = "valid",
        msrp_relay: bool = False,
        debug: int = 2,
        presence: bool = False,
        xcap: bool = False,
        start_timeout: float = 10.0,
    ) -> None:
        super().__init__(start_timeout=start_timeout)
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.domain = domain
        self.auth = auth
        self.workers = workers
        self.debug = debug
        self.presence = presence
        self.defines = (("WITH_AUTH",) if auth else ()) + (("WITH_PRESENCE",) if presence else ())
        if msrp_relay:
            self.defines += ("WITH_MSRP_RELAY",)
        self.xcap = xcap
        if xcap:
            self.defines += ("WITH_XCAP",)
        self.certificates = certificates or make_certificates(self.directory / "certs", domain)
        self.server_cert = self.certificates.server_pair(server_cert)
        self.sip_port = free_port()
        self.tls_port = free_port()
        self.http_port = free_port() if xcap else 0
        self.database_path = self.directory / "kamailio.sqlite"
        self.config_path = self.directory / "kamailio.cfg"
        self.ctl_socket = self.directory / "kamailio_ctl"
        self._users: dict[str, str] = {}

    # -- what the tests need to know

    @property
    def ports(self) -> dict[str, int]:
        return {"udp": self.sip_port, "tcp": self.sip_port, "tls": self.tls_port}

    @property
    def ca_file(self) -> Path:
        return self.certificates.ca_cert

    @property
    def msrp_relay_address(self) -> str:
        """The MSRP relay (msrp_relay=True) as an account's nat_traversal.msrp_relay."""
        return f"{LOOPBACK}:{self.tls_port};transport=tls"

    @property
    def xcap_root(self) -> str:
        """The XCAP root (xcap=True), as an account's xcap.xcap_root."""
        return f"http://{LOOPBACK}:{self.http_port}/xcap-root"

    def xcap_documents(self) -> dict[str, bytes]:
        """The documents the XCAP server holds: document URI path -> body."""
        with sqlite3.connect(self.database_path, timeout=10) as db:
            rows = db.execute("SELECT doc_uri, doc FROM xcap").fetchall()
        db.close()
        return {uri: bytes(doc) for uri, doc in rows}

    def halt(self) -> None:
        """Stop the program but keep its directory and database (start() again resumes)."""
        self._stop_process()

    def address(self, transport: str = "udp") -> tuple[str, int]:
        return LOOPBACK, self.ports[_checked(transport)]

    def uri(self, transport: str = "udp", user: str | None = None) -> str:
        """A SIP URI reaching this proxy, e.g. for an outbound proxy setting."""
        host, port = self.address(transport)
        userinfo = f"{user}@" if user else ""
        return f"sip:{userinfo}{host}:{port};transport={transport}"

    def aor(self, username: str) -> str:
        return f"sip:{username}@{self.domain}"

    # -- users and registrations

    def add_user(self, username: str, password: str) -> None:
        """A subscriber that can register and place calls (takes effect at once if running)."""
        if not username or not re.fullmatch(r"[A-Za-z0-9._~+-]+", username):
            raise ValueError(f"username must be a non-empty SIP user token, not {username!r}")
        self._users[username] = password
        if self.database_path.exists():
            self._write_users({username: password})

    def rpc(self, method: str, *params: str, timeout: float = 5.0) -> str:
        """Run a Kamailio RPC command (kamcmd over the ctl socket); its text output."""
        result = subprocess.run(
            ["kamcmd", "-s", f"unix:{self.ctl_socket}", "--", method, *params],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0 or result.stdout.startswith("error:"):
            raise KamailioError(
                f"kamcmd {method} {' '.join(params)}: {(result.stdout + result.stderr).strip()}"
            )
        return result.stdout

    def contacts(self, username: str) -> list[str]:
        """The contact URIs registered for `username` (empty when none)."""
        try:
            output = self.rpc("ul.lookup", "location", username)
        except KamailioError as error:
            if "not found" in str(error).lower():
                return []
            raise
        return re.findall(r"^\s*Address:\s*(\S+)", output, re.MULTILINE)

    def add_contact(self, username: str, contact: str, expires: int = 3600) -> None:
        """Register `contact` for `username` by RPC, for peers that do not register (SIPp)."""
        # ul.add takes: table AOR contact expires q path(s:0 = none) flags cflags methods.
        params = (str(expires), "1.0", "s:0", "0", "0", _ALL_METHODS)
        self.rpc("ul.add", "location", username, contact, *params)

    # -- PeerProcess

    def prepare(self) -> None:
        self._create_database()
        tls_config = self.directory / "tls.cfg"
        tls_config.write_text(
            render_template(
                "kamailio-tls.cfg",
                {
                    "CERTIFICATE": self.server_cert.cert,
                    "PRIVATE_KEY": self.server_cert.key,
                    "CA_LIST": self.certificates.ca_cert,
                },
            )
        )
        self.config_path.write_text(
            render_template(
                "kamailio.cfg",
                {
                    "DEFINES": "\n".join(f"#!define {name}" for name in self.defines),
                    "DEBUG": self.debug,
                    "WORKERS": self.workers,
                    "DOMAIN": self.domain,
                    "SIP_PORT": self.sip_port,
                    "TLS_PORT": self.tls_port,
                    "HTTP_PORT": self.http_port,
                    "TLS_CONFIG": tls_config,
                    "CTL_SOCKET": self.ctl_socket,
                    "DATABASE": self.database_path,
                },
            )
        )

    def command(self) -> list[str]:
        return [
            "kamailio",
            "-f",
            str(self.config_path),
            "-DD",  # stay in the foreground, children in our process group
            "-E",  # log to stderr
            "-Y",
            str(self.directory),  # runtime directory
            "-m",
            "64",
            "-M",
            "8",
        ]

    def is_ready(self) -> bool:
        return (
            self.ctl_socket.exists()
            and is_listening(self.sip_port, "tcp")
            and is_listening(self.tls_port, "tcp")
            and (not self.xcap or is_listening(self.http_port, "tcp"))
            and self._answers_options()
        )

    # -- internals

    def _answers_options(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((LOOPBACK, 0))
            sock.settimeout(0.3)
            request = options_request(self.address("udp"), sock.getsockname(), "UDP")
            sock.sendto(request, self.address("udp"))
            try:
                reply = sock.recv(65535)
            except OSError:
                return False
        return reply.startswith(b"SIP/2.0 200 ")

    def _create_database(self) -> None:
        if self.database_path.exists():  # started again after halt()
            return
        schemas = ["standard", "auth_db"] + (["presence"] if self.presence or self.xcap else [])
        with sqlite3.connect(self.database_path) as db:
            for schema in schemas:
                db.executescript((SCHEMA_DIR / f"{schema}-create.sql").read_text())
        db.close()
        self._write_users(self._users)

    def _write_users(self, users: dict[str, str]) -> None:
        with sqlite3.connect(self.database_path, timeout=10) as db:
            for username, password in users.items():
                db.execute(
                    "INSERT OR REPLACE INTO subscriber (username, domain, password, ha1, ha1b)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (
                        username,
                        self.domain,
                        password,
                        _md5(f"{username}:{self.domain}:{password}"),
                        _md5(f"{username}@{self.domain}:{self.domain}:{password}"),
                    ),
                )
        db.close()


def options_request(
    target: tuple[str, int], local: tuple[str, int], transport: str = "UDP"
) -> bytes:
    """A minimal out-of-dialog OPTIONS to `target` (for probes over any transport)."""
    tag = uuid.uuid4().hex
    host, port = target
    return (
        f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {local[0]}:{local[1]};branch=z9hG4bK{tag};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:probe@{local[0]}:{local[1]}>;tag={tag[:10]}\r\n"
        f"To: <sip:{host}:{port}>\r\n"
        f"Call-ID: {tag}@{local[0]}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def _checked(transport: str) -> str:
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {TRANSPORTS}, not {transport!r}")
    return transport


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()
