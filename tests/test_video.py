"""Clip decoding on the real clips in $AVDD_DATA/video: shapes, alignment, and failure reasons."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

from avdd.data import video
from avdd.data.audio import clip_to_spectrogram
from avdd.data.video import decode_clip

GOOD = {"big_buck_bunny_432_433.webm": [0], "fire2.mp4": [0, 1], "example3.mp4": [0, 1]}


@pytest.fixture(scope="module")
def clips(data_root: Path) -> Path:
    return data_root / "video"


def frame_by_seeking(path: Path, time: float) -> np.ndarray:
    """The frame on screen at ``time``, found independently: seek, then decode forward."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        container.seek(int(time / stream.time_base), stream=stream, backward=True)
        shown = None
        for frame in container.decode(stream):
            if frame.time > time:
                break
            shown = frame
        return shown.to_ndarray(format="rgb24").transpose(2, 0, 1)


def whole_audio(path: Path) -> tuple[np.ndarray, int]:
    """The whole audio track as mono float32 from time 0, decoded independently of avdd: the
    first frame at its timestamp, the others back to back, except that a frame stamped well after
    the previous one's end starts at its timestamp (fire2.mp4 has a gap of 0.15 s)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.format.name == "fltp"  # so to_ndarray gives (channels, samples) floats
        pieces, end = [], 0
        for frame in container.decode(stream):
            start = round(frame.time * stream.rate)
            if start > end + stream.rate // 100 or not pieces:
                pieces.append(np.zeros(start - end, dtype=np.float32))
                end = start
            pieces.append(frame.to_ndarray().mean(axis=0))
            end += frame.samples
        return np.concatenate(pieces), stream.rate


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_clip_gives_every_second_with_frame_and_spectrogram(clips: Path, name: str) -> None:
    decoded, skipped = decode_clip(clips / name, "all", image_size=32)
    assert skipped == []
    assert [d.second for d in decoded] == GOOD[name]
    for d in decoded:
        assert d.frame.shape == (3, 32, 32) and d.frame.dtype == np.uint8
        assert d.frame.max() > d.frame.min()  # a picture, not a blank
        assert d.spectrogram.shape == (1, 128, 56) and d.spectrogram.dtype == np.float32
        assert np.isfinite(d.spectrogram).all()
        assert d.spectrogram.min() >= -100.0 and d.spectrogram.max() < 60.0  # dB of a [-1, 1] signal
        assert d.spectrogram.max() > -60.0 and not d.silent  # real sound


@pytest.mark.parametrize("name", sorted(GOOD))
def test_frame_is_the_one_on_screen_mid_second(clips: Path, name: str) -> None:
    decoded, _ = decode_clip(clips / name, "all", image_size=None)
    for d in decoded:
        np.testing.assert_array_equal(d.frame, frame_by_seeking(clips / name, d.second + 0.5))


def test_seconds_of_a_clip_have_different_frames(clips: Path) -> None:
    first, second = decode_clip(clips / "fire2.mp4", "all", image_size=32)[0]
    assert np.abs(first.frame.astype(int) - second.frame.astype(int)).mean() > 1.0


@pytest.mark.parametrize("name", sorted(GOOD))
def test_spectrogram_is_that_seconds_audio(clips: Path, name: str) -> None:
    wave, rate = whole_audio(clips / name)
    decoded, _ = decode_clip(clips / name, "all", image_size=8)
    for d in decoded:
        expected = clip_to_spectrogram(torch.from_numpy(wave[d.second * rate : (d.second + 1) * rate]), rate)
        np.testing.assert_allclose(d.spectrogram, expected.numpy(), atol=1e-3)


def test_listed_seconds_match_the_full_pass(clips: Path) -> None:
    full, _ = decode_clip(clips / "fire2.mp4", "all", image_size=16)
    one, skipped = decode_clip(clips / "fire2.mp4", [1], image_size=16)
    assert skipped == [] and [d.second for d in one] == [1]
    np.testing.assert_array_equal(one[0].frame, full[1].frame)
    np.testing.assert_array_equal(one[0].spectrogram, full[1].spectrogram)


def test_center_second(clips: Path) -> None:
    assert [d.second for d in decode_clip(clips / "fire2.mp4", "center", image_size=8)[0]] == [1]  # 2.4 s
    # no container duration: the length comes from decoding (about 4.9 s)
    center, _ = decode_clip(clips / "no_duration.webm", "center", image_size=8, allow_silent_audio=True)
    assert [d.second for d in center] == [2]


def test_missing_and_unreadable_files(clips: Path, tmp_path: Path) -> None:
    assert decode_clip(tmp_path / "nope.mp4", [3])[1] == [video.Skipped(3, video.MISSING, "no such file")]
    assert [(s.second, s.reason) for s in decode_clip(clips / "empty.webm")[1]] == [(None, video.UNREADABLE)]


def test_no_audio_stream_is_skipped_unless_silence_is_allowed(clips: Path) -> None:
    decoded, skipped = decode_clip(clips / "no_audio.mp4", "all", image_size=8)
    assert decoded == [] and [(s.second, s.reason) for s in skipped] == [(None, video.NO_AUDIO)]
    decoded, skipped = decode_clip(clips / "no_audio.mp4", "all", image_size=8, allow_silent_audio=True)
    assert skipped == [] and [d.second for d in decoded] == [0, 1]
    assert all(d.silent and (d.spectrogram == -100.0).all() for d in decoded)


def test_container_without_duration_is_measured_by_decoding(clips: Path) -> None:
    with av.open(str(clips / "no_duration.webm")) as container:
        assert container.duration is None
    _, skipped = decode_clip(clips / "no_duration.webm", "all", image_size=8)
    # its audio track is digital silence throughout: every second is skipped, none is faked
    assert [(s.second, s.reason) for s in skipped] == [(s, video.SILENT_AUDIO) for s in range(5)]
    decoded, _ = decode_clip(clips / "no_duration.webm", "all", image_size=8, allow_silent_audio=True)
    assert [d.second for d in decoded] == [0, 1, 2, 3, 4] and all(d.silent for d in decoded)


def test_audio_that_fails_part_way_skips_only_the_dead_seconds(clips: Path) -> None:
    decoded, skipped = decode_clip(clips / "video_with_failing_audio.mp4", "all", image_size=8)
    assert [d.second for d in decoded] == [0, 1, 2, 3, 4]
    assert not any(d.silent for d in decoded)
    assert [(s.second, s.reason) for s in skipped] == [(s, video.SILENT_AUDIO) for s in range(5, 11)]


def test_truncated_files(clips: Path, tmp_path: Path) -> None:
    for name in ("fire2.mp4", "big_buck_bunny_432_433.webm"):
        data = (clips / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
    # the mp4 index points past the end of the file: FFmpeg fails reading it
    _, skipped = decode_clip(tmp_path / "fire2.mp4", "all", image_size=8)
    assert [(s.second, s.reason) for s in skipped] == [(0, video.DECODE_ERROR), (1, video.DECODE_ERROR)]
    # the webm just ends early, well short of the 1 s its header announces
    decoded, skipped = decode_clip(tmp_path / "big_buck_bunny_432_433.webm", "all", image_size=8)
    assert decoded == [] and [(s.second, s.reason) for s in skipped] == [(0, video.TOO_SHORT)]


def test_seconds_past_the_end_are_too_short(clips: Path) -> None:
    decoded, skipped = decode_clip(clips / "example3.mp4", [1, 4], image_size=8)
    assert [d.second for d in decoded] == [1]
    assert [(s.second, s.reason) for s in skipped] == [(4, video.TOO_SHORT)]
