"""The playout's batched G.711 path plays what the general path plays, frame for frame.

Calls between two mixers over loopback, each carrying a tone of its own, run on an event
loop whose clock jumps to the next timer, with the same phases and RTP numbers, so every
run sees the same arrival times; once with the transports as they start (the G.711 frames
of all the calls of a mixer decoded in one table lookup), once with every transport on
the general path, decoding its own packets.  What each call's slot gives the mixer (to
the last bit of the resampling's rounding), and the jitter buffers' statistics, must be
the same.  The batched run has its calls' jitter buffers in a lane (a JitterBank) after
their first frames, so this also checks the lane against the JitterBuffers.

Run inside a private network namespace:
  unshare -n sh -c 'ip link set lo up; PYTHONPATH=src python -m pytest \\
      tests/integration/test_audio_playout_batch.py'
"""

from __future__ import annotations

import asyncio
import itertools
import random
from dataclasses import asdict

import numpy as np
import pytest
from benchmarks.bench_rtp_calls import VirtualClockLoop
from tests.support.audio import Recorder, Tone

from sipsimple.core.media import AudioTransport, RTPTransport, audiotransport
from sipsimple.core.sdp import SDPConnection, SDPSession
from sipsimple.media import rtp
from sipsimple.media.devices import DummyDevice
from sipsimple.media.mixer import AudioMixer

pytestmark = pytest.mark.timeout(60)

LOCAL = "127.0.0.1"


def written(media: object) -> SDPSession:
    return SDPSession.parse(str(SDPSession(LOCAL, connection=SDPConnection(LOCAL), media=[media])))


async def run_calls(codec: str, calls: int, batched: bool) -> tuple[list, list]:
    mixers = [
        AudioMixer(None, None, 48000, slot_count=4 * calls + 1, device=DummyDevice())
        for _ in range(2)
    ]
    rtps = [[RTPTransport(local_address=LOCAL) for _ in range(calls)] for _ in mixers]
    for mixer in mixers:
        mixer.start()
    await asyncio.gather(*(rtp.set_INIT() for side in rtps for rtp in side))
    audios, recorders = [], []
    for ours, theirs in zip(*rtps, strict=True):
        offerer = AudioTransport(mixers[0], ours, codecs=[codec])
        offer = written(offerer.get_local_media())
        answerer = AudioTransport(mixers[1], theirs, offer, 0, codecs=[codec])
        answer = written(answerer.get_local_media(offer, 0))
        offerer.start(offer, answer, 0)
        answerer.start(answer, offer, 0)
        for mixer, audio in zip(mixers, (offerer, answerer), strict=True):
            if not batched:
                audio._batch = None
            recorder = Recorder()
            mixer.connect_slots(mixer.add_port(Tone(300.0 + 170 * len(audios))), audio.slot)
            mixer.connect_slots(audio.slot, mixer.add_port(recorder))
            audios.append(audio)
            recorders.append(recorder)
    await asyncio.sleep(1.5)
    heard = [recorder.frames[:60] for recorder in recorders]
    statistics = [asdict(audio.jitter_buffer_statistics) for audio in audios]
    for audio in audios:
        audio.stop()
    await asyncio.gather(*(rtp.stop() for side in rtps for rtp in side))
    for mixer in mixers:
        mixer.close()
    return heard, statistics


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
def test_batched_playout_plays_as_each_call_alone(codec, monkeypatch):
    results = []
    for batched in (True, False):
        monkeypatch.setattr(audiotransport, "_phases", itertools.count())  # the same phases
        monkeypatch.setattr(rtp.secrets, "randbits", random.Random(5).getrandbits)  # RTP numbers
        monkeypatch.setattr(audiotransport, "BATCHED_PHASE_SLOTS", 2)  # calls share clocks
        loop = VirtualClockLoop()
        try:
            results.append(loop.run_until_complete(run_calls(codec, 4, batched)))
        finally:
            loop.close()
    (heard, statistics), (heard_alone, statistics_alone) = results
    # The delays differ in the last bits only: the random RTP timestamps of each run.
    for ours, theirs in zip(statistics, statistics_alone, strict=True):
        assert ours == pytest.approx(theirs, rel=1e-9)
    assert all(s["played"] > 40 for s in statistics)
    for ours, theirs in zip(heard, heard_alone, strict=True):
        assert len(ours) == len(theirs) == 60
        # Within one least significant bit: a matrix product of the resampling rounds its
        # last bits after the number of rows it multiplies (calls in the lane or not).
        assert all(
            np.abs(a.astype(np.int32) - b).max() <= 1 for a, b in zip(ours, theirs, strict=True)
        )
        assert any(len(frame) and np.abs(frame).max() > 1000 for frame in ours)  # a tone
