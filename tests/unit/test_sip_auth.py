"""Digest authentication client: RFC vectors, challenge parsing, nonce counting, retries."""

import hashlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipsimple.core import (
    AuthenticationError,
    Credentials,
    CredentialsRejectedError,
    DigestAuthenticator,
    SIPParseError,
)
from sipsimple.core.sip.auth import Challenge, digest_response, parse_challenges

RFC7616_CHALLENGE = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm},'
    ' nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",'
    ' opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


def fields(header_value: str) -> dict[str, str]:
    """The auth-params of an Authorization value, read back with the challenge parser."""
    (parsed,) = parse_challenges(header_value)
    assert parsed.scheme == "Digest"
    return parsed.params


def counter_cnonces():
    numbers = itertools.count(1)
    return lambda: f"cnonce{next(numbers)}"


def authenticator(username="alice", password="secret", **kwargs) -> DigestAuthenticator:
    kwargs.setdefault("cnonce_factory", counter_cnonces())
    return DigestAuthenticator(Credentials(username, password), **kwargs)


def md5(text: str | bytes) -> str:
    return hashlib.md5(text.encode() if isinstance(text, str) else text).hexdigest()


# RFC vectors


@pytest.mark.parametrize(
    ("algorithm", "response"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_section_3_9_1(algorithm, response):
    auth = DigestAuthenticator(
        Credentials("Mufasa", "Circle of Life"), cnonce_factory=lambda: RFC7616_CNONCE
    )
    auth.handle_challenge(RFC7616_CHALLENGE.format(algorithm=algorithm))
    [(name, value)] = auth.authorization_headers("GET", "/dir/index.html")
    assert name == "Authorization"
    assert fields(value) == {
        "username": "Mufasa",
        "realm": "http-auth@example.org",
        "uri": "/dir/index.html",
        "algorithm": algorithm,
        "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        "nc": "00000001",
        "cnonce": RFC7616_CNONCE,
        "qop": "auth",
        "response": response,
        "opaque": "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
    }


def test_rfc2617_section_3_5():
    auth = DigestAuthenticator(
        Credentials("Mufasa", "Circle Of Life"), cnonce_factory=lambda: "0a4f113b"
    )
    auth.handle_challenge(
        'Digest\r\n        realm="testrealm@host.com",\r\n        qop="auth,auth-int",\r\n'
        '        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",\r\n'
        '        opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    [(_, value)] = auth.authorization_headers("GET", "/dir/index.html")
    params = fields(value)
    assert params["response"] == "6629fae49393a05397450978507c4ef1"
    assert (params["qop"], params["nc"], params["cnonce"]) == ("auth", "00000001", "0a4f113b")
    assert params["opaque"] == "5ccc069c403ebaf9f0171e9517f40e41"


def test_rfc7616_section_3_9_2_with_erratum_4897():
    # The hashes printed in the RFC came from a draft SHA-512/256; erratum 4897 gives these.
    auth = DigestAuthenticator(
        Credentials("J\u00e4s\u00f8n Doe", "Secret, or not?"),
        cnonce_factory=lambda: "NTg6RKcb9boFIAS3KrFK9BGeh+iDa/sm6jUMp2wds69v",
    )
    auth.handle_challenge(
        'Digest realm="api@example.org", qop="auth", algorithm=SHA-512-256,'
        ' nonce="5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK",'
        ' opaque="HRPCssKJSGjCrkzDg8OhwpzCiGPChXYjwrI2QmXDnsOS", charset=UTF-8, userhash=true'
    )
    [(_, value)] = auth.authorization_headers("GET", "/doe.json")
    params = fields(value)
    assert params["username"] == "793263caabb707a56211940d90411ea4a575adeccb7e360aeb624ed06ece9b0b"
    assert params["userhash"] == "true"
    assert params["response"] == (
        "3798d4131c277846293534c3edc11bd8a5e4cdcbff78b05db9d95eeb1cec68a5"
    )


def test_rfc2069_challenge_without_qop():
    auth = authenticator("Mufasa", "CircleOfLife")
    auth.handle_challenge(
        'Digest realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",'
        ' opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    [(_, value)] = auth.authorization_headers("GET", "/dir/index.html")
    params = fields(value)
    assert params["response"] == "1949323746fe6a43ef61f9606e7febea"
    assert "nc" not in params and "cnonce" not in params and "qop" not in params


def test_md5_sess_vector_from_sip_auth_examples():
    # draft-smith-sipping-auth-examples, section 3.4 (MD5-sess, qop=auth).
    assert (
        digest_response(
            algorithm="md5-SESS",
            username="bob",
            realm="biloxi.com",
            password="zanzibar",
            method="INVITE",
            uri="sip:bob@biloxi.com",
            nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
            qop="auth",
            nonce_count=1,
            cnonce="0a4f113b",
        )
        == "e4e4ea61d186d07a92c9e1f6919902e9"
    )


# Algorithms and quality of protection


@pytest.mark.parametrize(
    ("algorithm", "hash_name"),
    [("SHA-256-sess", "sha256"), ("MD5-sess", "md5"), ("SHA-512-256-sess", "sha512_256")],
)
def test_session_algorithms_keep_one_cnonce_per_nonce(algorithm, hash_name):
    def h(text):
        return hashlib.new(hash_name, text.encode()).hexdigest()

    auth = authenticator()
    auth.handle_challenge(f'Digest realm="r", nonce="n", qop="auth", algorithm={algorithm}')
    for nc in (1, 2):
        [(_, value)] = auth.authorization_headers("REGISTER", "sip:example.com")
        params = fields(value)
        assert params["cnonce"] == "cnonce1"
        ha1 = h(f"{h('alice:r:secret')}:n:cnonce1")
        ha2 = h("REGISTER:sip:example.com")
        assert params["response"] == h(f"{ha1}:n:{nc:08x}:cnonce1:auth:{ha2}")
        assert params["algorithm"] == algorithm


def test_auth_int_hashes_the_body():
    auth = authenticator()
    auth.handle_challenge('Digest realm="r", nonce="n", qop="auth-int"')
    body = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"
    [(_, value)] = auth.authorization_headers("INVITE", "sip:bob@example.com", body)
    params = fields(value)
    assert params["qop"] == "auth-int"
    ha2 = md5(f"INVITE:sip:bob@example.com:{md5(body)}")
    expected = md5(f"{md5('alice:r:secret')}:n:00000001:cnonce1:auth-int:{ha2}")
    assert params["response"] == expected
    [(_, other)] = auth.authorization_headers("INVITE", "sip:bob@example.com", body + b"x")
    assert fields(other)["response"] != expected


def test_auth_is_preferred_when_both_qops_are_offered():
    auth = authenticator()
    [chosen] = auth.handle_challenge('Digest realm="r", nonce="n", qop="auth-int,AUTH"')
    assert chosen.qop == "auth"


def test_strongest_algorithm_wins_across_repeated_headers():
    auth = authenticator()
    [chosen] = auth.handle_challenge(
        [
            'Digest realm="r", nonce="n1", algorithm=MD5, qop="auth"',
            'Digest realm="r", nonce="n2", algorithm=sha-256, qop="auth"',
            'Digest realm="r", nonce="n3", algorithm=SHA-1, qop="auth"',
        ]
    )
    assert (chosen.algorithm, chosen.nonce) == ("SHA-256", "n2")


def test_several_challenges_in_one_header_and_server_order_breaks_ties():
    auth = authenticator()
    [chosen] = auth.handle_challenge(
        'Basic realm="r", Digest realm="r", nonce="a", algorithm=SHA-512-256-sess,'
        ' Digest realm="r", nonce="b", algorithm=SHA-512-256'
    )
    assert (chosen.algorithm, chosen.nonce) == ("SHA-512-256-sess", "a")


def test_www_and_proxy_challenges_give_both_headers():
    auth = authenticator()
    chosen = auth.handle_challenge(
        www_authenticate='Digest realm="registrar", nonce="w"',
        proxy_authenticate=['Digest realm="proxy", nonce="p"'],
    )
    assert [(c.realm, c.proxy) for c in chosen] == [("registrar", False), ("proxy", True)]
    headers = auth.authorization_headers("INVITE", "sip:bob@example.com")
    assert [(name, fields(value)["realm"]) for name, value in headers] == [
        ("Authorization", "registrar"),
        ("Proxy-Authorization", "proxy"),
    ]


# Nonce counting, stale nonces, rejected credentials


def test_nonce_count_increments_and_resets_on_a_new_nonce():
    auth = authenticator()
    auth.handle_challenge('Digest realm="r", nonce="n1", qop="auth"')
    counts = [fields(auth.authorization_headers("MESSAGE", "sip:b@x")[0][1]) for _ in range(3)]
    assert [c["nc"] for c in counts] == ["00000001", "00000002", "00000003"]
    assert len({c["cnonce"] for c in counts}) == 3
    for _ in range(12):
        auth.authorization_headers("MESSAGE", "sip:b@x")
    assert fields(auth.authorization_headers("MESSAGE", "sip:b@x")[0][1])["nc"] == "00000010"
    auth.handle_challenge('Digest realm="r", nonce="n2", qop="auth", stale=TRUE')
    params = fields(auth.authorization_headers("MESSAGE", "sip:b@x")[0][1])
    assert (params["nonce"], params["nc"]) == ("n2", "00000001")


def test_preemptive_authorization_for_later_requests():
    auth = authenticator()
    assert auth.authorization_headers("REGISTER", "sip:example.com") == []
    auth.handle_challenge('Digest realm="r", nonce="n", qop="auth", opaque="o"')
    first = fields(auth.authorization_headers("REGISTER", "sip:example.com")[0][1])
    refresh = fields(auth.authorization_headers("REGISTER", "sip:example.com")[0][1])
    assert (first["nonce"], refresh["nonce"]) == ("n", "n")
    assert refresh["opaque"] == "o" and refresh["nc"] == "00000002"


def test_stale_nonce_is_retried_without_new_credentials():
    auth = authenticator()
    auth.handle_challenge('Digest realm="r", nonce="n1"')
    auth.authorization_headers("REGISTER", "sip:example.com")
    [chosen] = auth.handle_challenge('Digest realm="r", nonce="n2", stale=true')
    assert chosen.stale and chosen.nonce == "n2"
    assert fields(auth.authorization_headers("REGISTER", "sip:x")[0][1])["nonce"] == "n2"


def test_a_second_fresh_challenge_means_the_password_is_wrong():
    auth = authenticator()
    auth.handle_challenge('Digest realm="r", nonce="n1"')
    auth.authorization_headers("REGISTER", "sip:example.com")
    with pytest.raises(CredentialsRejectedError, match=r"'alice'.*realm 'r'"):
        auth.handle_challenge('Digest realm="r", nonce="n2", stale=false')


def test_two_stale_answers_in_a_row_stop_the_retries():
    auth = authenticator()
    auth.handle_challenge('Digest realm="r", nonce="n1"')
    auth.authorization_headers("REGISTER", "sip:example.com")
    auth.handle_challenge('Digest realm="r", nonce="n2", stale=true')
    auth.authorization_headers("REGISTER", "sip:example.com")
    with pytest.raises(CredentialsRejectedError, match="stale=true twice"):
        auth.handle_challenge('Digest realm="r", nonce="n3", stale=true')


def test_a_challenge_after_preemptive_use_is_answered_again():
    # A server that forgot its nonces (restart) challenges a refresh without stale=true.
    auth = authenticator()
    auth.handle_challenge('Digest realm="r", nonce="n1"')
    auth.authorization_headers("REGISTER", "sip:example.com")
    auth.authorization_headers("REGISTER", "sip:example.com")
    [chosen] = auth.handle_challenge('Digest realm="r", nonce="n2"')
    assert chosen.nonce == "n2"


def test_new_credentials_forget_the_challenges():
    auth = authenticator()
    auth.handle_challenge('Digest realm="r", nonce="n1"')
    auth.authorization_headers("REGISTER", "sip:example.com")
    auth.credentials = Credentials("alice", "fixed")
    assert auth.challenges == []
    auth.handle_challenge('Digest realm="r", nonce="n2"')
    auth.forget()
    assert auth.authorization_headers("REGISTER", "sip:example.com") == []


# Credentials and what cannot be answered


def test_realm_specific_credentials_win_over_the_wildcard():
    auth = DigestAuthenticator(
        [Credentials("any", "p1"), Credentials("proxyuser", "p2", realm="proxy")],
        cnonce_factory=counter_cnonces(),
    )
    auth.handle_challenge(['Digest realm="proxy", nonce="a"', 'Digest realm="other", nonce="b"'])
    users = [fields(v)["username"] for _, v in auth.authorization_headers("INVITE", "sip:x")]
    assert users == ["proxyuser", "any"]


@pytest.mark.parametrize(
    ("challenges", "reason"),
    [
        ([], "carried no challenge"),
        (['Basic realm="r"'], "scheme Basic is not supported"),
        (['Digest realm="r", nonce="n", algorithm=SHA-1'], "algorithm SHA-1 is not supported"),
        (['Digest realm="r", nonce="n", qop="auth-conf"'], "qop 'auth-conf' is not supported"),
        (['Digest realm="r"'], "without nonce"),
        (['Digest realm="r", nonce="n" junk'], "malformed auth-param"),
        (['Digest realm="r", nonce="\ud800"'], "undecodable text"),
    ],
)
def test_unanswerable_challenges_raise_a_clear_error(challenges, reason):
    with pytest.raises(AuthenticationError, match=reason):
        authenticator().handle_challenge(challenges)


def test_missing_credentials_for_the_realm():
    auth = DigestAuthenticator(Credentials("alice", "pw", realm="home"))
    with pytest.raises(AuthenticationError, match="no credentials for realm 'away'"):
        auth.handle_challenge('Digest realm="away", nonce="n"')


def test_an_unanswerable_challenge_beside_a_good_one_is_skipped():
    auth = authenticator()
    [chosen] = auth.handle_challenge(["Negotiate abc==", 'Digest realm="r", nonce="n"'])
    assert chosen.realm == "r"


def test_undecodable_bytes_kept_by_surrogateescape_are_hashed_as_sent():
    auth = authenticator()
    auth.handle_challenge('Digest realm="r", nonce="n\udcff"')
    [(_, value)] = auth.authorization_headers("OPTIONS", "sip:x")
    ha1 = md5("alice:r:secret")
    assert fields(value)["response"] == md5(
        f"{ha1}:".encode() + b"n\xff:" + md5("OPTIONS:sip:x").encode()
    )


def test_credentials_value_and_repr():
    credentials = Credentials("alice", "s3cret")
    assert credentials.realm == "*" and credentials.matches("anything")
    assert "s3cret" not in repr(credentials) and repr(credentials) == "<Credentials for 'alice'>"
    assert not Credentials("a", "b", realm="home").matches("Home")
    with pytest.raises(TypeError):
        Credentials("alice", None)
    with pytest.raises(ValueError):
        Credentials("alice", "pw", realm="")
    with pytest.raises(TypeError):
        DigestAuthenticator([])
    with pytest.raises(TypeError):
        authenticator().authorization_headers("REGISTER", "sip:x", "text body")


def test_quotes_and_backslashes_are_escaped_in_the_answer():
    auth = DigestAuthenticator(Credentials('al"ice\\', "pw"), cnonce_factory=lambda: "c")
    auth.handle_challenge(r'Digest realm="r\"1", nonce="n"')
    params = fields(auth.authorization_headers("OPTIONS", "sip:x")[0][1])
    assert (params["username"], params["realm"]) == ('al"ice\\', 'r"1')
    ha1 = md5('al"ice\\' + ':r"1:pw')
    assert params["response"] == md5(f"{ha1}:n:{md5('OPTIONS:sip:x')}")


# Challenge parser


def test_parser_reads_quoted_commas_escapes_and_case_insensitive_names():
    [digest, basic] = parse_challenges(
        'DIGEST REALM="a, b", Nonce="x\\"y", ALGORITHM=md5-Sess, domain="sip:a sip:b",'
        " Basic realm=r"
    )
    assert digest == Challenge(
        "DIGEST",
        {"realm": "a, b", "nonce": 'x"y', "algorithm": "md5-Sess", "domain": "sip:a sip:b"},
    )
    assert basic == Challenge("Basic", {"realm": "r"})


def test_parser_reads_token68_and_bare_schemes_and_empty_list_elements():
    assert parse_challenges(" , Negotiate abc==,, Basic ,Digest realm=r,,") == [
        Challenge("Negotiate", token68="abc=="),
        Challenge("Basic"),
        Challenge("Digest", {"realm": "r"}),
    ]


@pytest.mark.parametrize(
    "text",
    [
        '"quoted"',
        "Basic Digest realm=r",
        'Digest realm="open',
        "Digest realm=a realm2=b",
        "Digest realm=a, realm=b",
        "Digest =x",
    ],
)
def test_parser_rejects_malformed_text(text):
    with pytest.raises(SIPParseError):
        parse_challenges(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('Digest realm=",\\ \tabc=\r\n/*')), max_size=60))
def test_parser_raises_only_its_parse_error_on_garbage(text):
    try:
        parse_challenges(text)
    except SIPParseError:
        pass


_tokens = st.from_regex(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,8}", fullmatch=True)


@settings(max_examples=150, deadline=None)
@given(
    scheme=_tokens,
    params=st.dictionaries(
        _tokens.map(str.lower), st.text(st.characters(exclude_categories=("Cs",))), max_size=5
    ),
)
def test_parser_round_trips_quoted_values(scheme, params):
    def quote(value):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    text = scheme + " " + ", ".join(f"{name}={quote(value)}" for name, value in params.items())
    assert parse_challenges(text + ", Other x=y") == [
        Challenge(scheme, params),
        Challenge("Other", {"x": "y"}),
    ]
