"""The benchmarks of the GPU suite (benchmarks/device.sh) run end to end at their smallest sizes,
and the suite only passes flags they take, so that a GPU machine lent for a few minutes finds them
working (mypy checks every benchmark's calls into avdd; see pyproject.toml)."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def run_benchmark(name: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(BENCHMARKS / name), *args], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_gpu_suite_passes_each_benchmark_only_flags_it_takes():
    calls = [shlex.split(line)[2:] for line in (BENCHMARKS / "device.sh").read_text().splitlines()
             if line.startswith("bench ")]
    assert {call[0] for call in calls} == {"distill_speed.py", "real_cache_speed.py", "bench_parallel_eval.py",
                                           "encoder_speed.py"}
    for script, *args in calls:
        taken = set(re.findall(r"add_argument\(\"(--[a-z-]+)\"", (BENCHMARKS / script).read_text()))
        assert {a for a in args if a.startswith("--")} <= taken, script


def test_parallel_eval_benchmark_times_both_ways_and_finds_them_equal():
    out = run_benchmark("bench_parallel_eval.py", "--samples", "10", "--networks", "2", "--threads", "1")
    row = re.search(r"samples +10 threads 1: one by one +([\d.]+) s, together +([\d.]+) s .*?"
                    r"largest parameter difference ([\d.e+-]+), ([\d.e+-]+) without", out)
    assert row is not None, out
    assert float(row.group(1)) > 0 and float(row.group(2)) > 0
    assert float(row.group(4)) < 1e-2  # the same networks, up to float rounding


def test_distill_speed_benchmark_times_both_loops():
    out = run_benchmark("distill_speed.py", "--real-batch", "2", "--iterations", "1")
    rows = dict(re.findall(r"^  (per-class|ours) +([\d.]+) s/it", out, re.M))
    assert set(rows) == {"per-class", "ours"}, out
    assert all(float(seconds) > 0 for seconds in rows.values())


def test_real_cache_benchmark_reads_what_the_cold_run_wrote():
    out = run_benchmark("real_cache_speed.py", "--real-batch", "2", "--iterations", "1", "--repeats", "1")
    rows = {name: (float(real), float(rest)) for name, real, rest in
            re.findall(r"^  (cold|uncached|warm) +[\d.]+ +([\d.]+) +([\d.]+)", out, re.M)}
    assert set(rows) == {"cold", "uncached", "warm"}, out
    assert rows["warm"][0] < rows["uncached"][0]  # reading 20 means beats computing them


def test_encoder_speed_benchmark_times_four_settings():
    out = run_benchmark("encoder_speed.py", "--batch", "2", "--steps", "1")
    assert len(re.findall(r"channels_last=\w+ +bf16=\w+ +[\d.]+ ms/step", out)) == 4, out
