"""The spec's audio objects: bridges, devices, WAV players and recorders, the application's
audio.  The mixer is ticked by hand except where the real clock is the point (those
tests count frames, never time)."""

import asyncio
import gc
import time
import wave
from datetime import datetime

import numpy as np
import pytest

from sipsimple.audio import (
    AudioBridge,
    AudioDevice,
    WavePlayer,
    WavePlayerError,
    WaveRecorder,
    WaveRecorderError,
    create_application_audio,
)
from sipsimple.configuration import ConfigurationManager
from sipsimple.configuration.backend.memory import MemoryBackend
from sipsimple.configuration.settings import SIPSimpleSettings
from sipsimple.core import AudioMixer, MixerPort, SoundDeviceError, WaveFileError
from sipsimple.media import devices
from sipsimple.media.devices import DummyDevice
from sipsimple.media.mixer import SlotPort
from sipsimple.notification import NotificationCenter, NotificationData
from sipsimple.threading import SIPThread, call_in_sip_thread, run_in_sip_thread

RATE = 16000
FRAME = RATE // 50


# -- helpers ---------------------------------------------------------------------------


def tone(frequency, samples, amplitude=6000.0):
    t = np.arange(samples) / RATE
    return np.rint(amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


def write_wav(path, samples, rate=RATE, width=2):
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(np.ascontiguousarray(samples).tobytes())
    return path


def read_wav(path):
    with wave.open(str(path), "rb") as source:
        assert (source.getnchannels(), source.getsampwidth(), source.getframerate()) == (
            1,
            2,
            RATE,
        )
        return np.frombuffer(source.readframes(source.getnframes()), dtype=np.int16)


def magnitude_at(signal, frequency):
    window = np.hanning(len(signal))
    spectrum = np.abs(np.fft.rfft(signal * window)) / (window.sum() / 2)
    freqs = np.fft.rfftfreq(len(signal), 1 / RATE)
    return spectrum[np.abs(freqs - frequency) <= 2 * RATE / len(signal)].max()


def stepped_frames(count):
    """``count`` frames, frame i holding the constant 1000 * (i + 1): easy to follow."""
    return np.repeat(np.arange(1, count + 1, dtype=np.int16) * 1000, FRAME)


def frame_values(samples):
    """The constant of each frame of a recording made of stepped frames and silence."""
    frames = samples.reshape(-1, FRAME)
    assert np.all(frames == frames[:, :1])
    return [int(value) // 1000 for value in frames[:, 0]]


class Events:
    """Notifications of the given names from one sender, in order."""

    def __init__(self, sender, *names):
        self.sender = sender
        self.names = names
        self.received = []
        for name in names:
            NotificationCenter().add_observer(self.received.append, name=name, sender=sender)

    def close(self):
        for name in self.names:
            NotificationCenter().remove_observer(
                self.received.append, name=name, sender=self.sender
            )

    @property
    def names_received(self):
        return [notification.name for notification in self.received]

    def data(self, name):
        return [n.data for n in self.received if n.name == name]


@pytest.fixture
def events():
    made = []

    def watch(sender, *names):
        made.append(Events(sender, *names))
        return made[-1]

    yield watch
    for each in made:
        each.close()


@pytest.fixture
def mixer():
    mixer = AudioMixer(None, None, RATE)
    yield mixer
    mixer.close()


def run(mixer, frames):
    """Mixes frame after frame, as the clock does when on time: what a frame leaves for
    after its tick (a player's end) is done before the next frame."""
    for _ in range(frames):
        mixer.tick()


def record(mixer, recorder, ticks):
    recorder.start()
    mixer.tick(ticks)
    recorder.stop().result(timeout=10)
    return read_wav(recorder.filename)


# -- AudioBridge -----------------------------------------------------------------------


def test_two_players_meet_in_a_recorder_and_removing_one_removes_its_tone(mixer, tmp_path):
    low = WavePlayer(mixer, write_wav(tmp_path / "low.wav", tone(440, 50 * FRAME)), loop_count=0)
    high = WavePlayer(mixer, write_wav(tmp_path / "hi.wav", tone(1250, 50 * FRAME)), loop_count=0)
    recorder = WaveRecorder(mixer, tmp_path / "out" / "both.wav")
    bridge = AudioBridge(mixer)
    for port in (low, high, recorder):
        bridge.add(port)
    low.start()
    high.start()
    both = record(mixer, recorder, 50)
    assert len(both) == 50 * FRAME
    assert magnitude_at(both, 440) == pytest.approx(6000, rel=0.05)
    assert magnitude_at(both, 1250) == pytest.approx(6000, rel=0.05)

    bridge.remove(high)
    recorder.filename = str(tmp_path / "out" / "low.wav")
    alone = record(mixer, recorder, 50)
    assert magnitude_at(alone, 440) == pytest.approx(6000, rel=0.05)
    assert magnitude_at(alone, 1250) < 30
    assert high.is_active  # out of the bridge, still playing: to nobody
    assert set(bridge.ports) == {low, recorder}


def test_the_mesh_connects_every_producer_to_every_other_consumer(mixer, tmp_path):
    source = write_wav(tmp_path / "a.wav", tone(500, 10 * FRAME))
    player = WavePlayer(mixer, source, loop_count=0)
    recorder = WaveRecorder(mixer, tmp_path / "r.wav")
    network = MixerPort(mixer)  # produces and consumes, like an RTP stream
    player.start()
    recorder.start()
    network.start()

    class Stream:  # an IAudioPort made of a MixerPort
        def __init__(self, port):
            self.mixer = port.mixer
            self.consumer_slot = self.producer_slot = port.slot

    stream = Stream(network)
    device = AudioDevice(mixer)
    bridge = AudioBridge(mixer)
    for port in (device, player, recorder, stream):
        bridge.add(port)
    bridge.add(player)  # a set: nothing more
    p, r, s = player.producer_slot, recorder.consumer_slot, stream.producer_slot
    assert sorted(mixer.connected_slots) == sorted(
        [(0, r), (0, s), (p, 0), (p, r), (p, s), (s, 0), (s, r)]
    )  # nobody hears itself; the player and the recorder are one-way
    bridge.remove(stream)
    assert sorted(mixer.connected_slots) == sorted([(0, r), (p, 0), (p, r)])
    with pytest.raises(ValueError, match="not part"):
        bridge.remove(stream)
    recorder.stop().result(timeout=10)
    network.stop()


def test_bad_ports_are_refused(mixer):
    bridge = AudioBridge(mixer)
    with pytest.raises(TypeError, match="IAudioPort"):
        bridge.add(object())
    with pytest.raises(ValueError, match="mixer"):
        bridge.add(AudioDevice(AudioMixer(None, None, RATE)))
    with pytest.raises(ValueError, match="itself"):
        bridge.add(bridge)
    with pytest.raises(TypeError):
        AudioBridge("mixer")


def test_a_collected_port_leaves_the_bridge_and_takes_its_connections(mixer, tmp_path):
    recorder = WaveRecorder(mixer, tmp_path / "r.wav")
    recorder.start()
    device = AudioDevice(mixer)
    bridge = AudioBridge(mixer)
    bridge.add(device)
    bridge.add(recorder)
    assert mixer.connected_slots == [(0, recorder.consumer_slot)]
    del device
    gc.collect()
    assert mixer.connected_slots == []
    assert bridge.ports == [recorder]
    recorder.stop().result(timeout=10)


def test_a_collected_bridge_undoes_its_connections(mixer, tmp_path):
    recorder = WaveRecorder(mixer, tmp_path / "r.wav")
    recorder.start()
    device = AudioDevice(mixer)
    bridge = AudioBridge(mixer)
    bridge.add(device)
    bridge.add(recorder)
    assert mixer.connected_slots
    del bridge
    gc.collect()
    assert mixer.connected_slots == []
    recorder.stop().result(timeout=10)


def test_a_pair_in_two_bridges_stays_connected_until_neither_wants_it(mixer, tmp_path):
    recorder = WaveRecorder(mixer, tmp_path / "r.wav")
    recorder.start()
    device = AudioDevice(mixer)
    first, second = AudioBridge(mixer), AudioBridge(mixer)
    for bridge in (first, second):
        bridge.add(device)
        bridge.add(recorder)
    first.remove(recorder)
    assert mixer.connected_slots == [(0, recorder.consumer_slot)]
    second.remove(device)
    assert mixer.connected_slots == []
    recorder.stop().result(timeout=10)


def test_a_bridge_in_a_bridge_carries_audio_both_ways(mixer, tmp_path):
    inner_tone = write_wav(tmp_path / "in.wav", tone(600, 60 * FRAME))
    outer_tone = write_wav(tmp_path / "out.wav", tone(1500, 60 * FRAME))
    inner, outer = AudioBridge(mixer), AudioBridge(mixer)
    inner_player = WavePlayer(mixer, inner_tone, loop_count=0)
    outer_player = WavePlayer(mixer, outer_tone, loop_count=0)
    inner_recorder = WaveRecorder(mixer, tmp_path / "inner.wav")
    outer_recorder = WaveRecorder(mixer, tmp_path / "outer.wav")
    inner.add(inner_player)
    inner.add(inner_recorder)
    assert mixer.used_slot_count == 0  # no relay slots until the bridge is used as a port
    outer.add(inner)
    assert mixer.used_slot_count == 2
    outer.add(outer_player)
    outer.add(outer_recorder)
    inner_player.start()
    outer_player.start()
    inner_recorder.start()
    outer_recorder.start()
    mixer.tick(50)
    inner_recorder.stop().result(timeout=10)
    outer_recorder.stop().result(timeout=10)
    heard_inside = read_wav(tmp_path / "inner.wav")
    heard_outside = read_wav(tmp_path / "outer.wav")
    for heard in (heard_inside, heard_outside):  # both hear both
        assert magnitude_at(heard[FRAME:], 600) == pytest.approx(6000, rel=0.05)
        assert magnitude_at(heard[FRAME:], 1500) == pytest.approx(6000, rel=0.05)
    # The relay delays by one frame what crosses it.
    assert np.array_equal(
        heard_outside[FRAME : 2 * FRAME],
        tone(600, 2 * FRAME)[:FRAME] + tone(1500, 2 * FRAME)[FRAME:],
    )
    del outer, inner
    gc.collect()
    assert mixer.connected_slots == []
    assert mixer.used_slot_count == 2  # the two players, still playing to nobody


class Party:
    """A conference party as an AudioStream is one: a port that talks (a tone of its
    own) and keeps what it hears, in a bridge of its own with its muted device."""

    def __init__(self, mixer, frequency):
        self.mixer = mixer
        self.network = MixerPort(mixer)
        self.network.start()
        self.consumer_slot = self.producer_slot = self.network.slot
        self.talk = tone(frequency, 200 * FRAME)
        self.said = 0
        self.heard = []
        self.device = AudioDevice(mixer, input_muted=True, output_muted=True)
        self.bridge = AudioBridge(mixer)
        self.bridge.add(self.device)
        self.bridge.add(self)

    def exchange(self):
        """After a tick: take what the mixer made for this party, give it the next frame."""
        frame = self.network.get_frame()
        self.heard.append(np.zeros(FRAME, np.int16) if frame is None else frame)
        self.network.put_frame(self.talk[self.said * FRAME : (self.said + 1) * FRAME])
        self.said += 1


def test_a_bridge_of_bridges_is_a_conference_mixed_from_one_sum(mixer):
    # The AudioConference's shape: one bridge holding the device and each party's own
    # bridge.  Everyone hears every other party once, and not themselves; the mixer
    # makes all the mixes from one shared sum (O(N), not O(N^2)).
    frequencies = [350, 620, 910, 1330, 1770, 2450]
    parties = [Party(mixer, frequency) for frequency in frequencies]
    room = AudioBridge(mixer)
    room.add(AudioDevice(mixer))
    for party in parties:
        room.add(party.bridge)
    for _ in range(60):
        mixer.tick()
        for party in parties:
            party.exchange()
    assert len(mixer._plan.shared) == 1
    for party, own in zip(parties, frequencies, strict=True):
        heard = np.concatenate(party.heard[10:])
        assert magnitude_at(heard, own) < 1
        for other in frequencies:
            if other != own:
                assert magnitude_at(heard, other) == pytest.approx(6000, rel=0.05)


def test_slot_changes_rewire_the_port(mixer, tmp_path):
    class Moving:
        """A port that moves from slot to slot, as a stream whose transport changes."""

        def __init__(self):
            self.mixer = mixer
            self.port = None

        consumer_slot = property(lambda self: self.port.slot if self.port else None)
        producer_slot = consumer_slot

        def move(self):
            old = self.consumer_slot
            replacement = MixerPort(mixer)
            replacement.start()  # takes a new slot before the old one is given up
            if self.port is not None:
                self.port.stop()
            self.port = replacement
            NotificationCenter().post_notification(
                "AudioPortDidChangeSlots",
                sender=self,
                data=NotificationData(
                    consumer_slot_changed=True,
                    producer_slot_changed=True,
                    old_consumer_slot=old,
                    new_consumer_slot=self.consumer_slot,
                    old_producer_slot=old,
                    new_producer_slot=self.producer_slot,
                ),
            )

    recorder = WaveRecorder(mixer, tmp_path / "r.wav")
    moving = Moving()
    bridge = AudioBridge(mixer)
    device = AudioDevice(mixer, input_muted=True)  # the bridge holds it weakly: keep it
    bridge.add(device)
    bridge.add(moving)
    bridge.add(recorder)
    assert mixer.connected_slots == []
    moving.move()
    first = moving.consumer_slot
    assert sorted(mixer.connected_slots) == [(first, 0)]
    recorder.start()
    moving.move()
    second, r = moving.consumer_slot, recorder.consumer_slot
    assert second != first
    assert sorted(mixer.connected_slots) == sorted([(second, 0), (second, r)])
    recorder.stop().result(timeout=10)
    assert sorted(mixer.connected_slots) == [(second, 0)]
    moving.port.stop()


def test_changes_queued_behind_another_notification_end_up_right(mixer, tmp_path):
    """A player stopped and started again inside an observer: both slot changes are
    queued and the new run takes the slot the old one gave up."""
    source = write_wav(tmp_path / "a.wav", tone(500, 10 * FRAME))
    player = WavePlayer(mixer, source, loop_count=0)
    recorder = WaveRecorder(mixer, tmp_path / "r.wav")
    recorder.start()
    bridge = AudioBridge(mixer)
    bridge.add(player)
    bridge.add(recorder)
    player.start()
    slot = player.producer_slot

    def restart(_notification):
        player.stop()
        player.start()

    center = NotificationCenter()
    center.add_observer(restart, name="Restart")
    try:
        center.post_notification("Restart", sender=None)
    finally:
        center.remove_observer(restart, name="Restart")
    assert player.producer_slot == slot  # the same number, a new port
    assert mixer.connected_slots == [(slot, recorder.consumer_slot)]
    recorder.stop().result(timeout=10)
    player.stop()


# -- AudioDevice -----------------------------------------------------------------------


def test_muting_the_device_input_and_output(tmp_path, events):
    speaker = tmp_path / "speaker.wav"
    dummy = DummyDevice(tone=700, output_file=speaker)
    mixer = AudioMixer(None, None, RATE, device=dummy)
    device = AudioDevice(mixer)
    watched = events(device, "AudioPortDidChangeSlots")
    player = WavePlayer(mixer, write_wav(tmp_path / "t.wav", tone(1100, 100 * FRAME)), loop_count=0)
    recorder = WaveRecorder(mixer, tmp_path / "mic.wav")
    bridge = AudioBridge(mixer)
    for port in (device, player, recorder):
        bridge.add(port)
    player.start()

    microphone = record(mixer, recorder, 20)
    assert magnitude_at(microphone, 700) == pytest.approx(8192, rel=0.05)
    device.input_muted = True
    device.input_muted = True  # no change: no notification
    recorder.filename = str(tmp_path / "muted.wav")
    muted = record(mixer, recorder, 20)
    assert magnitude_at(muted, 700) < 30 and magnitude_at(muted, 1100) > 5000

    mixer.tick(20)  # the speaker plays the player
    device.output_muted = True
    mixer.tick(20)  # the speaker plays nothing
    mixer.close()
    dummy.output_closed.result(timeout=10)
    played = read_wav(speaker)
    end = len(played)
    assert magnitude_at(played[end - 40 * FRAME : end - 20 * FRAME], 1100) > 5000
    assert not np.any(played[end - 20 * FRAME :])

    assert [vars(data) for data in watched.data("AudioPortDidChangeSlots")] == [
        {
            "consumer_slot_changed": False,
            "producer_slot_changed": True,
            "old_producer_slot": 0,
            "new_producer_slot": None,
            "timestamp": watched.received[0].timestamp,
        },
        {
            "consumer_slot_changed": True,
            "producer_slot_changed": False,
            "old_consumer_slot": 0,
            "new_consumer_slot": None,
            "timestamp": watched.received[1].timestamp,
        },
    ]
    device.input_muted = device.output_muted = False
    assert (device.producer_slot, device.consumer_slot) == (0, 0)
    with pytest.raises(TypeError):
        device.input_muted = 1
    with pytest.raises(TypeError):
        AudioDevice(mixer, output_muted="yes")


# -- WavePlayer ------------------------------------------------------------------------


def play(mixer, tmp_path, ticks, **options):
    """Frames a player of five stepped frames gives a recorder, as their step numbers."""
    source = write_wav(tmp_path / "steps.wav", stepped_frames(5))
    player = WavePlayer(mixer, source, **options)
    recorder = WaveRecorder(mixer, tmp_path / "steps-out.wav")
    bridge = AudioBridge(mixer)
    bridge.add(player)
    bridge.add(recorder)
    recorder.start()
    player.start()
    run(mixer, ticks)
    recorder.stop().result(timeout=10)
    return player, frame_values(read_wav(recorder.filename))


def test_loop_count_plays_the_file_that_many_times(mixer, tmp_path):
    player, frames = play(mixer, tmp_path, 30, loop_count=3)
    # The end is found in the frame after the last one: silence, then the player leaves.
    assert frames == [1, 2, 3, 4, 5] * 3 + [0]
    assert not player.is_active and mixer.used_slot_count == 0


def test_pause_time_is_silence_between_plays(mixer, tmp_path):
    _player, frames = play(mixer, tmp_path, 40, loop_count=3, pause_time=0.06)
    assert frames == [1, 2, 3, 4, 5, 0, 0, 0] * 2 + [1, 2, 3, 4, 5, 0]


def test_without_initial_play_the_pause_comes_first(mixer, tmp_path):
    _player, frames = play(mixer, tmp_path, 20, loop_count=2, pause_time=0.04, initial_play=False)
    assert frames == [0, 0, 1, 2, 3, 4, 5, 0, 0, 1, 2, 3, 4, 5, 0]


def test_loop_count_zero_plays_until_stopped(mixer, tmp_path):
    player, frames = play(mixer, tmp_path, 23, loop_count=0, pause_time=0.02)
    assert frames == ([1, 2, 3, 4, 5, 0] * 4)[:23]
    assert player.is_active
    player.stop()
    assert not player.is_active and mixer.used_slot_count == 0


def test_volume(mixer, tmp_path):
    _player, frames = play(mixer, tmp_path, 3, volume=200)
    assert frames == [2, 4, 6]
    with pytest.raises(ValueError):
        WavePlayer(mixer, "x.wav", volume=-1)


def test_notifications_of_a_run(mixer, tmp_path, events):
    source = write_wav(tmp_path / "a.wav", stepped_frames(3))
    player = WavePlayer(mixer, source, loop_count=2)
    watched = events(player, "AudioPortDidChangeSlots", "WavePlayerDidStart", "WavePlayerDidEnd")
    player.start()
    slot = player.producer_slot
    assert player.is_active and slot is not None
    assert watched.names_received == ["AudioPortDidChangeSlots", "WavePlayerDidStart"]
    mixer.tick(6)
    assert watched.names_received == ["AudioPortDidChangeSlots", "WavePlayerDidStart"]
    mixer.tick()
    assert watched.names_received == [
        "AudioPortDidChangeSlots",
        "WavePlayerDidStart",
        "AudioPortDidChangeSlots",
        "WavePlayerDidEnd",
    ]
    started, ended = watched.data("AudioPortDidChangeSlots")
    assert vars(started) == {
        "consumer_slot_changed": False,
        "producer_slot_changed": True,
        "old_producer_slot": None,
        "new_producer_slot": slot,
        "timestamp": started.timestamp,
    }
    assert (ended.old_producer_slot, ended.new_producer_slot) == (slot, None)
    assert all(isinstance(n.data.timestamp, datetime) for n in watched.received)
    assert player.producer_slot is None and player.consumer_slot is None

    player.start()  # reusable
    with pytest.raises(WavePlayerError, match="already playing"):
        player.start()
    player.stop()
    player.stop()  # stopped: nothing more
    assert watched.names_received[-3:] == [
        "WavePlayerDidStart",
        "AudioPortDidChangeSlots",
        "WavePlayerDidEnd",
    ]


def test_without_initial_play_did_start_comes_with_the_first_play(mixer, tmp_path, events):
    source = write_wav(tmp_path / "a.wav", stepped_frames(2))
    player = WavePlayer(mixer, source, pause_time=0.06, initial_play=False)
    watched = events(player, "WavePlayerDidStart")
    player.start()
    mixer.tick(3)
    assert watched.received == []
    mixer.tick()
    assert watched.names_received == ["WavePlayerDidStart"]
    player.stop()


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("missing.wav", None, "cannot read"),
        ("garbage.wav", lambda p: p.write_bytes(b"RIFF\x00\x00junk" * 3), "cannot read"),
        ("eight.wav", lambda p: write_wav(p, np.zeros(10, np.uint8), width=1), "8-bit"),
    ],
)
def test_an_unplayable_file_is_reported_not_raised(mixer, tmp_path, events, name, make, message):
    path = tmp_path / name
    if make is not None:
        make(path)
    player = WavePlayer(mixer, path)
    watched = events(player, "WavePlayerDidFail", "WavePlayerDidStart", "AudioPortDidChangeSlots")
    player.start()
    assert watched.names_received == ["WavePlayerDidFail"]
    (data,) = watched.data("WavePlayerDidFail")
    assert isinstance(data.error, WaveFileError) and message in str(data.error)
    assert isinstance(data.timestamp, datetime)
    assert not player.is_active and mixer.used_slot_count == 0


def test_a_file_that_vanishes_between_plays_fails_the_player(mixer, tmp_path, events):
    source = write_wav(tmp_path / "a.wav", stepped_frames(2))
    player = WavePlayer(mixer, source, loop_count=0, pause_time=0.02)
    watched = events(player, "WavePlayerDidFail", "WavePlayerDidEnd", "AudioPortDidChangeSlots")
    player.start()
    mixer.tick(2)
    source.unlink()
    mixer.tick(2)  # the end of the play, the pause, then the file is gone
    assert watched.names_received == [
        "AudioPortDidChangeSlots",
        "AudioPortDidChangeSlots",
        "WavePlayerDidFail",
    ]
    assert isinstance(watched.data("WavePlayerDidFail")[0].error, WaveFileError)
    assert not player.is_active and mixer.used_slot_count == 0


def test_a_missing_file_without_initial_play_fails_after_the_pause(mixer, tmp_path, events):
    player = WavePlayer(mixer, tmp_path / "nope.wav", pause_time=0.04, initial_play=False)
    watched = events(player, "WavePlayerDidFail")
    player.start()
    assert player.is_active
    mixer.tick(3)
    assert len(watched.received) == 1 and not player.is_active


def test_player_arguments(mixer):
    with pytest.raises(ValueError):
        WavePlayer(mixer, None)
    with pytest.raises(ValueError):
        WavePlayer(mixer, "a.wav", loop_count=-1)
    with pytest.raises(ValueError):
        WavePlayer(mixer, "a.wav", pause_time=float("nan"))
    with pytest.raises(TypeError):
        WavePlayer(mixer, "a.wav", initial_play=None)
    player = WavePlayer(mixer, "a.wav")
    player.loop_count = "twice"
    with pytest.raises(ValueError):
        player.start()


# -- WaveRecorder ----------------------------------------------------------------------


def test_the_recording_is_what_the_bridge_carried(mixer, tmp_path, events):
    rng = np.random.default_rng(3)
    original = (rng.standard_normal(20 * FRAME) * 5000).astype(np.int16)
    player = WavePlayer(mixer, write_wav(tmp_path / "noise.wav", original))
    recorder = WaveRecorder(mixer, tmp_path / "deep" / "dir" / "rec.wav")
    watched = events(recorder, "AudioPortDidChangeSlots")
    bridge = AudioBridge(mixer)
    bridge.add(recorder)
    bridge.add(player)
    recorder.start()
    slot = recorder.consumer_slot
    assert recorder.is_active and recorder.producer_slot is None
    with pytest.raises(WaveRecorderError, match="already recording"):
        recorder.start()
    player.start()
    run(mixer, 30)  # the player ends after 21 frames; nothing is written after
    recorder.stop().result(timeout=10)
    recorded = read_wav(recorder.filename)
    assert np.array_equal(recorded, np.concatenate([original, np.zeros(FRAME, np.int16)]))
    assert not recorder.is_active and recorder.consumer_slot is None
    assert [
        (d.consumer_slot_changed, d.producer_slot_changed)
        for d in watched.data("AudioPortDidChangeSlots")
    ] == [(True, False), (True, False)]
    started, stopped = watched.data("AudioPortDidChangeSlots")
    assert (started.old_consumer_slot, started.new_consumer_slot) == (None, slot)
    assert (stopped.old_consumer_slot, stopped.new_consumer_slot) == (slot, None)
    assert recorder.stop().result(timeout=1) is None  # not recording: nothing to do


def test_recording_nowhere_fails_at_start(mixer, tmp_path):
    (tmp_path / "file").write_text("in the way")
    recorder = WaveRecorder(mixer, tmp_path / "file" / "rec.wav")
    with pytest.raises(WaveFileError):
        recorder.start()
    assert not recorder.is_active and mixer.used_slot_count == 0


def test_a_collected_recorder_completes_its_file(mixer, tmp_path):
    target = tmp_path / "rec.wav"
    recorder = WaveRecorder(mixer, target)
    device = AudioDevice(mixer)
    bridge = AudioBridge(mixer)
    bridge.add(device)
    bridge.add(recorder)
    recorder.start()
    mixer.tick(5)
    del recorder
    gc.collect()
    assert mixer.used_slot_count == 0 and mixer.connected_slots == []
    deadline = time.monotonic() + 10
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(read_wav(target)) == 5 * FRAME


# -- the real clock --------------------------------------------------------------------


def test_on_the_sip_thread_a_run_counts_its_frames_and_a_bad_file_is_a_notification(tmp_path):
    source = write_wav(tmp_path / "steps.wav", stepped_frames(4))
    thread = SIPThread()
    thread.start()
    try:
        mixer = AudioMixer(None, None, RATE)
        player = WavePlayer(mixer, source, loop_count=2, pause_time=0.1)
        broken = WavePlayer(mixer, tmp_path / "missing.wav")
        recorder = WaveRecorder(mixer, tmp_path / "rec.wav")
        bridge = AudioBridge(mixer)
        ended = asyncio.Event()
        outcome = []

        def setup():
            for port in (player, broken, recorder):
                bridge.add(port)
            mixer.start()
            recorder.start()
            player.start()
            broken.start()

        def observe(notification):
            outcome.append(notification.name)
            if notification.sender is player and notification.name == "WavePlayerDidEnd":
                recorder.stop()
                ended.set()

        center = NotificationCenter()
        for name in ("WavePlayerDidEnd", "WavePlayerDidFail"):
            center.add_observer(observe, name=name)
        try:
            call_in_sip_thread(setup).result(timeout=10)  # no exception: a notification
            run_in_sip_thread(asyncio.wait_for, ended.wait(), 10)
        finally:
            for name in ("WavePlayerDidEnd", "WavePlayerDidFail"):
                center.remove_observer(observe, name=name)
        run_in_sip_thread(mixer.close)
    finally:
        thread.stop()
    assert outcome == ["WavePlayerDidFail", "WavePlayerDidEnd"]
    deadline = time.monotonic() + 10
    while not (tmp_path / "rec.wav").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    # Exactly the two plays, the five frames of pause and the frame that found the end;
    # a late wake-up mixes frames in a burst, and the player, done, gives silence until
    # the end of the burst.
    expected = [1, 2, 3, 4] + [0] * 5 + [1, 2, 3, 4] + [0]
    recorded = frame_values(read_wav(tmp_path / "rec.wav"))
    assert recorded[: len(expected)] == expected
    assert not any(recorded[len(expected) :])


# -- the application's audio -----------------------------------------------------------


@pytest.fixture
def settings():
    configuration = ConfigurationManager()
    configuration.start(MemoryBackend())
    yield SIPSimpleSettings()
    configuration.stop()


def saved_changes(settings):
    """Saves the settings and returns CFGSettingsObjectDidChange's ``modified``."""
    changes = []
    center = NotificationCenter()
    center.add_observer(changes.append, name="CFGSettingsObjectDidChange", sender=settings)
    try:
        settings.save()
    finally:
        center.remove_observer(changes.append, name="CFGSettingsObjectDidChange", sender=settings)
    (change,) = changes
    return change.data.modified


async def test_application_audio_on_dummy_devices_with_the_default_settings(settings):
    audio = create_application_audio(settings)
    try:
        voice, alert = audio.voice_audio_mixer, audio.alert_audio_mixer
        assert voice.sample_rate == alert.sample_rate == 48000
        assert (voice.input_device, voice.output_device) == ("system_default", "system_default")
        assert (alert.input_device, alert.output_device) == (None, "system_default")
        assert isinstance(voice.device, DummyDevice) and isinstance(alert.device, DummyDevice)
        assert audio.voice_audio_bridge.ports == [audio.voice_audio_device]
        assert audio.alert_audio_bridge.ports == [audio.alert_audio_device]
        assert audio.voice_audio_device.mixer is voice and audio.alert_audio_device.mixer is alert
        assert voice.muted is False and alert.output_volume == 100
        assert voice.ec_tail_length == 200
        assert voice.is_running and alert.is_running
        await asyncio.sleep(0.1)
        # Idle (nothing but the device in them): the mixers sleep, costing no CPU ...
        assert voice.statistics.frames <= 1 and alert.statistics.frames <= 1
        slots = [(mixer, mixer.add_port(SlotPort())) for mixer in (voice, alert)]
        # ... until a port comes
        while voice.statistics.frames < 3 or alert.statistics.frames < 3:
            await asyncio.sleep(0.02)
        for mixer, slot in slots:
            mixer.remove_port(slot)
    finally:
        audio.close()
    assert not voice.is_running and not alert.is_running
    frames = voice.statistics.frames
    await asyncio.sleep(0.06)
    assert voice.statistics.frames == frames


async def test_changed_settings_are_applied(settings):
    audio = create_application_audio(settings)
    try:
        settings.audio.muted = True
        settings.audio.silent = True
        settings.audio.echo_canceller.enabled = False
        settings.audio.input_device = None
        audio.apply_settings(settings, saved_changes(settings))
        voice, alert = audio.voice_audio_mixer, audio.alert_audio_mixer
        assert voice.muted is True and alert.output_volume == 0
        assert (voice.input_device, voice.output_device, voice.ec_tail_length) == (
            None,
            "system_default",
            0,
        )
        settings.audio.silent = False
        settings.audio.alert_device = None
        audio.apply_settings(settings, saved_changes(settings))
        assert alert.output_volume == 100 and alert.output_device is None

        old_bridge = audio.voice_audio_bridge
        settings.audio.sample_rate = 16000
        audio.apply_settings(settings, saved_changes(settings))
        assert not voice.is_running and not alert.is_running  # closed
        assert audio.voice_audio_mixer.sample_rate == audio.alert_audio_mixer.sample_rate == 16000
        assert audio.voice_audio_mixer.is_running and audio.alert_audio_mixer.is_running
        assert audio.voice_audio_bridge is not old_bridge
        assert audio.voice_audio_bridge.ports == [audio.voice_audio_device]
        assert audio.voice_audio_device.mixer is audio.voice_audio_mixer
        assert audio.voice_audio_mixer.muted is True  # the settings, not the defaults
        assert audio.voice_audio_mixer.input_device is None
    finally:
        audio.close()


async def test_an_unknown_device_falls_back_to_the_default(settings, monkeypatch):
    """With a sound backend an unknown name raises; the application's audio then takes
    the system's default, and with no default either, no device."""
    known = {None, "system_default"}

    def create_sound_device(input_device, output_device):
        for name in (input_device, output_device):
            if name not in known:
                raise SoundDeviceError(f'audio device "{name}" not found')
        return DummyDevice()

    monkeypatch.setattr(devices, "create_sound_device", create_sound_device)
    settings.audio.input_device = "Gone USB Headset"
    settings.audio.alert_device = "Gone Speaker"
    audio = create_application_audio(settings)
    try:
        voice, alert = audio.voice_audio_mixer, audio.alert_audio_mixer
        assert (voice.input_device, voice.output_device) == ("system_default", "system_default")
        assert alert.output_device == "system_default"
        assert settings.audio.input_device == "Gone USB Headset"  # the user's choice stays
        known.discard("system_default")
        settings.audio.output_device = "Also Gone"
        audio.apply_settings(settings, ["audio.output_device"])
        assert (voice.input_device, voice.output_device) == (None, None)
    finally:
        audio.close()


async def test_a_ringtone_in_the_alert_bridge_reaches_the_alert_device(
    settings, monkeypatch, tmp_path
):
    speaker = tmp_path / "alert.wav"
    made = []

    def create_sound_device(input_device, output_device):
        made.append(DummyDevice(output_file=speaker if input_device is None else None))
        return made[-1]

    monkeypatch.setattr(devices, "create_sound_device", create_sound_device)
    settings.audio.sample_rate = RATE
    audio = create_application_audio(settings)
    try:
        ring = write_wav(tmp_path / "ring.wav", tone(900, 5 * FRAME))
        player = WavePlayer(audio.alert_audio_mixer, ring, loop_count=2)
        audio.alert_audio_bridge.add(player)
        ended = asyncio.Event()
        NotificationCenter().add_observer(lambda _n: ended.set(), "WavePlayerDidEnd", player)
        player.start()
        await asyncio.wait_for(ended.wait(), 10)
    finally:
        audio.close()
    (alert_device,) = [device for device in made if device.output_file is not None]
    alert_device.output_closed.result(timeout=10)
    played = read_wav(speaker)
    assert magnitude_at(played, 900) > 1000
    assert np.count_nonzero(np.abs(played) > 3000) > 0
