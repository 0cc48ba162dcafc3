"""Digest authentication, client side (RFC 3261 section 22, RFC 2617, RFC 7616, RFC 8760).

Sans-IO: the transaction user hands the raw text of the WWW-Authenticate and
Proxy-Authenticate headers of a 401/407 to a :class:`DigestAuthenticator` and asks it
for the Authorization / Proxy-Authorization values of the next request. The
authenticator remembers the chosen challenge of each realm, so later requests of the
same registration or dialog are authorized pre-emptively with an incremented nonce
count. It holds no clock and opens nothing; the cnonce source is injectable so tests
are deterministic.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sipsimple.core.errors import SIPCoreError, SIPParseError

__all__ = [
    "AuthenticationError",
    "Challenge",
    "Credentials",
    "CredentialsRejectedError",
    "DigestAuthenticator",
    "DigestChallenge",
    "digest_response",
    "parse_challenges",
]


class AuthenticationError(SIPCoreError):
    """No challenge of a 401/407 can be answered; the message lists why for each one."""


class CredentialsRejectedError(AuthenticationError):
    """The server challenged again a realm whose fresh challenge we had just answered.

    The username or password is wrong: retrying with the same credentials would loop.
    """


@dataclass(frozen=True, repr=False)
class Credentials:
    """A username and password for one realm, or for any realm when realm is ``'*'``."""

    username: str
    password: str
    realm: str = "*"

    def __post_init__(self) -> None:
        for name in ("username", "password", "realm"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"Credentials.{name} must be a str")
        if not self.realm:
            raise ValueError("Credentials.realm must not be empty (use '*' for any realm)")

    def __repr__(self) -> str:
        return f"<Credentials for {self.username!r}>"

    def matches(self, realm: str) -> bool:
        """Whether these credentials may answer a challenge of this realm."""
        return self.realm == "*" or self.realm == realm


@dataclass(frozen=True)
class Challenge:
    """One challenge of a WWW-Authenticate / Proxy-Authenticate header (RFC 7235 grammar).

    Parameter names are lower-cased; quoted values are unquoted.
    """

    scheme: str
    params: dict[str, str] = field(default_factory=dict)
    token68: str | None = None


_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_WS = r"[ \t\r\n]*"
_END = rf"{_WS}(?=,|$)"
_SCHEME_RE = re.compile(rf"{_WS}({_TOKEN})(?=[ \t\r\n,]|$)")
_PARAM_RE = re.compile(
    rf"{_WS}({_TOKEN}){_WS}={_WS}({_QUOTED}|[^\s,\"=][^\s,\"]*){_END}", re.DOTALL
)
_TOKEN68_RE = re.compile(rf"{_WS}([A-Za-z0-9\-._~+/]+=*){_END}")
_PARAM_START_RE = re.compile(rf"{_WS}{_TOKEN}{_WS}=")
_SEPARATORS_RE = re.compile(rf"(?:{_WS},)*{_WS}")
_ESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)


def _unquote(value: str) -> str:
    if value.startswith('"'):
        return _ESCAPE_RE.sub(r"\1", value[1:-1])
    return value


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_challenges(text: str) -> list[Challenge]:
    """Parse the value of one WWW-Authenticate / Proxy-Authenticate header.

    A value may hold several challenges separated by commas; commas inside quoted
    strings are data. Raises SIPParseError, saying where and why, on malformed text.
    """
    challenges: list[Challenge] = []
    pos = _SEPARATORS_RE.match(text).end()
    while pos < len(text):
        scheme = _SCHEME_RE.match(text, pos)
        if scheme is None:
            raise SIPParseError(f"expected an auth-scheme at offset {pos} of {text!r}")
        pos = scheme.end()
        params: dict[str, str] = {}
        token68 = None
        blob = _TOKEN68_RE.match(text, pos)
        if blob is not None and _PARAM_RE.match(text, pos) is None:
            token68 = blob.group(1)
            pos = blob.end()
        while (param := _PARAM_RE.match(text, pos)) is not None:
            name = param.group(1).lower()
            if name in params:
                raise SIPParseError(f"auth-param {name!r} repeated in {text!r}")
            params[name] = _unquote(param.group(2))
            pos = _SEPARATORS_RE.match(text, param.end()).end()
        if _PARAM_START_RE.match(text, pos) is not None:
            raise SIPParseError(
                f"malformed auth-param at offset {pos} of {text!r} (a value must be a token"
                " or a closed quoted string followed by ',')"
            )
        challenges.append(Challenge(scheme.group(1), params, token68))
        # A parameter or token68 always ends at a comma; a bare scheme must be followed by one.
        separators = _SEPARATORS_RE.match(text, pos)
        bare = not params and token68 is None
        if bare and separators.end() < len(text) and "," not in text[pos : separators.end()]:
            raise SIPParseError(f"expected ',' at offset {separators.end()} of {text!r}")
        pos = separators.end()
    return challenges


@dataclass(frozen=True)
class _Algorithm:
    name: str
    hash_name: str
    strength: int
    session: bool

    def hash(self, data: str | bytes) -> str:
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        return hashlib.new(self.hash_name, data).hexdigest()


_ALGORITHMS = {
    algorithm.name.lower(): algorithm
    for algorithm in (
        _Algorithm("MD5", "md5", 0, False),
        _Algorithm("MD5-sess", "md5", 0, True),
        _Algorithm("SHA-256", "sha256", 1, False),
        _Algorithm("SHA-256-sess", "sha256", 1, True),
        _Algorithm("SHA-512-256", "sha512_256", 2, False),
        _Algorithm("SHA-512-256-sess", "sha512_256", 2, True),
    )
}
_QOP_PREFERENCE = ("auth", "auth-int")


@dataclass(frozen=True)
class DigestChallenge:
    """A Digest challenge we know how to answer, as chosen for one realm.

    ``proxy`` tells whether it came in Proxy-Authenticate (answered in
    Proxy-Authorization) or WWW-Authenticate (answered in Authorization).
    ``qop`` is the quality of protection we answer with, None for an RFC 2069 challenge.
    """

    realm: str
    nonce: str
    algorithm: str
    qop: str | None
    opaque: str | None
    stale: bool
    userhash: bool
    proxy: bool

    @classmethod
    def from_challenge(cls, challenge: Challenge, proxy: bool) -> DigestChallenge:
        """Validate a generic challenge; AuthenticationError says why we cannot answer it."""
        if challenge.scheme.lower() != "digest":
            raise AuthenticationError(f"scheme {challenge.scheme} is not supported")
        params = challenge.params
        try:
            "".join(params.values()).encode("utf-8", "surrogateescape")
        except UnicodeEncodeError as error:
            raise AuthenticationError(f"Digest challenge with undecodable text: {error}") from None
        for name in ("realm", "nonce"):
            if name not in params:
                raise AuthenticationError(f"Digest challenge without {name}")
        algorithm = _ALGORITHMS.get(params.get("algorithm", "MD5").lower())
        if algorithm is None:
            supported = ", ".join(a.name for a in _ALGORITHMS.values())
            raise AuthenticationError(
                f"realm {params['realm']!r}: algorithm {params['algorithm']} is not supported"
                f" (supported: {supported})"
            )
        qop = None
        if "qop" in params:
            offered = {option.strip().lower() for option in params["qop"].split(",")}
            qop = next((option for option in _QOP_PREFERENCE if option in offered), None)
            if qop is None:
                raise AuthenticationError(
                    f"realm {params['realm']!r}: qop {params['qop']!r} is not supported"
                    " (supported: auth, auth-int)"
                )
        return cls(
            realm=params["realm"],
            nonce=params["nonce"],
            algorithm=algorithm.name,
            qop=qop,
            opaque=params.get("opaque"),
            stale=params.get("stale", "").lower() == "true",
            userhash=params.get("userhash", "").lower() == "true",
            proxy=proxy,
        )

    @property
    def header_name(self) -> str:
        """The request header that answers this challenge."""
        return "Proxy-Authorization" if self.proxy else "Authorization"


@dataclass
class _RealmState:
    challenge: DigestChallenge
    credentials: Credentials
    nonce_count: int = 0
    session_cnonce: str | None = None


def _new_cnonce() -> str:
    return secrets.token_hex(16)


def _as_list(values: str | Iterable[str]) -> list[str]:
    return [values] if isinstance(values, str) else list(values)


class DigestAuthenticator:
    """Answers 401/407 challenges and authorizes later requests of the same usage.

    Feed it the challenge headers of each 401/407 with :meth:`handle_challenge`, then
    put the pairs of :meth:`authorization_headers` in the retried request and in every
    later request of the registration or dialog. One instance per usage: it keeps one
    challenge per (header kind, realm), and the nonce count of its nonce.
    """

    def __init__(
        self,
        credentials: Credentials | Iterable[Credentials],
        *,
        cnonce_factory: Callable[[], str] = _new_cnonce,
    ) -> None:
        self._realms: dict[tuple[bool, str], _RealmState] = {}
        self.credentials = credentials
        self._cnonce_factory = cnonce_factory

    @property
    def credentials(self) -> tuple[Credentials, ...]:
        """The credentials to answer with; those naming a realm win over '*'.

        Setting new credentials forgets the remembered challenges.
        """
        return self._credentials

    @credentials.setter
    def credentials(self, value: Credentials | Iterable[Credentials]) -> None:
        candidates = (value,) if isinstance(value, Credentials) else tuple(value)
        if not candidates or not all(isinstance(c, Credentials) for c in candidates):
            raise TypeError("credentials must be a Credentials or a non-empty iterable of them")
        self._credentials = candidates
        self._realms.clear()

    @property
    def challenges(self) -> list[DigestChallenge]:
        """The challenges currently answered, one per realm, oldest first."""
        return [state.challenge for state in self._realms.values()]

    def _credentials_for(self, realm: str) -> Credentials | None:
        exact = [c for c in self._credentials if c.realm == realm]
        wildcard = [c for c in self._credentials if c.matches(realm)]
        return next(iter(exact + wildcard), None)

    def handle_challenge(
        self,
        www_authenticate: str | Iterable[str] = (),
        proxy_authenticate: str | Iterable[str] = (),
    ) -> list[DigestChallenge]:
        """Learn the challenges of a 401/407 and return those that will be answered.

        Takes the raw values of the WWW-Authenticate and Proxy-Authenticate headers (one
        string or one per header). For each realm the strongest supported algorithm is
        chosen (the server's order breaks ties). A stale=true challenge replaces the nonce
        silently. Raises CredentialsRejectedError when a realm whose fresh challenge was
        just answered is challenged again without stale=true, and AuthenticationError
        when no challenge can be answered.
        """
        problems: list[str] = []
        chosen: dict[tuple[bool, str], tuple[DigestChallenge, Credentials]] = {}
        for proxy, values in ((False, www_authenticate), (True, proxy_authenticate)):
            for value in _as_list(values):
                try:
                    parsed = parse_challenges(value)
                except SIPParseError as error:
                    problems.append(str(error))
                    continue
                for challenge in parsed:
                    try:
                        digest = DigestChallenge.from_challenge(challenge, proxy)
                    except AuthenticationError as error:
                        problems.append(str(error))
                        continue
                    credentials = self._credentials_for(digest.realm)
                    if credentials is None:
                        problems.append(f"no credentials for realm {digest.realm!r}")
                        continue
                    key = (proxy, digest.realm)
                    if key not in chosen or _strength(digest) > _strength(chosen[key][0]):
                        chosen[key] = (digest, credentials)
        if not chosen:
            reasons = "; ".join(problems) or "the response carried no challenge"
            raise AuthenticationError(f"cannot answer the authentication challenge: {reasons}")
        for key, (digest, _) in chosen.items():
            previous = self._realms.get(key)
            if previous is not None and previous.nonce_count == 1:
                if not digest.stale:
                    raise CredentialsRejectedError(
                        f"the credentials of {previous.credentials.username!r} were rejected"
                        f" for realm {digest.realm!r}"
                    )
                if previous.challenge.stale:
                    raise CredentialsRejectedError(
                        f"realm {digest.realm!r} answered stale=true twice in a row to"
                        f" {previous.credentials.username!r}"
                    )
        for key, (digest, credentials) in chosen.items():
            self._realms[key] = _RealmState(digest, credentials)
        return [digest for digest, _ in chosen.values()]

    def authorization_headers(
        self, method: str, uri: str, body: bytes = b""
    ) -> list[tuple[str, str]]:
        """The (header name, value) pairs that authorize a request, one per known realm.

        ``uri`` is the Request-URI exactly as sent; ``body`` is hashed for qop=auth-int.
        Each call counts as one use of each nonce (nc increments).
        """
        if not isinstance(body, bytes):
            raise TypeError("body must be bytes")
        headers = []
        for state in self._realms.values():
            state.nonce_count += 1
            headers.append((state.challenge.header_name, self._answer(state, method, uri, body)))
        return headers

    def forget(self) -> None:
        """Drop every remembered challenge (a new registration or dialog starts clean)."""
        self._realms.clear()

    def _answer(self, state: _RealmState, method: str, uri: str, body: bytes) -> str:
        challenge, credentials = state.challenge, state.credentials
        algorithm = _ALGORITHMS[challenge.algorithm.lower()]
        cnonce = None
        if algorithm.session:
            if state.session_cnonce is None:
                state.session_cnonce = self._cnonce_factory()
            cnonce = state.session_cnonce
        elif challenge.qop is not None:
            cnonce = self._cnonce_factory()
        response = digest_response(
            algorithm=challenge.algorithm,
            username=credentials.username,
            realm=challenge.realm,
            password=credentials.password,
            method=method,
            uri=uri,
            nonce=challenge.nonce,
            qop=challenge.qop,
            nonce_count=state.nonce_count,
            cnonce=cnonce,
            body=body,
        )
        username = credentials.username
        if challenge.userhash:
            username = algorithm.hash(f"{credentials.username}:{challenge.realm}")
        parts = [
            f"username={_quote(username)}",
            f"realm={_quote(challenge.realm)}",
            f"nonce={_quote(challenge.nonce)}",
            f"uri={_quote(uri)}",
            f'response="{response}"',
            f"algorithm={challenge.algorithm}",
        ]
        if cnonce is not None:
            parts.append(f"cnonce={_quote(cnonce)}")
        if challenge.opaque is not None:
            parts.append(f"opaque={_quote(challenge.opaque)}")
        if challenge.qop is not None:
            parts.append(f"qop={challenge.qop}")
            parts.append(f"nc={state.nonce_count:08x}")
        if challenge.userhash:
            parts.append("userhash=true")
        return "Digest " + ", ".join(parts)


def _strength(challenge: DigestChallenge) -> int:
    return _ALGORITHMS[challenge.algorithm.lower()].strength


def digest_response(
    *,
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None,
    nonce_count: int,
    cnonce: str | None,
    body: bytes = b"",
) -> str:
    """The request-digest of RFC 7616 section 3.4.1 (RFC 2069 form when qop is None)."""
    hasher = _ALGORITHMS[algorithm.lower()]
    ha1 = hasher.hash(f"{username}:{realm}:{password}")
    if hasher.session:
        ha1 = hasher.hash(f"{ha1}:{nonce}:{cnonce}")
    a2 = f"{method}:{uri}"
    if qop == "auth-int":
        a2 = f"{a2}:{hasher.hash(body)}"
    ha2 = hasher.hash(a2)
    if qop is None:
        return hasher.hash(f"{ha1}:{nonce}:{ha2}")
    return hasher.hash(f"{ha1}:{nonce}:{nonce_count:08x}:{cnonce}:{qop}:{ha2}")
