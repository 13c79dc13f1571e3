"""The log-mel front end and the resampler against direct numpy computations of the same formulas."""

import math
import struct
import wave

import numpy as np
import pytest
import torch

from avdd.data import audio
from avdd.errors import AvddError


def numpy_log_mel(x: np.ndarray, sr: int = 11000, n_fft: int = 400, hop: int = 200, n_mels: int = 128):
    """Textbook computation: reflect pad, periodic Hann, explicit DFT, HTK triangles, 10·log10."""
    padded = np.pad(x.astype(np.float64), n_fft // 2, mode="reflect")
    n = np.arange(n_fft)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)
    frames = np.stack([padded[t : t + n_fft] * window for t in range(0, len(padded) - n_fft + 1, hop)])
    k = np.arange(n_fft // 2 + 1)
    dft = np.exp(-2j * np.pi * np.outer(n, k) / n_fft)
    power = np.abs(frames @ dft) ** 2  # (frames, freqs)

    def mel(f):
        return 2595 * math.log10(1 + f / 700)

    def hz(m):
        return 700 * (10 ** (m / 2595) - 1)

    edges = [hz(mel(0) + i * (mel(sr / 2) - mel(0)) / (n_mels + 1)) for i in range(n_mels + 2)]
    freqs = np.linspace(0, sr // 2, n_fft // 2 + 1)
    bank = np.zeros((len(freqs), n_mels))
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        for i, f in enumerate(freqs):
            bank[i, m] = max(0.0, min((f - lo) / (mid - lo), (hi - f) / (hi - mid)))
    return 10 * np.log10(np.maximum(power @ bank, 1e-10)).T[None]  # (1, n_mels, frames)


def test_log_mel_matches_direct_computation():
    rng = np.random.default_rng(0)
    t = np.arange(11000) / 11000
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(11000)
    got = audio.log_mel_spectrogram(torch.tensor(x, dtype=torch.float32)).numpy()
    expected = numpy_log_mel(x)
    assert got.shape == expected.shape == (1, 128, 56)
    np.testing.assert_allclose(got, expected, atol=2e-3)


def test_log_mel_floor_on_silence():
    got = audio.log_mel_spectrogram(torch.zeros(11000))
    assert torch.all(got == -100.0)


def test_log_mel_is_batched():
    x = torch.randn(3, 11000)
    batched = audio.log_mel_spectrogram(x)
    assert batched.shape == (3, 1, 128, 56)
    torch.testing.assert_close(batched[1], audio.log_mel_spectrogram(x[1]))


def numpy_resample(x: np.ndarray, orig: int, new: int, zeros: int = 6, rolloff: float = 0.99) -> np.ndarray:
    """y[m] = Σ_n x[n] · h(m·orig/new − n) with a Hann-windowed sinc h, evaluated directly."""
    g = math.gcd(orig, new)
    orig, new = orig // g, new // g
    cutoff = min(orig, new) * rolloff / orig  # in cycles per input sample, ×2
    out = np.zeros(math.ceil(len(x) * new / orig))
    n = np.arange(len(x))
    for m in range(len(out)):
        d = m * orig / new - n  # distance in input samples
        t = np.clip(d * cutoff, -zeros, zeros)
        window = np.cos(t * np.pi / zeros / 2) ** 2
        out[m] = np.sum(x * np.sinc(t) * window * cutoff)
    return out


def test_resample_matches_direct_computation():
    x = np.random.default_rng(1).standard_normal(400)
    got = audio.resample(torch.tensor(x, dtype=torch.float32), 8000, 11000).numpy()
    np.testing.assert_allclose(got, numpy_resample(x, 8000, 11000), atol=1e-4)


@pytest.mark.parametrize("orig", [8000, 16000, 44100, 48000])
def test_resample_keeps_a_tone(orig):
    t = torch.arange(orig) / orig
    tone = torch.sin(2 * math.pi * 440 * t)
    out = audio.resample(tone, orig, 11000)
    assert out.shape == (11000,)
    t_new = torch.arange(11000) / 11000
    assert (out - torch.sin(2 * math.pi * 440 * t_new))[300:-300].abs().max() < 5e-3


def test_clip_to_spectrogram_pads_crops_and_mixes_down():
    stereo = torch.randn(2, 4000) * 0.1
    spec = audio.clip_to_spectrogram(stereo, 8000)
    assert spec.shape == audio.SPECTROGRAM_SHAPE
    long = torch.randn(30000) * 0.1
    cropped = audio.clip_to_spectrogram(long, 11000)
    torch.testing.assert_close(cropped, audio.log_mel_spectrogram(long[:11000]))


def write_wav(path, samples: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(struct.pack(f"<{len(samples)}h", *samples.tolist()))


def test_read_wav_scales_pcm(tmp_path):
    write_wav(tmp_path / "a.wav", np.array([0, 16384, -32768], dtype=np.int16), 8000)
    waveform, rate = audio.read_wav(tmp_path / "a.wav")
    assert rate == 8000
    torch.testing.assert_close(waveform, torch.tensor([[0.0, 0.5, -1.0]]))


def test_read_wav_errors_name_the_file(tmp_path):
    with pytest.raises(AvddError, match="nope.wav: file not found"):
        audio.read_wav(tmp_path / "nope.wav")
    (tmp_path / "junk.wav").write_bytes(b"definitely not RIFF data")
    with pytest.raises(AvddError, match="junk.wav: not a readable PCM WAV"):
        audio.read_wav(tmp_path / "junk.wav")
