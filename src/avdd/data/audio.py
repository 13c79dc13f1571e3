"""Audio front end, torch only: waveform -> resampled 1-s clip -> log-mel spectrogram.

Matches torchaudio's ``MelSpectrogram(sample_rate)`` defaults followed by ``AmplitudeToDB()``:
n_fft 400, hop 200, periodic Hann window, centred frames with reflect padding, power 2,
128 HTK mel bands from 0 Hz to Nyquist without filter normalisation, then 10·log10 with a
1e-10 floor. At 11 kHz and 11000 samples this gives a (1, 128, 56) spectrogram.
"""

from __future__ import annotations

import math
import wave
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from avdd.errors import AvddError
from avdd.files import write_atomic

SAMPLE_RATE = 11_000
CLIP_SAMPLES = SAMPLE_RATE  # one second
N_FFT = 400
HOP_LENGTH = 200
N_MELS = 128
AMIN = 1e-10
SPECTROGRAM_SHAPE = (1, N_MELS, 1 + CLIP_SAMPLES // HOP_LENGTH)  # (1, 128, 56)


def hz_to_mel(freq: np.ndarray | float) -> np.ndarray | float:
    """HTK mel scale."""
    return 2595.0 * np.log10(1.0 + np.asarray(freq) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray | float:
    return 700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_filterbank(
    n_freqs: int, n_mels: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None
) -> torch.Tensor:
    """Triangular HTK mel filters, shape (n_freqs, n_mels), no area normalisation."""
    f_max = sample_rate / 2 if f_max is None else f_max
    all_freqs = np.linspace(0.0, sample_rate // 2, n_freqs)
    mel_points = np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2)
    f_points = np.asarray(mel_to_hz(mel_points))
    f_diff = np.diff(f_points)
    slopes = f_points[None, :] - all_freqs[:, None]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    bank = np.maximum(0.0, np.minimum(down, up))
    return torch.from_numpy(bank.astype(np.float32))


@lru_cache(maxsize=16)
def _sinc_kernel(orig: int, new: int, width_zeros: int, rolloff: float) -> tuple[torch.Tensor, int]:
    """Polyphase Hann-windowed sinc low-pass kernels: (new, 1, kernel_len) and the half width."""
    base = min(orig, new) * rolloff  # cut-off, in units of the reduced rates
    half = math.ceil(width_zeros * orig / base)
    idx = torch.arange(-half, half + orig, dtype=torch.float64)[None, :] / orig
    phases = -torch.arange(new, dtype=torch.float64)[:, None] / new
    t = ((phases + idx) * base).clamp(-width_zeros, width_zeros)
    window = torch.cos(t * math.pi / width_zeros / 2) ** 2
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / torch.where(t == 0, 1.0, t))
    kernels = sinc * window * base / orig
    return kernels[:, None, :].float(), half


def resample(
    waveform: torch.Tensor, orig_rate: int, new_rate: int, width_zeros: int = 6, rolloff: float = 0.99
) -> torch.Tensor:
    """Band-limited resampling along the last axis (windowed-sinc interpolation).

    Output length is ceil(len * new_rate / orig_rate), like torchaudio's ``resample``.
    """
    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} and {new_rate}")
    if orig_rate == new_rate:
        return waveform
    g = math.gcd(orig_rate, new_rate)
    orig, new = orig_rate // g, new_rate // g
    kernels, half = _sinc_kernel(orig, new, width_zeros, rolloff)
    shape = waveform.shape
    flat = waveform.reshape(-1, 1, shape[-1]).to(torch.float32)
    length = shape[-1]
    padded = torch.nn.functional.pad(flat, (half, half + orig))
    out = torch.nn.functional.conv1d(padded, kernels.to(flat.device), stride=orig)
    out = out.transpose(1, 2).reshape(flat.shape[0], -1)
    target = math.ceil(new * length / orig)
    return out[:, :target].reshape(*shape[:-1], target)


def fix_length(waveform: torch.Tensor, length: int = CLIP_SAMPLES) -> torch.Tensor:
    """Crop to the first ``length`` samples or zero-pad at the end."""
    n = waveform.shape[-1]
    if n >= length:
        return waveform[..., :length]
    return torch.nn.functional.pad(waveform, (0, length - n))


def to_mono(waveform: torch.Tensor) -> torch.Tensor:
    """(channels, T) or (T,) -> (T,) by averaging channels."""
    return waveform.mean(dim=0) if waveform.dim() == 2 else waveform


def stft(flat: torch.Tensor) -> torch.Tensor:
    """(B, T) waveforms -> (B, n_freqs, frames) complex STFT with the front end's settings."""
    window = torch.hann_window(N_FFT, periodic=True, device=flat.device)
    return torch.stft(flat, N_FFT, HOP_LENGTH, N_FFT, window, center=True, pad_mode="reflect", return_complex=True)


def istft(spec: torch.Tensor, length: int) -> torch.Tensor:
    """Inverse of :func:`stft` (least-squares overlap-add), (B, n_freqs, frames) -> (B, length)."""
    window = torch.hann_window(N_FFT, periodic=True, device=spec.device)
    return torch.istft(spec, N_FFT, HOP_LENGTH, N_FFT, window, center=True, length=length)


def mel_bank(sample_rate: int = SAMPLE_RATE, device: torch.device | str = "cpu") -> torch.Tensor:
    """The front end's (n_freqs, n_mels) filterbank: mel power = linear power @ bank."""
    return mel_filterbank(N_FFT // 2 + 1, N_MELS, sample_rate).to(device)


def log_mel_spectrogram(waveform: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """(..., T) waveform -> (..., 1, n_mels, frames) power mel spectrogram in dB."""
    batch_shape = waveform.shape[:-1]
    flat = waveform.reshape(-1, waveform.shape[-1]).to(torch.float32)
    spec = stft(flat)
    power = spec.real**2 + spec.imag**2  # (B, n_freqs, frames)
    mel = torch.matmul(power.transpose(1, 2), mel_bank(sample_rate, flat.device)).transpose(1, 2)
    db = 10.0 * torch.log10(mel.clamp_min(AMIN))
    return db.reshape(*batch_shape, 1, N_MELS, db.shape[-1])


def clip_to_spectrogram(waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Any-rate mono or multi-channel waveform -> (1, 128, 56) log-mel of its first second."""
    mono = to_mono(torch.as_tensor(waveform, dtype=torch.float32))
    clip = fix_length(resample(mono, sample_rate, SAMPLE_RATE))
    return log_mel_spectrogram(clip)


def read_wav(path: Path) -> tuple[torch.Tensor, int]:
    """Read a PCM WAV file -> ((channels, T) float32 in [-1, 1], sample rate)."""
    try:
        with wave.open(str(path), "rb") as f:
            rate, channels, width = f.getframerate(), f.getnchannels(), f.getsampwidth()
            raw = f.readframes(f.getnframes())
    except FileNotFoundError:
        raise AvddError(f"{path}: file not found") from None
    except (wave.Error, EOFError, OSError) as err:
        raise AvddError(f"{path}: not a readable PCM WAV file ({err}); re-download or remove it") from None
    dtypes = {1: np.uint8, 2: np.int16, 4: np.int32}
    if width not in dtypes:
        raise AvddError(f"{path}: unsupported WAV sample width of {width} bytes (need 8/16/32-bit PCM)")
    data = np.frombuffer(raw, dtype=dtypes[width]).astype(np.float32)
    if width == 1:
        data = (data - 128.0) / 128.0
    else:
        data /= float(2 ** (8 * width - 1))
    frames = data.size // channels
    return torch.from_numpy(data[: frames * channels].reshape(frames, channels).T.copy()), rate


def write_wav(path: Path, waveform: torch.Tensor, sample_rate: int) -> None:
    """Write a mono waveform in [-1, 1] (clipped beyond) as 16-bit PCM WAV."""
    pcm = (waveform.detach().cpu().to(torch.float64).clamp(-1.0, 1.0) * 32767.0).round().to(torch.int16)

    def write(file: BinaryIO) -> None:
        with wave.open(file, "wb") as f:
            f.setnchannels(1)
            f.setsampwidth(2)
            f.setframerate(sample_rate)
            f.writeframes(pcm.numpy().astype("<i2").tobytes())

    write_atomic(path, write)
