"""Audio conferencing (spec: AudioConference): the local party and several AudioStreams
in a full mesh on the voice mixer.

The conference bridge holds the local AudioDevice and each stream's own bridge (not the
stream itself), so a stream that goes on hold leaves its bridge and with it the
conference, and one that records keeps recording what it hears there.  While a stream
is in the conference its own device is muted both ways: the local party is heard and
hears through the conference's device only, once.  Each nested bridge relays with one
mixer frame of delay, so participants hear each other 40 ms later than over a direct
connection.

Cost: N participants take 3N + 1 mixer slots (each stream's own, its bridge's two
relays; the device), so the voice mixer's 254 slots hold at most 84.  The mixer makes
every participant's mix from one sum of all less the participant's own frame, so a tick
costs O(N) (see benchmarks/bench_conference.py); a join or a leave makes the mixer
rebuild its plan, O(N^2) set operations in C, once.
"""

from __future__ import annotations

import threading
from typing import Any

from sipsimple.audio import AudioBridge, AudioDevice

__all__ = ["AudioConference", "AudioConferenceError"]


class AudioConferenceError(RuntimeError):
    """A conference that cannot be made: the SIPApplication's audio is not running."""


class AudioConference:
    """A full-mesh audio conference of AudioStreams and the local party; see the module
    docstring.  Its methods may be called from any thread."""

    def __init__(self) -> None:
        from sipsimple.application import SIPApplication

        mixer = SIPApplication.voice_audio_mixer
        if mixer is None:
            raise AudioConferenceError(
                "an AudioConference needs the SIPApplication's voice audio: start the application"
            )
        self.mixer = mixer
        self.bridge = AudioBridge(mixer)
        self.device = AudioDevice(mixer)
        self.bridge.add(self.device)
        self.on_hold = False
        self.streams: list[Any] = []
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        held = " on hold" if self.on_hold else ""
        return f"<AudioConference of {len(self.streams)} stream(s){held}>"

    def add(self, stream: Any) -> None:
        """Let ``stream`` hear, and be heard by, everyone in the conference; adding a
        stream twice does nothing."""
        bridge, device = getattr(stream, "bridge", None), getattr(stream, "device", None)
        if not isinstance(bridge, AudioBridge) or not isinstance(device, AudioDevice):
            raise TypeError(f"expected an AudioStream (with a bridge and a device), got {stream!r}")
        if bridge.mixer is not self.mixer:
            raise ValueError(f"{stream!r} is on another mixer than the conference")
        with self._lock:
            if any(member is stream for member in self.streams):
                return
            device.input_muted = device.output_muted = True
            self.bridge.add(bridge)
            self.streams.append(stream)

    def remove(self, stream: Any) -> None:
        """Take ``stream`` out: it goes back to its own device; ValueError if it is not in
        the conference."""
        with self._lock:
            if not any(member is stream for member in self.streams):
                raise ValueError(f"{stream!r} is not in the conference")
            self.streams = [member for member in self.streams if member is not stream]
            self.bridge.remove(stream.bridge)
            stream.device.input_muted = stream.device.output_muted = False

    def hold(self) -> None:
        """Disconnect the local party; the others go on hearing each other."""
        with self._lock:
            if not self.on_hold:
                self.bridge.remove(self.device)
                self.on_hold = True

    def unhold(self) -> None:
        """Connect the local party again."""
        with self._lock:
            if self.on_hold:
                self.bridge.add(self.device)
                self.on_hold = False
