"""AudioMixer tick hooks: run at the start of every frame, before the ports are asked."""

from __future__ import annotations

import logging

import numpy as np

from sipsimple.media.devices import DummyDevice
from sipsimple.media.mixer import AudioMixer, SlotPort


class Filled(SlotPort):
    """A port whose frame a hook fills, as the AudioTransports' playout does."""

    consumes = False

    def __init__(self) -> None:
        self.next: np.ndarray | None = None

    def produce(self) -> np.ndarray | None:
        frame, self.next = self.next, None
        return frame


class Heard(SlotPort):
    produces = False

    def __init__(self) -> None:
        self.frames: list[np.ndarray | None] = []

    def consume(self, frame: np.ndarray | None) -> None:
        self.frames.append(None if frame is None else frame.copy())


def mixer() -> AudioMixer:
    return AudioMixer(None, None, 8000, device=DummyDevice())


def test_a_hook_fills_the_frame_its_tick_mixes():
    m = mixer()
    source, heard = Filled(), Heard()
    m.connect_slots(m.add_port(source), m.add_port(heard))
    count = 0

    def fill() -> None:
        nonlocal count
        count += 1
        source.next = np.full(160, count, np.int16)

    m.add_tick_hook(fill)
    m.tick(3)
    assert [int(frame[0]) for frame in heard.frames] == [1, 2, 3]
    m.remove_tick_hook(fill)
    m.tick()
    assert count == 3 and not heard.frames[-1].any()


def test_a_failing_hook_is_logged_and_the_mix_goes_on(caplog):
    m = mixer()
    source, heard = Filled(), Heard()
    m.connect_slots(m.add_port(source), m.add_port(heard))
    calls = []

    def broken() -> None:
        calls.append(1)
        raise RuntimeError("boom")

    def fill() -> None:
        source.next = np.full(160, 7, np.int16)

    m.add_tick_hook(broken)
    m.add_tick_hook(fill)
    with caplog.at_level(logging.ERROR, logger="sipsimple.media.mixer"):
        m.tick(2)
    assert len(calls) == 2
    assert [int(frame[0]) for frame in heard.frames] == [7, 7]
    assert len(caplog.records) == 1 and "hook" in caplog.records[0].getMessage()  # once


def test_a_hook_removed_within_a_tick_runs_no_more():
    m = mixer()
    m.add_port(Heard())
    calls = []

    def once() -> None:
        calls.append(1)
        m.remove_tick_hook(once)

    m.add_tick_hook(once)
    m.tick(3)
    assert calls == [1]
