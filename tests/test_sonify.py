"""Griffin-Lim round trip: a real recording's log-mel spectrogram -> waveform -> log-mel again."""

import torch

from avdd.data.audio import (
    SAMPLE_RATE,
    clip_to_spectrogram,
    log_mel_spectrogram,
    mel_bank,
    read_wav,
    write_wav,
)
from avdd.report.sonify import audible_range, db_to_power, mel_to_linear, spectrogram_to_waveform


def recordings(data_root, n=3):
    return sorted((data_root / "fsdd" / "recordings").glob("*.wav"))[::751][:n]


def test_inverse_mel_reproduces_the_mel_power(data_root):
    # non-negative least squares on the front end's own filterbank: the mel power of the fitted
    # linear spectrogram equals the given one to 1 % (measured ≤ 0.3 % on FSDD recordings, 50 iterations)
    waveform, rate = read_wav(recordings(data_root)[0])
    mel = db_to_power(clip_to_spectrogram(waveform, rate)[0])
    linear = mel_to_linear(mel[None])
    assert (linear >= 0).all()
    again = (linear.transpose(1, 2) @ mel_bank()).transpose(1, 2)[0]
    assert float((again - mel).norm() / mel.norm()) < 0.01


def test_griffin_lim_round_trip_keeps_the_mel_energy(data_root):
    # bound: relative Frobenius error of the mel power below 10 % and total mel energy within 2 %
    # (measured on 10 FSDD recordings with 100 iterations: 0.6–4.5 % and within 0.4 %)
    for path in recordings(data_root):
        waveform, rate = read_wav(path)
        db = clip_to_spectrogram(waveform, rate)
        rebuilt = spectrogram_to_waveform(db)
        assert rebuilt.shape == (SAMPLE_RATE,) and torch.isfinite(rebuilt).all()
        power, again = db_to_power(db), db_to_power(log_mel_spectrogram(rebuilt))
        assert float((again - power).norm() / power.norm()) < 0.10, path.name
        assert abs(float(again.sum() / power.sum()) - 1) < 0.02, path.name


def test_batched_inversion_matches_one_by_one(data_root):
    dbs = torch.stack([clip_to_spectrogram(*read_wav(p)) for p in recordings(data_root, 2)])
    batched = spectrogram_to_waveform(dbs, iterations=5)
    assert batched.shape == (2, SAMPLE_RATE)
    torch.testing.assert_close(batched[1], spectrogram_to_waveform(dbs[1], iterations=5), atol=1e-4, rtol=1e-4)


def test_values_no_waveform_can_have_are_clamped(data_root):
    # distilled spectrograms drift far outside the data (hundreds of dB: past float32 as power)
    db = clip_to_spectrogram(*read_wav(recordings(data_root)[0]))
    db[..., :10], db[..., 10:20] = 400.0, -300.0
    low, high = audible_range()
    assert low == -100.0 and 40.0 < high < 60.0
    waveform = spectrogram_to_waveform(db, iterations=10)
    assert torch.isfinite(waveform).all() and waveform.abs().max() > 0


def test_written_wav_reads_back(tmp_path):
    t = torch.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = 0.5 * torch.sin(2 * torch.pi * 440 * t)
    write_wav(tmp_path / "tone.wav", tone, SAMPLE_RATE)
    back, rate = read_wav(tmp_path / "tone.wav")
    assert rate == SAMPLE_RATE and back.shape == (1, SAMPLE_RATE)
    torch.testing.assert_close(back[0], tone, atol=1 / 32767, rtol=0)
