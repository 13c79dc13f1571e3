"""Decode a video file into one-second samples: the mid-second RGB frame and that second's log-mel.

Each file is decoded once, front to back, for all its requested seconds. For second ``s`` the
frame is the one on screen at ``s + 0.5`` (the last frame whose timestamp is <= s + 0.5), and the
audio is the waveform of [s, s + 1), placed by timestamp, averaged to mono, padded to 1 s and
turned into a (1, 128, 56) log-mel by :func:`avdd.data.audio.clip_to_spectrogram`.

Nothing here raises for a broken file: every problem becomes a :class:`Skipped` entry with one of
the :data:`REASONS`, so a caller can report it and carry on.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import numpy as np
import torch

from avdd.data.audio import SAMPLE_RATE, clip_to_spectrogram

MISSING = "missing"
UNREADABLE = "unreadable"
NO_AUDIO = "no audio stream"
NO_VIDEO = "no video stream"
TOO_SHORT = "too short"
DECODE_ERROR = "decode error"
SILENT_AUDIO = "silent audio"
REASONS = (MISSING, UNREADABLE, NO_AUDIO, NO_VIDEO, TOO_SHORT, DECODE_ERROR, SILENT_AUDIO)

# A second counts as present when at most this much of its end is missing: containers often end
# a frame or an audio packet short of a whole second.
END_SLACK = 0.1

Seconds = Sequence[int] | Literal["all", "center"]


@dataclass(frozen=True)
class Decoded:
    """One usable second: frame uint8 (3, H, W), spectrogram float32 (1, 128, 56)."""

    second: int
    frame: np.ndarray
    spectrogram: np.ndarray
    silent: bool  # the audio was missing or all zeros and was kept as silence


@dataclass(frozen=True)
class Skipped:
    """A second (or, with ``second=None``, a whole file whose seconds are unknown) not usable."""

    second: int | None
    reason: str
    detail: str


def resize_frame(rgb: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """(H, W, 3) uint8 -> (3, h, w) uint8, bilinear with antialiasing when shrinking."""
    image = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)
    if size is None or tuple(image.shape[1:]) == tuple(size):
        return image.contiguous().numpy()
    x = torch.nn.functional.interpolate(
        image[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False
    )
    return x[0].round().clamp(0, 255).to(torch.uint8).numpy()


class _Pass:
    """State of one front-to-back decode: chosen frames per second and the mono waveform."""

    def __init__(self, wanted: set[int] | None, size: tuple[int, int] | None, rate: int) -> None:
        self.wanted = wanted  # None: every second
        self.size = size
        self.rate = rate
        self.frames: dict[int, np.ndarray] = {}
        self.prev: av.VideoFrame | None = None
        self.prev_time = -math.inf
        self.video_end = 0.0
        self.chunks: list[tuple[int, np.ndarray]] = []
        self.audio_end = 0  # in samples
        self.resampler = av.AudioResampler(format="fltp")  # any sample format -> float planar

    def _keep(self, frame: av.VideoFrame, seconds: range) -> None:
        for s in seconds:
            if self.wanted is None or s in self.wanted:
                self.frames[s] = resize_frame(frame.to_ndarray(format="rgb24"), self.size)

    def add_video(self, frame: av.VideoFrame, fallback_step: float) -> None:
        step = (float(frame.duration * frame.time_base) if frame.duration and frame.time_base is not None
                else fallback_step)  # a decoded frame always has a time base
        t = float(frame.time) if frame.time is not None else self.video_end
        if self.prev is not None:
            # prev is on screen for mid-points s + 0.5 in [prev_time, t)
            self._keep(self.prev, range(max(0, math.ceil(self.prev_time - 0.5)), math.ceil(t - 0.5)))
        self.prev, self.prev_time = frame, t
        self.video_end = max(self.video_end, t + step)

    def add_audio(self, frame: av.AudioFrame) -> None:
        mono = np.concatenate([f.to_ndarray().mean(axis=0) for f in self.resampler.resample(frame)])
        pos = self.audio_end if frame.time is None else round(float(frame.time) * self.rate)
        if abs(pos - self.audio_end) <= self.rate // 500:  # timestamp rounding, not a real gap
            pos = self.audio_end
        if pos < 0:
            mono, pos = mono[-pos:], 0
        self.chunks.append((pos, mono.astype(np.float32)))
        self.audio_end = max(self.audio_end, pos + len(mono))

    def finish_video(self) -> None:
        if self.prev is not None:
            last = math.ceil(self.video_end - 0.5)  # mid-points before the stream's end
            self._keep(self.prev, range(max(0, math.ceil(self.prev_time - 0.5)), last))

    def waveform(self) -> np.ndarray:
        out = np.zeros(self.audio_end, dtype=np.float32)
        for pos, chunk in self.chunks:  # later chunks win where timestamps overlap
            out[pos : pos + len(chunk)] = chunk
        return out


def _whole_file(seconds: Seconds, reason: str, detail: str) -> list[Skipped]:
    if isinstance(seconds, str):
        return [Skipped(None, reason, detail)]
    return [Skipped(s, reason, detail) for s in seconds]


def _packets(container: av.container.InputContainer, streams: list) -> Iterator[object]:
    for packet in container.demux(streams):
        yield from packet.decode()


def decode_clip(
    path: str | Path,
    seconds: Seconds = "all",
    image_size: int | tuple[int, int] | None = 224,
    allow_silent_audio: bool = False,
) -> tuple[list[Decoded], list[Skipped]]:
    """Decode ``path`` once into samples for ``seconds``: a list of seconds, every whole second
    (``"all"``), or the middle one (``"center"``). Returns the usable seconds and the skipped ones."""
    path = Path(path)
    size = (image_size, image_size) if isinstance(image_size, int) else image_size
    if not path.is_file():
        return [], _whole_file(seconds, MISSING, "no such file")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as err:
        return [], _whole_file(seconds, UNREADABLE, str(err))
    with container:
        if not container.streams.video:
            return [], _whole_file(seconds, NO_VIDEO, "the file has no video stream")
        if not container.streams.audio and not allow_silent_audio:
            return [], _whole_file(seconds, NO_AUDIO, "the file has no audio stream (--allow-silent-audio keeps it)")
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        duration = container.duration / 1e6 if container.duration else None
        if duration is not None and isinstance(seconds, str):
            # the container's length decides which seconds to expect, so a file that decodes
            # short of it is reported rather than silently yielding fewer samples
            seconds = [_center(duration)] if seconds == "center" else range(math.floor(duration + END_SLACK))
        wanted = None if isinstance(seconds, str) else set(seconds)
        stop = max(wanted) + 1 if wanted else math.inf  # decode no further than needed
        rate = audio.rate if audio is not None else SAMPLE_RATE
        state = _Pass(wanted, size, rate)
        fps = float(video.average_rate) if video.average_rate else 25.0
        error = None
        try:
            for frame in _packets(container, [s for s in (video, audio) if s is not None]):
                if isinstance(frame, av.VideoFrame):
                    state.add_video(frame, 1.0 / fps)
                elif isinstance(frame, av.AudioFrame):  # what an audio stream's packets decode into
                    state.add_audio(frame)
                if state.prev_time > stop + 0.5 and (audio is None or state.audio_end > (stop + 0.5) * rate):
                    break
        except (av.FFmpegError, ValueError) as err:
            error = str(err)
        state.finish_video()
    return _collect(state, seconds, error, audio is not None, allow_silent_audio)


def _center(length: float) -> int:
    return max(0, min(math.floor(length / 2), math.floor(length + END_SLACK) - 1))


def _collect(
    state: _Pass, seconds: Seconds, error: str | None, has_audio: bool, allow_silent: bool
) -> tuple[list[Decoded], list[Skipped]]:
    length = state.video_end
    if state.prev is None:
        return [], _whole_file(seconds, DECODE_ERROR, error or "no video frame could be decoded")
    if seconds == "all":
        seconds = range(math.floor(length + END_SLACK))
    elif seconds == "center":
        seconds = [_center(length)]
    if not seconds:
        return [], [Skipped(None, DECODE_ERROR if error else TOO_SHORT, error or f"the video lasts {length:.2f} s")]
    wave = state.waveform()
    decoded: list[Decoded] = []
    skipped: list[Skipped] = []
    for s in sorted(set(seconds)):
        if s + 1 > length + END_SLACK or s not in state.frames:
            reason = DECODE_ERROR if error is not None else TOO_SHORT
            skipped.append(Skipped(s, reason, error or f"the video stream ends at {length:.2f} s"))
            continue
        segment = wave[s * state.rate : (s + 1) * state.rate]
        silent = not np.any(segment)
        if silent and not allow_silent:
            why = "its audio is all zeros" if has_audio else "the file has no audio stream"
            skipped.append(Skipped(s, SILENT_AUDIO, f"{why} (--allow-silent-audio keeps it)"))
            continue
        if silent:
            segment = np.zeros(state.rate, dtype=np.float32)
        spectrogram = clip_to_spectrogram(torch.from_numpy(segment.copy()), state.rate).numpy()
        decoded.append(Decoded(s, state.frames[s], spectrogram, silent))
    return decoded, skipped
