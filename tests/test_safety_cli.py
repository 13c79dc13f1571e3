"""Issue 18, items 8, 9 and 12: every number is checked where it is given (CLI flag, config key or
library call), per-modality settings name only the run's modalities, and whatever still goes wrong
is one line, never a traceback. Each test also checks that nothing was written."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import avdd.cli.data
from avdd.cli import build_parser, main
from avdd.data.prepare import Clip, ClipList, prepare_clips
from avdd.data.sources.avdigits import build_avdigits
from avdd.data.sources.common import stratified_split
from avdd.device import resolve_device
from avdd.distill.api import distill
from avdd.distill.dm import MatchingConfig
from avdd.distill.experts import ExpertConfig
from avdd.distill.matching import MatchingWeights
from avdd.distill.mtt import MTTConfig
from avdd.distill.registry import METHODS
from avdd.errors import AvddError
from avdd.evaluate.retrieval import evaluate_retrieval
from avdd.ranges import RANGES, Number
from avdd.training.protocol import EvalConfig
from conftest import make_tiny_store


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return make_tiny_store(tmp_path / "store").path


@pytest.fixture
def unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Run in tmp_path and assert, afterwards, that no file there was created, changed or removed."""
    monkeypatch.chdir(tmp_path)
    before = files_under(tmp_path)
    yield
    assert files_under(tmp_path) == before


def usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """argparse's exit status 2; its last stderr line, the one that says what is wrong."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """avdd's exit status 1 with exactly one stderr line."""
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err.strip()


# -- item 8: numbers on the command line -----------------------------------------------------------
def numeric_options() -> list[tuple[tuple[str, ...], str, argparse.Action]]:
    """(verb path, flag, action) of every option of every verb that takes a number."""
    found = []

    def walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, (*path, name))
            elif action.option_strings and action.type not in (None, str, Path) and not action.choices:
                found.append((path, action.option_strings[0], action))

    walk(build_parser(), ())
    return found


NUMERIC = numeric_options()


def test_the_option_walk_finds_the_numbers_of_every_verb():
    verbs = {path[0] for path, _, _ in NUMERIC}
    assert verbs == {"data", "prepare", "distill", "evaluate", "retrieve", "experts", "listen", "report", "demo", "run"}
    assert ("distill", "--iterations") in {(p[0], f) for p, f, _ in NUMERIC}
    assert len(NUMERIC) > 60


@pytest.mark.parametrize(("path", "flag", "action"), NUMERIC, ids=[" ".join((*p, f)) for p, f, _ in NUMERIC])
def test_every_numeric_option_checks_its_range_when_parsed(path, flag, action, capsys, unchanged):
    assert action.type not in (int, float), "a bare int/float type accepts any number"
    value = "audio=-1" if flag == "--lr" and path == ("distill",) else "-1"  # -1 is outside every range
    line = usage_error([*path, flag, value], capsys)
    assert f"argument {flag}: must be " in line and line.endswith("got '-1'")


@pytest.mark.parametrize(("argv", "message"), [
    (["distill", "--iterations", "-1"], "argument --iterations: must be an integer ≥ 0, got '-1'"),
    (["distill", "--iterations", "2.5"], "argument --iterations: must be an integer ≥ 0, got '2.5'"),
    (["listen", "x", "--out", "y", "--iterations", "0"], "argument --iterations: must be an integer ≥ 1, got '0'"),
    (["distill", "--width", "0"], "argument --width: must be an integer ≥ 1, got '0'"),
    (["distill", "--batch-real", "0"], "argument --batch-real: must be an integer ≥ 1, got '0'"),
    (["distill", "--checkpoint-every", "0"], "argument --checkpoint-every: must be an integer ≥ 1, got '0'"),
    (["distill", "--lr", "frame=0"], "argument --lr: must be a number > 0, got '0'"),
    (["distill", "--lr", "frame"], "argument --lr: takes MODALITY=VALUE, e.g. frame=0.1; got 'frame'"),
    (["distill", "--momentum", "1"], "argument --momentum: must be a number in [0, 1), got '1'"),
    (["distill", "--momentum", "nan"], "argument --momentum: must be a number in [0, 1), got 'nan'"),
    (["distill", "--lambda-jm", "-0.5"], "argument --lambda-jm: must be a number ≥ 0, got '-0.5'"),
    (["distill", "--ipc", "1.5"], "argument --ipc: must be an integer ≥ 1, got '1.5'"),
    (["distill", "--eval-every", "-2"], "argument --eval-every: must be an integer ≥ 0, got '-2'"),
    (["retrieve", "--subsets", "0"], "argument --subsets: must be an integer ≥ 1, got '0'"),
    (["listen", "x", "--max-per-class", "0"], "argument --max-per-class: must be an integer ≥ 1, got '0'"),
    (["prepare", "csv", "--workers", "0"], "argument --workers: must be an integer ≥ 1, got '0'"),
    (["prepare", "csv", "--test-fraction", "1"], "argument --test-fraction: must be a number in (0, 1), got '1'"),
    (["experts", "--lr", "inf"], "argument --lr: must be a number > 0, got 'inf'"),
    (["evaluate", "--seed", "x"], "argument --seed: must be an integer ≥ 0, got 'x'"),
])
def test_a_bad_number_is_a_usage_error_naming_flag_and_range(argv, message, capsys, unchanged):
    assert usage_error(argv, capsys).endswith(message)


def test_boundary_values_are_accepted():
    args = build_parser().parse_args(["distill", "--data", "d", "--method", "dm", "--ipc", "1", "--out", "o",
                                      "--momentum", "0", "--lambda-jm", "0", "--eval-every", "0", "--seed", "0",
                                      "--lr", "audio=1e-3", "--lr", "frame=5"])
    assert (args.momentum, args.lambda_jm, args.eval_every, args.ipc) == (0.0, 0.0, 0, 1)
    assert args.lr == {"audio": 1e-3, "frame": 5.0}
    plain = ["distill", "--data", "d", "--method", "dm", "--ipc", "1", "--out", "o"]
    assert build_parser().parse_args(plain).lr is None


def test_a_bad_number_stops_distill_before_it_writes(store, tmp_path, capsys, unchanged):
    out = tmp_path / "out"
    line = usage_error(["distill", "--data", str(store), "--method", "dm", "--ipc", "1", "--iterations", "-1",
                        "--out", str(out)], capsys)
    assert line == "avdd distill: error: argument --iterations: must be an integer ≥ 0, got '-1'"
    assert not out.exists()


@pytest.mark.parametrize(("name", "message"), [
    ("mps", "device 'mps' requested but MPS is not available on this machine; use --device cpu"),
    ("meta", "unknown device 'meta' (use cpu, cuda, cuda:N, or mps where available)"),
    ("cuda:-1", "unknown device 'cuda:-1'"),
])
def test_a_device_avdd_cannot_use_is_one_line(name, message, store, tmp_path, capsys, unchanged):
    if name == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    out = tmp_path / "out"
    line = one_line_error(["distill", "--data", str(store), "--method", "random", "--ipc", "1", "--device", name,
                           "--out", str(out)], capsys)
    assert line.startswith(f"avdd: error: {message}")
    assert not out.exists()
    with pytest.raises(AvddError, match=message.split(" (")[0].replace("(", r"\(")):
        resolve_device(name)


# -- item 8: the same numbers through the library ------------------------------------------------
@pytest.mark.parametrize(("make", "message"), [
    (lambda: MatchingConfig(iterations=-1), r"invalid DM/AVDD settings: iterations=-1 \(must be an integer ≥ 0\)"),
    (lambda: MatchingConfig(batch_real=0), "batch_real=0"),
    (lambda: MatchingConfig(momentum=-0.1), "momentum=-0.1"),
    (lambda: MatchingConfig(lr={"audio": 0.0}), r"lr=\{'audio': 0.0\}"),
    (lambda: MatchingConfig(weights=MatchingWeights(1, -10, 0)), "lambda_jm=-10"),
    (lambda: MatchingConfig(encoder={"width": 0}), "width=0"),
    (lambda: MatchingConfig(checkpoint_every=True), "checkpoint_every=True"),
    (lambda: MTTConfig(iterations=-2), r"invalid MTT settings: iterations=-2 \(must be an integer ≥ 0\)"),
    (lambda: MTTConfig(lr_step_size=-1.0), "lr_step_size=-1.0"),
    (lambda: MTTConfig(momentum=1.5), r"momentum=1.5 \(must be a number in \[0, 1\)\)"),
    (lambda: EvalConfig(num_eval="one"), r"invalid evaluation settings: num_eval='one' \(must be an integer ≥ 1\)"),
    (lambda: EvalConfig(lr_gamma=0.0), "lr_gamma=0.0"),
    (lambda: EvalConfig.from_json({"betas": 5}), "betas=5"),
    (lambda: EvalConfig(lr_encoder=None), "lr_encoder=None"),  # None only where it is the default
    (lambda: ExpertConfig(lr=0.0), r"invalid expert settings: expert_lr=0.0 \(must be a number > 0\)"),
    (lambda: ExpertConfig(seed=-1, width="8"), r"width='8' \(must be an integer ≥ 1\); seed=-1"),
    (lambda: MatchingConfig(encoder={"width": 8, "grid": 0}), "grid=0"),
    (lambda: MatchingConfig(iterations=None), "iterations=None"),
])
def test_settings_dataclasses_refuse_bad_numbers(make, message):
    with pytest.raises(AvddError, match=message):
        make()


def test_the_defaults_are_within_their_ranges():
    for method in ("dm", "avdd", "avdd-plus"):
        METHODS.get(method).build({}, method).config()
    MTTConfig(step_size=None)
    ExpertConfig()
    MatchingConfig(encoder={"width": 8})
    EvalConfig()


@pytest.mark.parametrize(("options", "message"), [
    ({"seed": -1}, r"seed=-1 \(must be an integer ≥ 0\)"),
    ({"eval_every": -5}, "eval_every=-5"),
    ({"ipc": 0}, "ipc=0"),
    ({"embed_epochs": 0}, "embed_epochs=0"),  # a coreset setting no dataclass holds
])
def test_the_distill_api_refuses_bad_numbers_before_writing(options, message, store, tmp_path, unchanged):
    out = tmp_path / "out"
    with pytest.raises(AvddError, match=message):
        distill(store, out, "herding", **{"modalities": ["audio"], "ipc": 1, **options})
    assert not out.exists()


@pytest.mark.parametrize(("options", "message"), [
    ({"image_size": 4}, r"invalid prepare settings: image_size=4 \(must be an integer ≥ 8\)"),
    ({"workers": 0}, r"workers=0 \(must be an integer ≥ 1\)"),
])
def test_prepare_refuses_bad_numbers_before_writing(options, message, tmp_path, unchanged):
    clips = ClipList([Clip(Path("a.mp4"), "x", "train")], ["x"])
    out = tmp_path / "out"
    with pytest.raises(AvddError, match=message):
        prepare_clips(clips, out, name="t", progress=False, **options)
    assert not out.exists()


@pytest.mark.parametrize(("fraction", "seed", "message"), [
    (1.0, 0, r"invalid split settings: test_fraction=1.0 \(must be a number in \(0, 1\)\)"),
    (0.2, -1, r"split_seed=-1 \(must be an integer ≥ 0\)"),  # numpy's own error was a traceback
])
def test_a_split_refuses_bad_numbers(fraction, seed, message):
    with pytest.raises(AvddError, match=message):
        stratified_split(["a", "a", "b", "b"], fraction, seed)


def test_avdigits_refuses_a_negative_pairing_seed_before_writing(data_root, tmp_path, unchanged):
    out = tmp_path / "out"
    with pytest.raises(AvddError, match=r"invalid avdigits settings: pairing_seed=-1 \(must be an integer ≥ 0\)"):
        build_avdigits(out, pairing_seed=-1, data_root=str(data_root), progress=False)
    assert not out.exists()


@pytest.mark.parametrize("options", [{"subsets": 0}, {"subset": 0}])
def test_retrieval_refuses_zero_pools_instead_of_nan(options, store):
    name = next(iter(options))
    with pytest.raises(AvddError, match=f"invalid retrieval settings: {name}=0"):
        evaluate_retrieval(store, store, EvalConfig(num_eval=1, epochs=1), progress=False, **options)


def test_every_range_can_be_described():
    for name, spec in RANGES.items():
        assert spec.describe(), name
        if isinstance(spec, Number):
            assert not spec.accepts(-1) and not spec.accepts(float("nan")) and not spec.accepts(True), name


# -- item 12: settings keyed by modality ---------------------------------------------------------
def distill_argv(store: Path, out: Path, *extra: str) -> list[str]:
    return ["distill", "--data", str(store), "--method", "dm", "--ipc", "1", "--out", str(out), *extra]


@pytest.mark.parametrize(("extra", "message"), [
    (["--lr", "video=0.1"], "--lr names video, which this run does not have (its modalities: audio, frame)"),
    (["--modalities", "audio", "--lr", "frame=0.1"], "--lr names frame, which this run does not have "
                                                     "(its modalities: audio)"),
])
def test_a_learning_rate_for_a_modality_the_run_lacks_is_refused(extra, message, store, tmp_path, capsys, unchanged):
    out = tmp_path / "out"
    assert one_line_error(distill_argv(store, out, *extra), capsys) == f"avdd: error: {message}"
    assert not out.exists()


@pytest.mark.parametrize("lrs", [["frame=0.1", "frame=0.2"], ["audio=1", "frame=1", "audio=1"]])
def test_a_modality_given_twice_is_refused(lrs, store, tmp_path, capsys, unchanged):
    out = tmp_path / "out"
    argv = distill_argv(store, out, *[arg for lr in lrs for arg in ("--lr", lr)])
    assert "given twice" in usage_error(argv, capsys)
    assert not out.exists()


# -- item 9: one line, whatever happens ----------------------------------------------------------
@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text("dataset: d\ndatasets: {d: {data: x, schedule: s}}\nschedules: {s: {seeds: [0]}}\n"
                    "grid: {method: [random], ipc: [1]}\n")
    return path


def test_a_wrong_typed_config_value_from_the_cli_is_one_line(config, tmp_path, capsys, unchanged):
    out = tmp_path / "run"
    for override, message in (("grid=5", "grid must be a mapping, got 5"),
                              ("evaluate.num_eval=one", "evaluate.num_eval='one' (must be an integer ≥ 1)")):
        line = one_line_error(["run", str(config), "--set", override, "--out", str(out)], capsys)
        assert line == f"avdd: error: {config}: {message}"
    assert not out.exists()


@pytest.fixture
def failing_handler(monkeypatch: pytest.MonkeyPatch):
    """``avdd data list`` raising the exception given."""
    def install(error: BaseException) -> None:
        def handler(args: argparse.Namespace) -> int:
            raise error

        monkeypatch.setattr(avdd.cli.data, "cmd_list", handler)

    return install


@pytest.mark.parametrize("error", [RuntimeError("boom\n  second line"), KeyError("key"), ZeroDivisionError()])
def test_an_unexpected_error_is_one_line_with_the_debug_hint(error, failing_handler, monkeypatch, capsys):
    monkeypatch.delenv("AVDD_DEBUG", raising=False)
    failing_handler(error)
    line = one_line_error(["data", "list"], capsys)
    shown = {RuntimeError: "RuntimeError: boom second line", KeyError: "KeyError: 'key'",
             ZeroDivisionError: "ZeroDivisionError"}[type(error)]
    assert line == f"avdd: error: {shown} (run with AVDD_DEBUG=1 for the traceback)"


def test_avdd_debug_shows_the_traceback(failing_handler, monkeypatch):
    monkeypatch.setenv("AVDD_DEBUG", "1")
    failing_handler(RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        main(["data", "list"])


def test_a_closed_stdout_ends_quietly(failing_handler, capsys):
    failing_handler(BrokenPipeError())
    assert main(["data", "list"]) == 141
    assert capsys.readouterr().err == ""


def test_a_reader_that_leaves_early_gets_no_traceback(store):
    """``avdd data info X | head -1``: the pipe is closed before avdd writes."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "avdd", "data", "info", str(store)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # the reader is gone before avdd (still importing torch) prints
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert err == ""
