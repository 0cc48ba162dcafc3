"""FileBackend: readable JSON, atomic writes, corrupt files reported and kept."""

import json
import os
import stat
import threading

import pytest

from sipsimple.configuration import ConfigurationError, ConfigurationManager
from sipsimple.configuration.backend import ConfigurationBackendError
from sipsimple.configuration.backend import file as file_module
from sipsimple.configuration.backend.file import FileBackend

SAMPLE = {
    "Accounts": {"alice@example.com": {"enabled": "true", "sip": {"outbound_proxy": None}}},
    "SIPSimpleSettings": {"sip": {"transport_list": ["tls", "tcp"]}, "user_agent": 'a "b"\n'},
}


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_missing_file_loads_empty_and_save_creates_it_0600(tmp_path):
    path = tmp_path / "sub" / "config"
    backend = FileBackend(path)
    assert backend.load() == {}
    backend.save(SAMPLE)
    assert mode(path) == 0o600
    assert FileBackend(path).load() == SAMPLE


def test_the_file_is_sorted_indented_json(tmp_path):
    path = tmp_path / "config"
    backend = FileBackend(path)
    backend.load()
    backend.save(SAMPLE)
    text = path.read_text()
    assert text == json.dumps(SAMPLE, indent=4, sort_keys=True, ensure_ascii=False) + "\n"
    assert text.index('"Accounts"') < text.index('"SIPSimpleSettings"')


def test_existing_permissions_are_tightened_to_0600(tmp_path):
    path = tmp_path / "config"
    path.write_text("{}")
    path.chmod(0o644)
    backend = FileBackend(path)
    backend.load()
    backend.save(SAMPLE)
    assert mode(path) == 0o600


def test_hand_edited_booleans_and_numbers_are_read_as_text(tmp_path):
    path = tmp_path / "config"
    path.write_text('{"S": {"enabled": true, "port": 5060, "ratio": 1.5, "list": [1, false]}}')
    assert FileBackend(path).load() == {
        "S": {"enabled": "true", "port": "5060", "ratio": "1.5", "list": ["1", "false"]}
    }


def test_empty_file_is_an_empty_configuration(tmp_path):
    path = tmp_path / "config"
    path.write_text("\n")
    assert FileBackend(path).load() == {}


CORRUPT = [
    ('{\n    "a": {\n        "b": "c",\n    }\n}\n', 4),  # trailing comma
    ('{\n    "a": {\n        "b": "c"\n    }\n', 5),  # unterminated
    ('{\n    "a": {\n        "b": [["nested"]]\n    }\n}\n', 3),
    ('{\n    "a": {\n        "b": "1",\n        "b": "2"\n    }\n}\n', 4),  # duplicate name
    ('[\n    "not an object"\n]\n', 1),
]


@pytest.mark.parametrize(("content", "line"), CORRUPT)
def test_corrupt_file_is_reported_with_name_and_line_and_kept(tmp_path, content, line):
    path = tmp_path / "config"
    path.write_bytes(content.encode())
    backend = FileBackend(path)
    with pytest.raises(ConfigurationBackendError) as info:
        backend.load()
    assert str(path) in str(info.value)
    assert f"line {line}" in str(info.value)
    assert info.value.lineno == line
    assert info.value.filename == str(path)
    with pytest.raises(ConfigurationBackendError, match="never overwritten"):
        backend.save({"x": "y"})
    assert path.read_bytes() == content.encode()


def test_invalid_utf8_is_reported_with_its_line(tmp_path):
    path = tmp_path / "config"
    content = b'{\n    "a": "\xff"\n}\n'
    path.write_bytes(content)
    with pytest.raises(ConfigurationBackendError, match="line 2"):
        FileBackend(path).load()
    assert path.read_bytes() == content


def test_unreadable_file_is_reported_and_kept(tmp_path):
    path = tmp_path / "config"
    path.mkdir()  # reading a directory fails even as root
    backend = FileBackend(path)
    with pytest.raises(ConfigurationBackendError, match=str(path)):
        backend.load()
    with pytest.raises(ConfigurationBackendError):
        backend.save({})
    assert path.is_dir()


def test_a_backend_that_never_loaded_does_not_write(tmp_path):
    path = tmp_path / "config"
    path.write_text('{"keep": "me"}')
    with pytest.raises(ConfigurationBackendError):
        FileBackend(path).save({})
    assert json.loads(path.read_text()) == {"keep": "me"}


def test_manager_start_on_corrupt_file_fails_then_works_once_fixed(tmp_path):
    path = tmp_path / "config"
    path.write_text('{\n    "SIPSimpleSettings": {\n        "user_agent": "x"\n    \n')
    backend = FileBackend(path)
    manager = ConfigurationManager()
    with pytest.raises(ConfigurationError, match=r"config, line \d"):
        manager.start(backend)
    assert not manager.started
    path.write_text('{"SIPSimpleSettings": {"user_agent": "x"}}')
    manager.start(backend)
    try:
        assert manager.get(["SIPSimpleSettings", "user_agent"]) == "x"
        manager.update("SIPSimpleSettings", {"user_agent": "y"})
        manager.save().result(timeout=5)
    finally:
        manager.stop()
    assert json.loads(path.read_text()) == {"SIPSimpleSettings": {"user_agent": "y"}}


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_a_failure_before_the_rename_keeps_the_old_file_and_no_temporary(
    tmp_path, monkeypatch, failing
):
    path = tmp_path / "config"
    backend = FileBackend(path)
    backend.load()
    backend.save(SAMPLE)
    before = path.read_bytes()

    def broken(*args):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(file_module.os, failing, broken)
    with pytest.raises(ConfigurationBackendError, match="Input/output error"):
        backend.save({"other": "data"})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["config"]
    backend.save({"other": "data"})
    assert FileBackend(path).load() == {"other": "data"}


def test_concurrent_saves_from_8_threads_never_produce_an_invalid_file(tmp_path):
    path = tmp_path / "config"
    backend = FileBackend(path)
    backend.load()
    payloads = [
        {"thread": {"number": str(index), "filler": ["x" * 200] * (50 + index)}}
        for index in range(8)
    ]
    stop = threading.Event()
    seen = set()
    problems = []

    def reader():
        while not stop.is_set():
            try:
                data = json.loads(path.read_text())
            except FileNotFoundError:
                continue
            except ValueError as error:
                problems.append(error)
                return
            seen.add(data["thread"]["number"])

    def writer(payload):
        for _ in range(15):
            backend.save(payload)

    reading = threading.Thread(target=reader)
    reading.start()
    writers = [threading.Thread(target=writer, args=(payload,)) for payload in payloads]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    reading.join()
    assert problems == []
    assert FileBackend(path).load() in payloads
    assert sorted(os.listdir(tmp_path)) == ["config"]


def test_a_symlinked_file_is_updated_through_the_link(tmp_path):
    target = tmp_path / "real-config"
    target.write_text("{}")
    link = tmp_path / "config"
    link.symlink_to(target)
    backend = FileBackend(link)
    backend.load()
    backend.save(SAMPLE)
    assert link.is_symlink()
    assert json.loads(target.read_text()) == SAMPLE
