"""The real-mean cache: cached DM/AVDD runs equal uncached ones bit for bit, whatever warmed the cache."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import avdd.experiments.runner as runner
from avdd.data.store import Store, open_store
from avdd.distill import api
from avdd.distill.dm import MatchingConfig, MatchingRun
from avdd.distill.embedding import EmbeddingConfig
from avdd.distill.matching import MatchingWeights
from avdd.distill.real_cache import ENTRY, RealMeanCache
from avdd.distill.synthetic import init_order
from avdd.experiments.runner import run_experiment
from conftest import make_tiny_store
from test_distributed import AV, DISTILL, SETTINGS, assert_same_arrays, one_thread, torchrun
from test_runner import experiment

BASE = MatchingConfig(iterations=3, batch_real=5, weights=MatchingWeights(1, 10, 10), factor=2,
                      encoder={"width": 8, "grid": 2}, checkpoint_every=2)
BOUND = 1 << 30
KEY = "a" * 64


@pytest.fixture
def computed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, tuple[str, ...]]]:
    """(iteration, class, modalities) of every real side computed rather than read from the cache."""
    seen: list[tuple[int, int, tuple[str, ...]]] = []
    original = MatchingRun._class_real_means

    def counting(run: MatchingRun, position: int, modalities, encoders, draws):
        seen.append((run.iteration, run.classes[position], tuple(modalities)))
        return original(run, position, modalities, encoders, draws)

    monkeypatch.setattr(MatchingRun, "_class_real_means", counting)
    return seen


def distilled(store: Store, cache: Path | None, *, modalities: tuple[str, ...] = AV, ipc: int = 2,
              herding: bool = False, bound: int = BOUND, checkpoint: Path | None = None, resume: bool = False,
              **changes) -> MatchingRun:
    config = replace(BASE, init="herding" if herding else "random", **changes)
    order = init_order(store, modalities, ipc, config, EmbeddingConfig(epochs=1), torch.device("cpu"), False)
    run = MatchingRun(store.split("train"), modalities, ipc, seed=0, config=config, init_order=order,
                      real_cache=RealMeanCache(cache, bound) if cache else None)
    if resume:
        run.load_state(checkpoint)
    run.run(checkpoint, progress=False)
    return run


def assert_same_run(got: MatchingRun, want: MatchingRun) -> None:
    for m in want.synthetic:
        assert torch.equal(got.synthetic[m], want.synthetic[m]), m
    assert got.history == want.history


def entries(cache: Path) -> list[Path]:
    return sorted(p for p in cache.glob("*/*") if ENTRY.fullmatch(p.name))


def test_cold_and_warm_caches_give_the_uncached_run_bit_for_bit(tiny_store, tmp_path, computed):
    uncached = distilled(tiny_store, None)
    computed.clear()
    cold = distilled(tiny_store, tmp_path / "cache")
    assert len(computed) == 3 * 3  # 3 iterations × 3 classes, both modalities at once
    assert len(entries(tmp_path / "cache")) == 3 * 3 * 2  # one file per iteration, class and modality
    assert len(list((tmp_path / "cache").iterdir())) == 2  # one key per modality
    computed.clear()
    warm = distilled(tiny_store, tmp_path / "cache")
    assert computed == []
    assert_same_run(cold, uncached)
    assert_same_run(warm, uncached)


@pytest.mark.parametrize("warmer", [{"ipc": 1}, {"factor": 1}, {"herding": True},
                                    {"weights": MatchingWeights(1, 0, 0), "lr": {"audio": 1.0, "frame": 0.1}}],
                         ids=["ipc", "factor", "init", "dm-weights"])
def test_a_cache_warmed_by_other_synthetic_settings_serves_a_run_unchanged(tiny_store, tmp_path, computed, warmer):
    distilled(tiny_store, tmp_path / "cache", **warmer)
    computed.clear()
    warm = distilled(tiny_store, tmp_path / "cache")
    assert computed == []
    assert_same_run(warm, distilled(tiny_store, None))


def test_an_audio_visual_runs_cache_serves_an_audio_only_run(tiny_store, tmp_path, computed):
    distilled(tiny_store, tmp_path / "cache", weights=MatchingWeights(1, 0, 0))
    computed.clear()
    audio = distilled(tiny_store, tmp_path / "cache", modalities=("audio",), weights=MatchingWeights(1, 0, 0))
    assert computed == []
    assert_same_run(audio, distilled(tiny_store, None, modalities=("audio",), weights=MatchingWeights(1, 0, 0)))


def test_another_store_or_real_side_does_not_read_the_cache(tiny_store, tmp_path, computed):
    distilled(tiny_store, tmp_path / "cache")
    other = make_tiny_store(tmp_path / "other", seed=1)
    for store, changes in [(other, {}), (tiny_store, {"batch_real": 4}), (tiny_store, {"dsa_strategy": "scale"})]:
        computed.clear()
        distilled(store, tmp_path / "cache", **changes)
        assert len(computed) == 9, changes
    assert len(list((tmp_path / "cache").iterdir())) == 4 * 2


def test_the_least_recently_used_iterations_are_evicted_within_the_bound(tiny_store, tmp_path, computed):
    distilled(tiny_store, tmp_path / "probe", iterations=1)
    size = entries(tmp_path / "probe")[0].stat().st_size  # every entry of a run has the same size
    bound = 2 * 3 * 2 * size  # two iterations of 3 classes × 2 modalities
    run = distilled(tiny_store, tmp_path / "cache", bound=bound, iterations=5)
    kept = entries(tmp_path / "cache")
    assert sum(p.stat().st_size for p in kept) <= bound
    assert sorted({p.name.split("-i")[1] for p in kept}) == ["3.npz", "4.npz"]  # the last two iterations
    again = distilled(tiny_store, tmp_path / "cache", bound=bound, iterations=5)
    assert_same_run(again, run)


def test_a_read_marks_a_mean_used_also_for_the_next_process(tmp_path):
    mean = torch.arange(4.0)
    first = RealMeanCache(tmp_path, BOUND)
    for i in range(2):
        first.put(KEY, {}, 0, i, mean)
    size = first.total // 2
    reopened = RealMeanCache(tmp_path, 2 * size)  # what another process sees: use order from the files
    assert torch.equal(reopened.get(KEY, 0, 0), mean)  # iteration 0 is now the most recently used
    reopened.put(KEY, {}, 0, 2, mean)
    assert [p.name for p in entries(tmp_path)] == ["c0-i0.npz", "c0-i2.npz"]
    assert reopened.get(KEY, 0, 1) is None


def test_a_damaged_or_foreign_file_is_ignored_with_one_warning(tiny_store, tmp_path, computed):
    cache = tmp_path / "cache"
    distilled(tiny_store, cache)
    files = entries(cache)
    files[0].write_bytes(files[0].read_bytes()[:40])  # truncated
    files[1].write_bytes(files[-1].read_bytes())  # another class's/modality's mean: its key differs
    files[2].write_bytes(b"garbage")
    computed.clear()
    with pytest.warns(UserWarning, match="the real-mean cache ignores it") as warned:
        again = distilled(tiny_store, cache)
    assert len(warned) == 1, [str(w.message) for w in warned]
    assert len(computed) == 3  # (iteration, class) of the three bad files
    assert_same_run(again, distilled(tiny_store, None))


def test_resume_with_the_cache_equals_the_uninterrupted_run(tiny_store, tmp_path):
    checkpoint = tmp_path / "run.pt"
    distilled(tiny_store, tmp_path / "cache", checkpoint=checkpoint, iterations=2)
    resumed = distilled(tiny_store, tmp_path / "cache", checkpoint=checkpoint, resume=True)
    assert resumed.iteration == 3
    assert_same_run(resumed, distilled(tiny_store, None))


def test_distill_with_a_cache_writes_the_same_set_and_leaves_it_out_of_the_provenance(tiny_store, tmp_path):
    settings = {"iterations": 2, "batch_real": 5, "width": 8}
    plain = api.distill(tiny_store.path, tmp_path / "plain", "dm", modalities=AV, ipc=1, progress=False, **settings)
    cached = api.distill(tiny_store.path, tmp_path / "cached", "dm", modalities=AV, ipc=1, progress=False,
                         real_cache=str(tmp_path / "cache"), real_cache_mb=1, **settings)
    assert len(entries(tmp_path / "cache")) == 2 * 3 * 2
    for m in AV:
        assert np.array_equal(cached.split("train").arrays[m], plain.split("train").arrays[m])
    assert cached.provenance["settings"] == plain.provenance["settings"] == settings


def test_avdd_run_shares_one_cache_across_cells_and_keys_sets_without_it(tiny_store, tmp_path, computed):
    out = tmp_path / "run"
    grid = {"method": ["dm", "avdd"], "ipc": [1, 2], "fusion": ["ensemble"]}
    methods = {"avdd": {"embed_epochs": 1}}
    lines: list[str] = []
    run_experiment(experiment(tiny_store, grid=grid, methods=methods), out, progress=False, log=lines.append)
    assert len(computed) == 3  # 1 iteration × 3 classes, once for all 4 cells
    assert len(list((out / runner.REAL_CACHE).iterdir())) == 2
    sets = sorted(p.name for p in (out / "sets").iterdir())
    assert len(sets) == 4
    provenance = open_store(out / "sets" / sets[0]).provenance
    assert "real_cache" not in json.dumps(provenance)
    # a cache setting changes no set: every cell stays cached
    again = run_experiment(experiment(tiny_store, "distill.real_cache_mb=1", grid=grid, methods=methods), out,
                           progress=False, log=lines.append)
    assert all(o.cached for o in again)


def test_a_torchrun_job_writes_and_reads_the_cache_of_a_serial_run(tmp_path):
    source = make_tiny_store(tmp_path / "source", num_classes=3)
    cache = tmp_path / "cache"
    with one_thread():  # the processes of the job use one thread each: the same key
        serial = api.distill(source.path, tmp_path / "serial", "avdd", modalities=AV, ipc=2, seed=3,
                             progress=False, **SETTINGS)
    argv = ["distill", "--data", str(source.path), "--device", "cpu", *DISTILL, "--real-cache", str(cache)]
    cold = torchrun(*argv, "--out", str(tmp_path / "cold"))
    assert cold.returncode == 0, cold.stderr
    written = entries(cache)
    assert len(written) == 4 * 3 * 2
    warm = torchrun(*argv, "--out", str(tmp_path / "warm"))
    assert warm.returncode == 0, warm.stderr
    assert entries(cache) == written
    for out in ("cold", "warm"):
        assert_same_arrays(tmp_path / out, serial)
