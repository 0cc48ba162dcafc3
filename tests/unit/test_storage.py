"""FileStorage and MemoryStorage."""

import json
import os
import stat

from sipsimple.configuration import ConfigurationManager
from sipsimple.configuration.backend.file import FileBackend
from sipsimple.configuration.backend.memory import MemoryBackend
from sipsimple.configuration.settings import SIPSimpleSettings
from sipsimple.storage import FileStorage, MemoryStorage


def test_file_storage_creates_its_directory_0700(tmp_path):
    directory = tmp_path / "profile" / "nested"
    storage = FileStorage(directory)
    assert storage.directory == str(directory)
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert isinstance(storage.configuration_backend, FileBackend)
    assert storage.configuration_backend.filename == str(directory / "config")


def test_file_storage_keeps_settings_in_directory_config(tmp_path):
    storage = FileStorage(tmp_path)
    manager = ConfigurationManager()
    manager.start(storage.configuration_backend)
    try:
        settings = SIPSimpleSettings()
        settings.rtp.timeout = 12
        settings.save().result(timeout=5)
    finally:
        manager.stop()
    stored = json.loads((tmp_path / "config").read_text())
    assert stored == {"SIPSimpleSettings": {"rtp": {"timeout": "12"}}}
    assert FileStorage(tmp_path).configuration_backend.load() == stored


def test_memory_storage():
    storage = MemoryStorage()
    assert storage.directory is None
    assert isinstance(storage.configuration_backend, MemoryBackend)
    assert storage.configuration_backend.load() == {}
