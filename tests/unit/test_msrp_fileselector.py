"""The RFC 5547 file-selector attribute."""

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipsimple.msrp import FileSelector, MSRPParseError

RFC_EXAMPLE = (
    'name:"My cool picture.jpg" type:image/jpeg size:32349 '
    "hash:sha-1:72:24:5F:E8:65:3D:DA:F3:71:36:2F:86:D4:71:91:3E:E4:A2:CE:2E"
)


def test_rfc5547_example():
    selector = FileSelector.parse(RFC_EXAMPLE)
    assert selector.name == "My cool picture.jpg"
    assert selector.type == "image/jpeg"
    assert selector.size == 32349
    assert selector.hash == "sha-1:72:24:5F:E8:65:3D:DA:F3:71:36:2F:86:D4:71:91:3E:E4:A2:CE:2E"
    assert selector.sdp_repr == RFC_EXAMPLE


def test_legacy_forms_from_other_clients():
    selector = FileSelector.parse(
        'a=file-selector:name:"reblink.pdf" type:com.adobe.pdf size:268759 '
        "hash:sha1:60:a1:be:8d:71:db:e3:8e:84:c9:2c:62:9e:f2:99:78:9d:68:79:f6"
    )
    assert selector.type == "com.adobe.pdf"
    assert selector.hash.startswith("sha-1:60:A1:BE")


def test_type_parameters_and_unknown_selectors():
    selector = FileSelector.parse('type:text/plain;charset="utf-8" future:"x y" size:3')
    assert selector.type == 'text/plain;charset="utf-8"' and selector.size == 3
    assert selector.name is None and selector.hash is None


def test_name_percent_encoding():
    selector = FileSelector(name='50% "off"\n.txt', size=1)
    assert selector.sdp_repr == 'name:"50%25 %22off%22%0A.txt" size:1'
    assert FileSelector.parse(selector.sdp_repr) == selector


@pytest.mark.parametrize(
    "text", ['name:"unterminated', "size:-1", "size:12x", "hash:sha-1:7", 'name:"a"size:1', "%%%"]
)
def test_invalid(text):
    with pytest.raises(MSRPParseError):
        FileSelector.parse(text)


def test_for_file(tmp_path):
    path = tmp_path / "photo.jpg"
    content = bytes(range(256)) * 5000
    path.write_bytes(content)
    selector = FileSelector.for_file(path)
    digest = hashlib.sha1(content).hexdigest().upper()
    assert selector.hash == "sha-1:" + ":".join(digest[i : i + 2] for i in range(0, 40, 2))
    assert (selector.name, selector.type, selector.size) == (
        "photo.jpg",
        "image/jpeg",
        len(content),
    )
    assert selector.path == str(path)
    plain = FileSelector.for_file(str(path), "application/x-thing", compute_hash=False)
    assert plain.hash is None and plain.type == "application/x-thing"
    with pytest.raises(FileNotFoundError):
        FileSelector.for_file(tmp_path / "missing")


def test_sdp_repr_uses_the_base_name():
    assert FileSelector(name="/home/user/a b.txt").sdp_repr == 'name:"a b.txt"'


@settings(max_examples=150, deadline=None)
@given(
    st.text(min_size=1).filter(lambda n: "/" not in n and "\\" not in n),
    st.integers(0, 2**40),
    st.binary(min_size=20, max_size=20),
)
def test_round_trip(name, size, digest):
    hash_value = "sha-1:" + digest.hex(":").upper()
    selector = FileSelector(name, "application/octet-stream", size, hash_value)
    assert FileSelector.parse(selector.sdp_repr) == selector
