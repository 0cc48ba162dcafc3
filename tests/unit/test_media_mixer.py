"""The audio mixer driven by hand: routing, mixing, saturation, volumes, slots, MixerPort."""

import logging
import threading
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipsimple.media.devices import SoundDevice
from sipsimple.media.mixer import (
    AudioMixer,
    MixerError,
    MixerPort,
    SampleFifo,
    SlotPort,
    plan_sums,
    scale_volume,
)

RATE = 48000
FRAME = RATE // 50


def tone(frequency, samples, amplitude=8000.0, rate=RATE, start=0):
    t = np.arange(start, start + samples) / rate
    return np.rint(amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


def magnitude_at(signal, frequency, rate=RATE):
    """Amplitude of the ``frequency`` component (Hann-windowed FFT, peak of its bins)."""
    window = np.hanning(len(signal))
    spectrum = np.abs(np.fft.rfft(signal * window)) / (window.sum() / 2)
    freqs = np.fft.rfftfreq(len(signal), 1 / rate)
    near = np.abs(freqs - frequency) <= 2 * rate / len(signal)
    return spectrum[near].max()


def peak_frequency(signal, rate=RATE):
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return np.fft.rfftfreq(len(signal), 1 / rate)[spectrum.argmax()]


class ToneSource(SlotPort):
    """Produces a continuous sine; consumes nothing."""

    consumes = False

    def __init__(self, frequency, amplitude=8000.0):
        self.frequency = frequency
        self.amplitude = amplitude
        self.position = 0

    def produce(self):
        frame = tone(self.frequency, FRAME, self.amplitude, start=self.position)
        self.position += FRAME
        return frame


class ConstantSource(SlotPort):
    consumes = False

    def __init__(self, value):
        self.frame = np.full(FRAME, value, dtype=np.int16)

    def produce(self):
        return self.frame


class Sink(SlotPort):
    """Consumes and keeps every frame it gets (None included); produces nothing."""

    produces = False

    def __init__(self):
        self.frames = []

    def consume(self, frame):
        self.frames.append(frame)

    def audio(self):
        return np.concatenate([np.zeros(FRAME, np.int16) if f is None else f for f in self.frames])


class Participant(Sink):
    """Talks (a tone) and listens, like a call in a conference."""

    produces = True

    def __init__(self, frequency):
        super().__init__()
        self.source = ToneSource(frequency)

    def produce(self):
        return self.source.produce()


class CaptureDevice(SoundDevice):
    """A sound device whose microphone plays a tone and whose speaker is recorded."""

    input_name = "capture mic"
    output_name = "capture speaker"

    def __init__(self, frequency=1000):
        self.source = ToneSource(frequency)
        self.played = []
        self.opened = 0
        self.closed = 0

    def open(self, sample_rate):
        self.opened += 1

    def close(self):
        self.closed += 1

    def produce(self):
        return self.source.produce()

    def consume(self, frame):
        self.played.append(frame)


def add(mixer, port):
    return mixer.add_port(port)


@pytest.fixture
def mixer():
    return AudioMixer(None, None, RATE)


def test_a_tone_reaches_the_connected_slot_only(mixer):
    source, heard, deaf = ToneSource(1000), Sink(), Sink()
    src, dst, other = add(mixer, source), add(mixer, heard), add(mixer, deaf)
    mixer.connect_slots(src, dst)
    mixer.tick(25)
    assert peak_frequency(heard.audio()) == pytest.approx(1000, abs=5)
    assert magnitude_at(heard.audio(), 1000) == pytest.approx(8000, rel=0.02)
    assert deaf.frames == [None] * 25
    assert mixer.connected_slots == [(src, dst)]
    assert other not in {s for pair in mixer.connected_slots for s in pair}


def test_two_tones_are_summed_exactly(mixer):
    a, b, sink = ToneSource(440), ToneSource(1000, 5000), Sink()
    dst = add(mixer, sink)
    mixer.connect_slots(add(mixer, a), dst)
    mixer.connect_slots(add(mixer, b), dst)
    mixer.tick(10)
    audio = sink.audio()
    expected = tone(440, 10 * FRAME).astype(np.int32) + tone(1000, 10 * FRAME, 5000)
    assert np.array_equal(audio, expected)
    assert magnitude_at(audio, 440) == pytest.approx(8000, rel=0.02)
    assert magnitude_at(audio, 1000) == pytest.approx(5000, rel=0.02)


def test_full_mesh_conference_nobody_hears_themselves(mixer):
    frequencies = [400, 1000, 2500]
    people = [Participant(f) for f in frequencies]
    slots = [add(mixer, p) for p in people]
    for src in slots:
        for dst in slots:
            if src != dst:
                mixer.connect_slots(src, dst)
    mixer.tick(25)
    for person, own in zip(people, frequencies, strict=True):
        audio = person.audio()
        assert magnitude_at(audio, own) < 1
        for other in frequencies:
            if other != own:
                assert magnitude_at(audio, other) == pytest.approx(8000, rel=0.02)


def test_a_slot_cannot_be_connected_to_itself(mixer):
    slot = add(mixer, Participant(400))
    with pytest.raises(ValueError, match="itself"):
        mixer.connect_slots(slot, slot)


def test_the_mix_saturates_instead_of_wrapping(mixer):
    high, low = Sink(), Sink()
    high_slot, low_slot = add(mixer, high), add(mixer, low)
    for level, dst in (
        (30000, high_slot),
        (20000, high_slot),
        (-30000, low_slot),
        (-20000, low_slot),
    ):
        mixer.connect_slots(add(mixer, ConstantSource(level)), dst)
    mixer.tick()
    assert np.all(high.frames[0] == 32767)
    assert np.all(low.frames[0] == -32768)


def test_silent_sources_give_zeros_and_no_sources_give_none(mixer):
    class Silent(SlotPort):
        consumes = False

    sink, lonely = Sink(), Sink()
    mixer.connect_slots(add(mixer, Silent()), add(mixer, sink))
    add(mixer, lonely)
    mixer.tick()
    assert np.array_equal(sink.frames[0], np.zeros(FRAME))
    assert lonely.frames == [None]


def test_frames_handed_out_are_read_only(mixer):
    sinks = [Sink(), Sink()]
    src = add(mixer, ToneSource(500))
    for sink in sinks:
        mixer.connect_slots(src, add(mixer, sink))
    mixer.tick()
    assert sinks[0].frames[0] is sinks[1].frames[0]  # one shared sum
    with pytest.raises(ValueError):
        sinks[0].frames[0][0] = 1


def test_device_input_volume_and_mute():
    device = CaptureDevice(1000)
    mixer = AudioMixer(None, None, RATE, device=device)
    sink = Sink()
    mixer.connect_slots(0, add(mixer, sink))
    mixer.input_volume = 50
    mixer.tick(25)
    assert magnitude_at(sink.audio(), 1000) == pytest.approx(4000, rel=0.02)
    sink.frames.clear()
    mixer.muted = True
    mixer.tick(5)
    assert not np.any(sink.audio())
    mixer.muted = False
    mixer.input_volume = 100
    sink.frames.clear()
    mixer.tick(25)
    assert magnitude_at(sink.audio(), 1000) == pytest.approx(8000, rel=0.02)


def test_device_output_volume():
    device = CaptureDevice()
    mixer = AudioMixer(None, None, RATE, device=device)
    mixer.connect_slots(add(mixer, ConstantSource(1000)), 0)
    mixer.output_volume = 250
    mixer.tick()
    assert np.all(device.played[-1] == 2500)
    mixer.output_volume = 0
    mixer.tick()
    assert not np.any(device.played[-1])


@pytest.mark.parametrize("value", [-1, "loud", None, True])
def test_volumes_must_be_non_negative_numbers(mixer, value):
    with pytest.raises(ValueError):
        mixer.input_volume = value
    with pytest.raises(ValueError):
        mixer.output_volume = value


def test_scale_volume_saturates():
    frame = np.array([20000, -20000, 3], dtype=np.int16)
    assert scale_volume(frame, 200).tolist() == [32767, -32768, 6]
    assert scale_volume(frame, 100) is frame
    assert scale_volume(frame, 0).tolist() == [0, 0, 0]


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=2, max_value=7).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.sets(
                st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).filter(
                    lambda pair: pair[0] != pair[1]
                )
            ),
            st.lists(st.integers(-32768, 32767), min_size=n, max_size=n),
        )
    )
)
def test_any_topology_mixes_like_the_naive_sum(case):
    _count, edges, levels = case
    mixer = AudioMixer(None, None, RATE)
    ports = []
    for level in levels:
        port = Participant(0)
        port.source = ConstantSource(level)
        ports.append(port)
    slots = [add(mixer, port) for port in ports]
    for src, dst in edges:
        mixer.connect_slots(slots[src], slots[dst])
    mixer.tick()
    for index, port in enumerate(ports):
        sources = [levels[src] for src, dst in edges if dst == index]
        if not sources:
            assert port.frames == [None]
        else:
            expected = np.clip(sum(sources), -32768, 32767)
            assert np.all(port.frames[0] == expected), (index, sources)


def test_full_mesh_with_a_recorder_and_a_mixed_topology():
    # A conference, a recorder hearing everyone, and a side listener of one member.
    mixer = AudioMixer(None, None, RATE)
    people = [Participant(f) for f in (300, 700, 1100, 1900)]
    slots = [add(mixer, p) for p in people]
    recorder, side = Sink(), Sink()
    rec, side_slot = add(mixer, recorder), add(mixer, side)
    for src in slots:
        mixer.connect_slots(src, rec)
        for dst in slots:
            if src != dst:
                mixer.connect_slots(src, dst)
    mixer.connect_slots(slots[0], side_slot)
    mixer.tick(25)
    assert all(magnitude_at(recorder.audio(), f) > 7800 for f in (300, 700, 1100, 1900))
    assert magnitude_at(side.audio(), 300) > 7800
    assert magnitude_at(side.audio(), 700) < 1
    assert magnitude_at(people[2].audio(), 1100) < 1


class Level(SlotPort):
    """Produces a constant level (None for silence) and keeps what it hears."""

    def __init__(self, level, *, produces=True, consumes=True):
        self.level = level
        self.produces = produces
        self.consumes = consumes
        self.frames = []

    def produce(self):
        return None if self.level is None else np.full(FRAME, self.level, dtype=np.int16)

    def consume(self, frame):
        self.frames.append(frame)


def naive_mix(levels, sources):
    """What a port hearing ``sources`` must get: their sum, saturated once."""
    if not sources:
        return None
    return int(np.clip(sum(levels[src] or 0 for src in sources), -32768, 32767))


def check_mixes(ports, slots, edges):
    """Every port heard exactly the naive mix of its sources on the last tick."""
    levels = {
        slot: port.level if port.produces else None for slot, port in zip(slots, ports, strict=True)
    }
    for slot, port in zip(slots, ports, strict=True):
        if not port.consumes:
            continue
        expected = naive_mix(levels, [src for src, dst in edges if dst == slot])
        frame = port.frames[-1]
        if expected is None:
            assert frame is None, slot
        else:
            assert frame.dtype == np.int16 and frame.shape == (FRAME,)
            assert np.all(frame == expected), (slot, expected, frame[:3])


@pytest.mark.parametrize(
    "levels",
    [
        [32767, 32767, -32768],  # the total fits, two of the mixes saturate
        [30000, 30000, 30000, -30000],  # the total saturates, the mixes mostly do not
        [-32768] * 5 + [32767] * 5,
        [32767] * 40,
        [-32768, -32768, 32767, 0, 1, -1],
    ],
)
def test_full_mesh_is_sum_minus_own_saturated_once_at_full_scale(mixer, levels):
    ports = [Level(level) for level in levels]
    slots = [add(mixer, port) for port in ports]
    edges = [(src, dst) for src in slots for dst in slots if src != dst]
    for edge in edges:
        mixer.connect_slots(*edge)
    mixer.tick()
    check_mixes(ports, slots, edges)
    total = sum(levels)
    for port, level in zip(ports, levels, strict=True):  # the same, said directly
        assert np.all(port.frames[-1] == np.clip(total - level, -32768, 32767))


def test_a_mesh_whose_own_frames_come_from_other_slots(mixer):
    # As a bridge used as a port: each party speaks into one slot and listens on another.
    levels = [32767, 20000, -5000, 12345, -32768, 7]
    speakers = [Level(level, consumes=False) for level in levels]
    listeners = [Level(None, produces=False) for _ in levels]
    ports = []
    for speaker, listener in zip(speakers, listeners, strict=True):
        ports += [speaker, listener]
    slots = [add(mixer, port) for port in ports]
    said, heard = slots[0::2], slots[1::2]
    edges = [(src, dst) for i, src in enumerate(said) for j, dst in enumerate(heard) if i != j]
    edges += [(src, 0) for src in said]  # and the device hears everyone
    for edge in edges:
        mixer.connect_slots(*edge)
    mixer.tick(2)
    check_mixes(ports, slots, edges)
    plan = mixer._plan
    assert len(plan.shared) == 1 and len(plan.subtracts) == 1 and not plan.adds


def test_sparse_graphs_sum_only_their_sources(mixer):
    # A chain, a star, a pair listening to each other, a mesh of four with a recorder
    # of two of them, a listener of nothing and a silent speaker.
    levels = [1000, -2000, 30000, 30000, 5, None, 32767, -32768, 100, 200, 300, 400, 0]
    ports = [Level(level) for level in levels]
    slots = [add(mixer, port) for port in ports]
    s = slots
    edges = {(s[0], s[1]), (s[1], s[2]), (s[2], s[3])}  # chain
    edges |= {(s[4], s[i]) for i in (0, 2, 6, 7)} | {(s[i], s[4]) for i in (2, 3, 5)}  # star
    edges |= {(s[6], s[7]), (s[7], s[6])}
    mesh = s[8:12]
    edges |= {(a, b) for a in mesh for b in mesh if a != b}
    edges |= {(s[8], s[12]), (s[9], s[12])}
    for edge in sorted(edges):
        mixer.connect_slots(*edge)
    for _ in range(3):
        mixer.tick()
        check_mixes(ports, slots, edges)
    mixer.disconnect_slots(s[9], s[12])
    edges.discard((s[9], s[12]))
    mixer.tick()
    check_mixes(ports, slots, edges)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(min_value=3, max_value=16).flatmap(
        lambda n: st.tuples(
            st.lists(
                st.one_of(
                    st.none(),
                    st.sampled_from([-32768, -1, 0, 1, 32767]),
                    st.integers(-32768, 32767),
                ),
                min_size=n,
                max_size=n,
            ),
            st.lists(st.booleans(), min_size=n, max_size=n),
            st.sets(st.tuples(st.integers(0, 2 * n - 1), st.integers(0, 2 * n - 1)), max_size=n),
        )
    )
)
def test_meshes_with_stragglers_mix_like_the_naive_sum(case):
    # Full meshes of parties, each talking and listening on one slot or (as a bridge
    # used as a port does) on two, perturbed by a few connections more or less: the
    # shapes that shared sums less a few rows are made for, and their edges.
    levels, paired, toggled = case
    mixer = AudioMixer(None, None, RATE)
    ports, talks, listens = [], [], []
    for level, pair in zip(levels, paired, strict=True):
        if pair:
            ports += [Level(level, consumes=False), Level(None, produces=False)]
        else:
            ports.append(Level(level))
        talks.append(len(ports) - 1 - pair)
        listens.append(len(ports) - 1)
    slots = [add(mixer, port) for port in ports]
    edges = {
        (slots[talk], slots[listen])
        for i, talk in enumerate(talks)
        for j, listen in enumerate(listens)
        if i != j
    }
    edges ^= {(slots[i], slots[j]) for i, j in toggled if i != j and max(i, j) < len(slots)}
    for edge in sorted(edges):
        mixer.connect_slots(*edge)
    mixer.tick()
    check_mixes(ports, slots, edges)


def recipe_total(recipe, shared):
    """The items (with their counts) a recipe of plan_sums adds up."""
    total = Counter() if recipe.shared is None else Counter(shared[recipe.shared])
    total.update(recipe.add)
    total.subtract(recipe.subtract)
    return +total  # drops the items that cancelled out


def test_plan_sums_shares_one_sum_per_mesh():
    # Two meshes of 50 (items 0-49 and 50-99) and a few small sets.
    wanted = [frozenset(range(50)) - {own} for own in range(50)]
    wanted += [frozenset(range(50, 100)) - {own} for own in range(50, 100)]
    wanted += [frozenset({3}), frozenset({4, 70})]
    shared, recipes = plan_sums(wanted)
    assert sorted(map(len, shared)) == [50, 50]
    for sources in wanted:
        recipe = recipes[sources]
        assert recipe_total(recipe, shared) == Counter(sources)
        assert len(recipe.subtract) <= 1
        assert (recipe.shared is None) == (len(sources) < 3)


def test_plan_sums_keeps_a_drifting_shared_sum_close_to_its_sets():
    # Each set differs from the one before by one item: one sum for all would drift.
    wanted = [frozenset(range(start, start + 6)) for start in range(10)]
    shared, recipes = plan_sums(wanted)
    for sources in wanted:
        recipe = recipes[sources]
        assert recipe_total(recipe, shared) == Counter(sources)
        assert recipe.shared is not None and not recipe.add and len(recipe.subtract) <= 2
    assert len(shared) > 1


def test_slots_are_allocated_lowest_first_and_freed():
    mixer = AudioMixer(None, None, RATE, slot_count=3)
    ports = [Sink() for _ in range(3)]
    assert [add(mixer, p) for p in ports] == [1, 2, 3]
    assert mixer.used_slot_count == 3
    with pytest.raises(MixerError, match="slots"):
        add(mixer, Sink())
    with pytest.raises(MixerError, match="already"):
        add(mixer, ports[0])
    mixer.connect_slots(1, 2)
    mixer.connect_slots(2, 3)
    mixer.remove_port(2)
    assert mixer.connected_slots == []
    assert add(mixer, Sink()) == 2
    with pytest.raises(ValueError, match="not in use"):
        mixer.remove_port(7)
    with pytest.raises(ValueError, match="sound device"):
        mixer.remove_port(0)


def test_connect_checks_its_slots(mixer):
    slot = add(mixer, Sink())
    with pytest.raises(ValueError, match="not in use"):
        mixer.connect_slots(slot + 1, slot)
    with pytest.raises(ValueError, match="out of range"):
        mixer.connect_slots(-1, slot)
    with pytest.raises(TypeError):
        mixer.connect_slots("0", slot)
    mixer.connect_slots(0, slot)
    mixer.connect_slots(0, slot)  # twice is once
    assert mixer.connected_slots == [(0, slot)]
    mixer.disconnect_slots(0, slot)
    mixer.disconnect_slots(0, slot)
    assert mixer.connected_slots == []


@pytest.mark.parametrize("rate", [0, -8000, 8001, 44110, 48000.0, True])
def test_sample_rate_must_give_whole_20ms_frames(rate):
    with pytest.raises(ValueError):
        AudioMixer(None, None, rate)


def test_44100_hz_gives_882_sample_frames():
    mixer = AudioMixer(None, None, 44100)
    assert mixer.frame_samples == 882


def test_device_opens_with_the_first_port_and_closes_after_the_last():
    device = CaptureDevice()
    mixer = AudioMixer(None, None, RATE, device=device)
    assert (device.opened, device.closed) == (0, 0)
    a = add(mixer, Sink())
    b = add(mixer, Sink())
    assert (device.opened, device.closed) == (1, 0)
    mixer.remove_port(a)
    assert device.closed == 0
    mixer.remove_port(b)
    assert (device.opened, device.closed) == (1, 1)
    assert mixer.real_input_device == "capture mic"


def test_switching_devices_while_open():
    first, second = CaptureDevice(500), CaptureDevice(1500)
    mixer = AudioMixer(None, None, RATE, device=first)
    sink = Sink()
    mixer.connect_slots(0, add(mixer, sink))
    mixer.set_sound_devices(None, None, 0, device=second)
    assert (first.closed, second.opened) == (1, 1)
    mixer.tick(25)
    assert peak_frequency(sink.audio()) == pytest.approx(1500, abs=5)


def test_ports_can_change_the_mixer_from_inside_a_tick(mixer):
    events = []

    class Remover(SlotPort):
        """Removes a victim slot, then itself, from inside produce()."""

        consumes = False

        def __init__(self):
            self.victim = None

        def produce(self):
            mixer.remove_port(self.victim)
            mixer.remove_port(self.slot)
            extra = Sink()
            events.append(("added", mixer.add_port(extra)))
            return np.full(FRAME, 5, dtype=np.int16)

    class Victim(Sink):
        def consume(self, frame):
            events.append("victim heard")

    remover, victim, listener = Remover(), Victim(), Sink()
    remover.slot = add(mixer, remover)
    remover.victim = add(mixer, victim)
    mixer.connect_slots(remover.slot, remover.victim)
    mixer.connect_slots(remover.slot, add(mixer, listener))
    mixer.tick()
    assert "victim heard" not in events
    assert np.all(listener.frames[0] == 5)  # the frame produced before leaving still counts
    mixer.tick()
    assert listener.frames[1] is None
    assert events == [("added", 1)]  # the remover, gone, was not asked again


def test_concurrent_changes_from_another_thread_while_ticking():
    mixer = AudioMixer(None, None, RATE)
    anchor = Participant(700)
    anchor_slot = add(mixer, anchor)
    errors = []
    stop = threading.Event()

    def churn():
        try:
            while not stop.is_set():
                port = Participant(300)
                slot = mixer.add_port(port)
                mixer.connect_slots(anchor_slot, slot)
                mixer.connect_slots(slot, anchor_slot)
                mixer.remove_port(slot)
        except Exception as error:  # reported below
            errors.append(error)

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        for _ in range(300):
            mixer.tick()
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert len(anchor.frames) == 300
    assert mixer.used_slot_count == 1


def test_a_failing_port_is_logged_once_and_counts_as_silence(mixer, caplog):
    class Broken(SlotPort):
        consumes = False

        def produce(self):
            raise RuntimeError("boom")

    class WrongShape(SlotPort):
        consumes = False

        def produce(self):
            return np.zeros(10, dtype=np.int16)

    sink = Sink()
    dst = add(mixer, sink)
    for port in (Broken(), WrongShape(), ConstantSource(7)):
        mixer.connect_slots(add(mixer, port), dst)
    with caplog.at_level(logging.ERROR, logger="sipsimple.media.mixer"):
        mixer.tick(3)
    assert [np.all(f == 7) for f in sink.frames] == [True] * 3
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 2


def test_after_tick_callbacks_run_after_the_tick(mixer):
    order = []

    class Deferring(SlotPort):
        consumes = False

        def produce(self):
            mixer.call_after_tick(lambda: order.append("callback"))
            order.append("produce")

    add(mixer, Deferring())
    mixer.tick(2)
    assert order == ["produce", "produce", "callback", "callback"]
    mixer.call_after_tick(lambda: order.append("now"))
    assert order[-1] == "now"


def test_tick_count_must_be_a_non_negative_int(mixer):
    mixer.tick(0)
    assert mixer.statistics.frames == 0
    with pytest.raises(ValueError):
        mixer.tick(-1)


class TestMixerPort:
    def test_network_audio_in_and_mix_out(self, mixer):
        port = MixerPort(mixer)
        port.start()
        mixer.connect_slots(add(mixer, ToneSource(1000)), port.slot)
        sink = Sink()
        mixer.connect_slots(port.slot, add(mixer, sink))
        received = tone(600, 10 * FRAME)
        for chunk in np.array_split(received, 7):  # any length: reframed
            port.put_frame(chunk)
        mixer.tick(10)
        assert np.array_equal(sink.audio(), received)
        sent = [port.get_frame() for _ in range(10)]
        assert port.get_frame() is None
        assert np.array_equal(np.concatenate(sent), tone(1000, 10 * FRAME))

    def test_on_frame_runs_once_per_tick_in_step(self, mixer):
        calls = []
        port = MixerPort(mixer, on_frame=lambda: calls.append(port.get_frame()))
        port.start()
        mixer.tick(3)
        assert calls == [None, None, None]  # nothing connected

    def test_queues_are_bounded_and_drop_the_oldest(self, mixer):
        class Counter(SlotPort):
            consumes = False
            ticks = 0

            def produce(self):
                self.ticks += 1
                return np.full(FRAME, self.ticks, dtype=np.int16)

        port = MixerPort(mixer, max_delay=0.06)  # three frames each way
        port.start()
        sink = Sink()
        mixer.connect_slots(port.slot, add(mixer, sink))
        mixer.connect_slots(add(mixer, Counter()), port.slot)
        port.put_frame(np.arange(5 * FRAME, dtype=np.int16))
        mixer.tick(4)
        assert np.array_equal(sink.audio()[: 3 * FRAME], np.arange(2 * FRAME, 5 * FRAME))
        assert not np.any(sink.frames[3])  # the network side ran dry: silence
        assert [port.get_frame()[0] for _ in range(3)] == [2, 3, 4]
        assert port.get_frame() is None

    def test_bad_input_and_restart(self, mixer):
        port = MixerPort(mixer)
        with pytest.raises(ValueError):
            port.put_frame(np.zeros(10, dtype=np.float32))
        with pytest.raises(ValueError):
            MixerPort(mixer, max_delay=0.001)
        port.start()
        first = port.slot
        port.stop()
        assert not port.is_active and port.slot is None
        port.start()
        assert port.slot == first


class TestSampleFifo:
    def test_wraps_around(self):
        fifo = SampleFifo(5)
        fifo.write(np.array([1, 2, 3], dtype=np.int16))
        assert fifo.read(2).tolist() == [1, 2]
        fifo.write(np.array([4, 5, 6, 7], dtype=np.int16))
        assert len(fifo) == 5
        assert fifo.read(5).tolist() == [3, 4, 5, 6, 7]

    def test_overflow_drops_the_oldest(self):
        fifo = SampleFifo(4)
        fifo.write(np.array([1, 2, 3], dtype=np.int16))
        fifo.write(np.array([4, 5], dtype=np.int16))
        assert fifo.dropped == 1
        fifo.write(np.arange(10, 16, dtype=np.int16))
        assert fifo.read(4).tolist() == [12, 13, 14, 15]
        assert fifo.dropped == 7

    def test_short_reads(self):
        fifo = SampleFifo(8)
        fifo.write(np.array([9, 8], dtype=np.int16))
        assert fifo.read(3) is None
        assert len(fifo) == 2
        assert fifo.read(3, pad=True).tolist() == [9, 8, 0]
        assert fifo.underruns == 2
        with pytest.raises(ValueError):
            SampleFifo(0)

    def test_random_writes_and_reads_keep_the_order(self):
        """Against a plain list: every mix of wrapping, overflowing and short operations."""
        rng = np.random.default_rng(11)
        fifo = SampleFifo(50)
        model: list[int] = []
        counter = 0
        for _ in range(2000):
            if rng.random() < 0.5:
                count = int(rng.integers(0, 70))
                samples = np.arange(counter, counter + count, dtype=np.int64).astype(np.int16)
                counter += count
                fifo.write(samples)
                model = (model + samples.tolist())[-50:]
            else:
                count = int(rng.integers(1, 60))
                pad = bool(rng.random() < 0.5)
                got = fifo.read(count, pad=pad)
                if len(model) >= count:
                    expected, model = model[:count], model[count:]
                elif pad:
                    expected, model = model + [0] * (count - len(model)), []
                else:
                    expected = None
                assert (got.tolist() if got is not None else None) == expected
            assert len(fifo) == len(model)
