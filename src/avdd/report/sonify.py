"""From log-mel spectrograms back to sound: inverse mel filterbank + Griffin-Lim, in torch.

The inverse uses the front end's own filterbank and STFT (``avdd.data.audio``), so a spectrogram
made by the front end comes back as a waveform whose spectrogram is close to it (the mel energy
agrees to a few percent on real recordings; see tests/test_sonify.py for the bound).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch

from avdd.data.audio import (
    AMIN,
    CLIP_SAMPLES,
    HOP_LENGTH,
    N_FFT,
    N_MELS,
    SAMPLE_RATE,
    istft,
    mel_bank,
    stft,
    write_wav,
)
from avdd.data.store import SPECTROGRAM, Store
from avdd.errors import AvddError
from avdd.ranges import check_settings
from avdd.report.samples import training_samples
from avdd.seeding import generator


def db_to_power(db: torch.Tensor) -> torch.Tensor:
    return torch.pow(10.0, db / 10.0)


def mel_to_linear(mel_power: torch.Tensor, sample_rate: int = SAMPLE_RATE, iterations: int = 50) -> torch.Tensor:
    """(B, n_mels, frames) mel power -> (B, n_freqs, frames) non-negative linear power.

    A non-negative least-squares fit of ``power @ bank = mel`` (more frequency bins than mel bands,
    so many powers fit; the multiplicative updates of Lee & Seung keep every bin non-negative and
    start from the spread of each band's energy over its bins).
    """
    bank = mel_bank(sample_rate, mel_power.device).to(torch.float64)  # (F, M)
    mel = mel_power.to(torch.float64)
    # start: each band's energy spread over its bins by the filter weights
    weights = bank / bank.sum(dim=0).clamp_min(1e-12)
    power = (weights @ mel).clamp_min(1e-20)
    numerator = bank @ mel
    for _ in range(iterations):
        power = power * numerator / (bank @ (bank.T @ power)).clamp_min(1e-30)
    return power.to(mel_power.dtype)


def griffin_lim(
    magnitude: torch.Tensor, iterations: int = 64, momentum: float = 0.99, seed: int = 0,
    length: int = CLIP_SAMPLES,
) -> torch.Tensor:
    """(B, n_freqs, frames) STFT magnitudes -> (B, length) waveforms (fast Griffin-Lim, Perraudin
    et al. 2013). The random initial phase comes from ``seed`` and is the same for every item, so
    a spectrogram gives the same sound alone or in a batch."""
    g = generator(seed, "griffin-lim")
    phase = torch.rand(magnitude.shape[1:], generator=g, dtype=magnitude.dtype) * (2 * torch.pi)
    angles = torch.polar(torch.ones_like(magnitude), phase.to(magnitude.device).expand_as(magnitude))
    previous = torch.zeros_like(angles)
    for _ in range(iterations):
        rebuilt = stft(istft(magnitude * angles, length))
        accelerated = rebuilt - (momentum / (1 + momentum)) * previous
        angles = accelerated / accelerated.abs().clamp_min(1e-16)
        previous = rebuilt
    return istft(magnitude * angles, length)


def audible_range(sample_rate: int = SAMPLE_RATE) -> tuple[float, float]:
    """The dB values a waveform in [-1, 1] can give: the front end's floor, and a bound above (every
    bin of the widest band at the largest magnitude such a waveform has, the window's sum; a
    full-scale sinusoid reaches about 10 dB less)."""
    bank = mel_bank(sample_rate).to(torch.float64)
    window_sum = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64).sum()
    return 10 * math.log10(AMIN), float(10 * torch.log10(window_sum**2 * bank.sum(dim=0).max()))


def spectrogram_to_waveform(
    db: torch.Tensor, sample_rate: int = SAMPLE_RATE, iterations: int = 100, seed: int = 0
) -> torch.Tensor:
    """(..., 1, n_mels, frames) log-mel in dB (the stored units) -> (..., samples) waveform.

    Values no waveform can produce (synthetic sets drift there: below the floor, or hundreds of dB
    above full scale, beyond float32) are clamped to :func:`audible_range` first."""
    batch_shape = db.shape[:-3]
    low, high = audible_range(sample_rate)
    mel = db_to_power(db.reshape(-1, *db.shape[-2:]).to(torch.float32).clamp(low, high))
    magnitude = mel_to_linear(mel, sample_rate).sqrt()
    length = (db.shape[-1] - 1) * HOP_LENGTH  # centred frames: frames = 1 + samples // hop
    waveform = griffin_lim(magnitude, iterations, seed=seed, length=length)
    return waveform.reshape(*batch_shape, waveform.shape[-1])


def within_full_scale(wave: torch.Tensor) -> torch.Tensor:
    """A clip louder than full scale scaled down to fit (rather than clipped)."""
    return wave / max(1.0, float(wave.abs().max()) / 0.99)


def audible_modality(store: Store) -> str:
    """The store's one spectrogram modality, if it is the front end's log-mel: only that can be
    turned back into sound."""
    found = [m for m, spec in store.modalities.items() if spec.kind == SPECTROGRAM]
    if len(found) != 1:
        kinds = ", ".join(f"{m} ({spec.kind})" for m, spec in store.modalities.items())
        raise AvddError(f"{store.path}: {'no' if not found else 'more than one'} {SPECTROGRAM} modality to listen "
                        f"to (it has: {kinds})")
    shape = store.modalities[found[0]].shape
    if len(shape) != 3 or shape[:2] != (1, N_MELS):
        raise AvddError(f"{store.path}: {found[0]} of shape {list(shape)} is not a front-end log-mel spectrogram "
                        f"(1, {N_MELS}, frames); cannot invert it")
    return found[0]


def clip_name(class_index: int, class_name: str, sample: int) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", class_name).strip("_") or "class"
    return f"{class_index:03d}-{slug}-{sample}.wav"


def write_clips(store: Store, out: Path, *, max_per_class: int | None = None, iterations: int = 100,
                seed: int = 0) -> list[list[Path]]:
    """Every training spectrogram of ``store`` (a factorised set's tiles decoded into samples, as in
    the figures) as a 16-bit WAV at the front end's sample rate; per class, the files written.
    A clip louder than full scale is scaled down to fit rather than clipped."""
    check_settings("listen", {"iterations": iterations, "seed": seed})
    audio = audible_modality(store)
    samples = training_samples(store, [audio], max_per_class)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for c, (name, per_class) in enumerate(zip(samples.class_names, samples.samples, strict=True)):
        paths: list[Path] = []
        written.append(paths)
        if not len(per_class[audio]):
            continue
        waves = spectrogram_to_waveform(per_class[audio], iterations=iterations, seed=seed)
        for k, wave in enumerate(waves):
            path = out / clip_name(c, name, k)
            write_wav(path, within_full_scale(wave), SAMPLE_RATE)
            paths.append(path)
    return written
