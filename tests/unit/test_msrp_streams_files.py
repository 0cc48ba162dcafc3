"""Received files on disk (sipsimple.streams.msrp.files): safe names, no overwriting,
partial files with metadata, resuming, and the hash check."""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipsimple.streams.msrp.files import (
    FileHashMismatchError,
    IncomingFile,
    find_partial,
    move_unique,
    safe_name,
    sha1_selector_hash,
)

DATA = bytes(range(256)) * 40  # 10240 bytes
HASH = sha1_selector_hash(hashlib.sha1(DATA).digest())


@pytest.mark.parametrize(
    ("offered", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("résumé ✓ final.pdf", "résumé ✓ final.pdf"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("/absolute/path.txt", "path.txt"),
        (".bashrc", "bashrc"),
        ("...", "file"),
        ("", "file"),
        (None, "file"),
        ("a\x00b\nc\u202e.txt", "abc.txt"),
        ("dir/", "file"),
    ],
)
def test_safe_name(offered: str | None, expected: str) -> None:
    assert safe_name(offered) == expected


def test_safe_name_shortens_long_names_and_keeps_the_extension() -> None:
    name = safe_name("é" * 300 + ".tar")
    assert name.endswith(".tar") and len(name.encode()) <= 200
    assert set(name[:-4]) == {"é"}  # no character cut in half


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_safe_names_stay_in_the_directory(offered: str) -> None:
    name = safe_name(offered)
    directory = Path("/downloads")
    assert name and not name.startswith(".") and "/" not in name and "\\" not in name
    assert len(name.encode()) <= 200
    assert (directory / name).parent == directory
    assert name not in (".", "..")


def test_move_unique_never_takes_an_existing_name(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "README").write_text("mine")
    os.symlink("/etc/hostname", tmp_path / "link.txt")

    def move(name: str, text: str) -> Path:
        source = tmp_path / f"{text}.part"
        source.write_text(text)
        moved = move_unique(source, tmp_path, name)
        assert not source.exists() and moved.read_text() == text
        return moved

    assert move("notes.txt", "a").name == "notes (1).txt"
    assert move("notes.txt", "b").name == "notes (2).txt"
    assert move("README", "c").name == "README (1)"
    assert move("link.txt", "d").name == "link (1).txt"  # links are not followed
    assert move("fresh.txt", "e").name == "fresh.txt"
    assert (tmp_path / "notes.txt").read_text() == "mine"
    with pytest.raises(ValueError):
        move("../outside.txt", "f")


def test_move_unique_links_instead_of_replacing_a_placeholder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Renaming onto a placeholder makes ext4 write the whole file out at once.
    def no_replace(*args: object) -> None:
        raise AssertionError("os.replace() onto a placeholder")

    monkeypatch.setattr(os, "replace", no_replace)
    (tmp_path / "data.bin").write_text("theirs")
    source = tmp_path / "data.bin.part"
    source.write_text("ours")
    inode = source.stat().st_ino
    moved = move_unique(source, tmp_path, "data.bin")
    assert moved.name == "data (1).bin" and moved.stat().st_ino == inode
    assert not source.exists()


def test_move_unique_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(source: object, target: object) -> None:
        raise PermissionError(errno.EPERM, "no hard links here")

    monkeypatch.setattr(os, "link", no_links)  # a file system without them (FAT)
    (tmp_path / "data.bin").write_text("theirs")
    source = tmp_path / "data.bin.part"
    source.write_text("ours")
    moved = move_unique(source, tmp_path, "data.bin")
    assert moved.name == "data (1).bin" and moved.read_text() == "ours"
    assert (tmp_path / "data.bin").read_text() == "theirs" and not source.exists()


def receive(directory: Path, data: bytes = DATA, file_hash: str | None = HASH) -> IncomingFile:
    incoming = IncomingFile(directory, "data.bin", len(data), file_hash, "application/x-test")
    return incoming


def test_a_file_arrives_in_a_partial_file_then_gets_its_name(tmp_path: Path) -> None:
    incoming = receive(tmp_path)
    assert incoming.open() == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin.part", "data.bin.part.json"]
    incoming.write(0, DATA[:4000])
    incoming.write(4000, DATA[4000:])
    final = incoming.finish()
    assert final == tmp_path / "data.bin" and final.read_bytes() == DATA
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]


def test_a_second_file_of_the_same_name_gets_a_new_one(tmp_path: Path) -> None:
    (tmp_path / "data.bin").write_bytes(b"older")
    incoming = receive(tmp_path)
    incoming.open()
    incoming.write(0, DATA)
    assert incoming.finish().name == "data (1).bin"
    assert (tmp_path / "data.bin").read_bytes() == b"older"


def test_interrupted_files_are_kept_and_resumed(tmp_path: Path) -> None:
    first = receive(tmp_path)
    first.open()
    first.write(0, DATA[:3000])
    first.close()
    metadata = json.loads((tmp_path / "data.bin.part.json").read_text())
    assert metadata == {
        "name": "data.bin",
        "size": len(DATA),
        "type": "application/x-test",
        "hash": HASH,
        "offset": 3000,
    }
    second = receive(tmp_path)
    assert second.open() == 3000
    second.write(3000, DATA[3000:])
    assert second.finish().read_bytes() == DATA
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]


def test_resuming_trusts_the_disk_over_the_metadata(tmp_path: Path) -> None:
    first = receive(tmp_path)
    first.open()
    first.write(0, DATA[:3000])
    first.close()
    with open(tmp_path / "data.bin.part", "r+b") as part:
        part.truncate(1000)  # less on disk than the metadata says
    second = receive(tmp_path)
    assert second.open() == 1000
    second.write(1000, DATA[1000:])
    assert second.finish().read_bytes() == DATA


def test_partial_files_of_other_transfers_are_left_alone(tmp_path: Path) -> None:
    first = receive(tmp_path)
    first.open()
    first.write(0, DATA[:3000])
    first.close()
    other = DATA[::-1]
    other_hash = sha1_selector_hash(hashlib.sha1(other).digest())
    incoming = receive(tmp_path, other, other_hash)
    assert incoming.open() == 0
    assert incoming.partial is not None and incoming.partial.name == "data.bin (1).part"
    assert find_partial(tmp_path, other_hash, len(DATA) + 1) is None  # size differs
    (tmp_path / "broken.part.json").write_text("{not json")
    found = find_partial(tmp_path, HASH, len(DATA))
    assert found is not None and found.offset == 3000
    assert find_partial(tmp_path, HASH, len(DATA)) is None  # in use by the first finder


def test_transfers_without_a_hash_never_resume(tmp_path: Path) -> None:
    first = receive(tmp_path, file_hash=None)
    first.open()
    first.write(0, DATA[:3000])
    first.close()
    second = receive(tmp_path, file_hash=None)
    assert second.open() == 0
    second.write(0, DATA)
    assert second.finish().read_bytes() == DATA


def test_a_wrong_hash_removes_the_data(tmp_path: Path) -> None:
    incoming = receive(tmp_path)
    incoming.open()
    corrupted = bytearray(DATA)
    corrupted[5000] ^= 0xFF
    incoming.write(0, corrupted)
    with pytest.raises(FileHashMismatchError, match="differs"):
        incoming.finish()
    assert list(tmp_path.iterdir()) == []


def test_out_of_order_and_repeated_data_is_hashed_whole(tmp_path: Path) -> None:
    incoming = receive(tmp_path)
    incoming.open()
    incoming.write(6000, DATA[6000:])
    incoming.write(0, DATA[:4000])
    incoming.write(2000, DATA[2000:6000])
    assert incoming.finish().read_bytes() == DATA


def test_many_pieces_are_written_in_one_call_and_hashed(tmp_path: Path) -> None:
    incoming = receive(tmp_path)
    incoming.open()
    cuts = [*range(0, len(DATA), 7), len(DATA)]  # 1463 pieces: more than one pwritev
    pieces: list[bytes | bytearray | memoryview] = []
    for number, (start, end) in enumerate(itertools.pairwise(cuts)):
        piece = DATA[start:end]
        pieces.append([piece, bytearray(piece), memoryview(piece)][number % 3])
        if number == 100:
            pieces.append(b"")
    incoming.write(0, *pieces)
    assert incoming.contiguous == len(DATA)
    assert incoming.finish().read_bytes() == DATA


def test_progress_is_saved_every_16_mb(tmp_path: Path) -> None:
    block = bytes(range(256)) * 4096  # 1 MB
    size = 17 * len(block)
    incoming = IncomingFile(tmp_path, "big.bin", size, None, None)
    incoming.open()
    metadata = tmp_path / "big.bin.part.json"
    for number in range(17):
        incoming.write(number * len(block), block)
        incoming.save()
        saved = json.loads(metadata.read_text())["offset"]
        assert saved == (16 * len(block) if number >= 15 else 0)
    incoming.close()
    assert json.loads(metadata.read_text())["offset"] == size


def test_the_hash_format_follows_the_file_selector() -> None:
    digest = hashlib.sha1(b"abc").digest()
    assert sha1_selector_hash(digest) == "sha-1:" + ":".join(f"{b:02X}" for b in digest)


def test_the_blocks_to_come_are_reserved_and_a_kept_partial_file_gives_them_back(
    tmp_path: Path,
) -> None:
    # Linux file systems with fallocate() (ext4, xfs, tmpfs...): the blocks of the whole
    # file are allocated at open without changing its size, and a transfer kept partial
    # frees those it did not fill.
    size = 4 * 1024 * 1024
    incoming = IncomingFile(tmp_path, "big.bin", size, None, None)
    incoming.open()
    assert incoming.partial is not None
    stat = incoming.partial.stat()
    if stat.st_blocks * 512 < size:
        pytest.skip("no block reservation here (not Linux, or no fallocate)")
    assert stat.st_size == 0
    incoming.write(0, DATA)
    incoming.close()
    stat = incoming.partial.stat()
    assert stat.st_size == len(DATA) and stat.st_blocks * 512 < size // 2
    resumed = IncomingFile(tmp_path, "big.bin", size, None, None)
    assert resumed.open() == 0  # unverifiable: a new partial file
    resumed.discard()
