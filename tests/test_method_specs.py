"""Method specs: a method's settings dataclass is the one declaration its CLI flags, its config keys,
its checks and its provenance come from."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from avdd.cli import main
from avdd.data.store import open_store
from avdd.distill.coreset import SelectionSettings
from avdd.distill.dm import AVDDSettings, DMSettings
from avdd.distill.registry import METHODS, MethodSpec, RunContext
from avdd.distill.result import SyntheticSet
from avdd.distill.spec import build, setting, settings_of
from avdd.errors import AvddError
from avdd.experiments.config import resolve, view_schema
from avdd.ranges import COUNT, parse_modalities


@dataclass(frozen=True)
class Toy:
    """A throwaway method's settings before the new one is added."""

    iterations: int = field(default=2, metadata=setting("toy iterations"))


@dataclass(frozen=True)
class ToyWithGamma(Toy):
    """The same, plus one field: the only edit adding a setting takes."""

    gamma: int = field(default=3, metadata=setting("the toy's new knob (100% new)", COUNT))


@pytest.fixture
def toy(monkeypatch):
    """Registers the method 'toy' (with the new setting); records the settings each run receives."""
    received: list[ToyWithGamma] = []

    def run(context: RunContext, settings: ToyWithGamma) -> SyntheticSet:
        received.append(settings)
        random = METHODS.get("random")
        return random.run(context, random.build({}, "random"))

    monkeypatch.setitem(METHODS._entries, "toy", MethodSpec(ToyWithGamma, run, "a throwaway method"))
    return received


def test_a_new_field_is_a_cli_flag_with_its_help_range_and_default(toy, capsys):
    with pytest.raises(SystemExit):
        main(["distill", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "--gamma GAMMA [toy] the toy's new knob (100% new); an integer ≥ 1; default 3" in help_text
    with pytest.raises(SystemExit):
        main(["distill", "--data", "x", "--method", "toy", "--ipc", "1", "--out", "y", "--gamma", "0"])
    assert "argument --gamma: must be an integer ≥ 1, got '0'" in capsys.readouterr().err


def test_a_new_field_reaches_the_method_and_the_provenance(toy, tiny_store, tmp_path, capsys):
    out = tmp_path / "toy"
    assert main(["distill", "--data", str(tiny_store.path), "--method", "toy", "--ipc", "1", "--modalities", "audio",
                 "--gamma", "7", "--out", str(out), "-q"]) == 0
    assert toy == [ToyWithGamma(iterations=2, gamma=7)]
    assert open_store(out).provenance["settings"] == {"gamma": 7}
    # another method does not take it: an error naming the flag
    assert main(["distill", "--data", str(tiny_store.path), "--method", "random", "--ipc", "1", "--gamma", "7",
                 "--out", str(tmp_path / "r"), "-q"]) == 1
    assert "method 'random' does not take --gamma" in capsys.readouterr().err


def config(**schedule):
    return {"experiment": "t", "dataset": "d", "datasets": {"d": {"data": "x", "schedule": "s"}},
            "schedules": {"s": schedule}, "grid": {"method": ["toy"], "ipc": [1]}}


def test_a_new_field_is_a_config_key_checked_against_its_range(toy):
    assert "gamma" in view_schema()["distill"]
    assert resolve(config(distill={"gamma": 5})).view["distill"] == {"gamma": 5}
    with pytest.raises(AvddError, match=r"distill.gamma=0 \(must be an integer ≥ 1\)"):
        resolve(config(distill={"gamma": 0}))
    with pytest.raises(AvddError, match=r"grid.gamma\[0\]=0 \(must be an integer ≥ 1\)"):
        resolve({**config(), "grid": {"method": ["toy"], "ipc": [1], "gamma": [0]}})


def test_without_the_new_field_none_of_it_exists(monkeypatch, capsys):
    monkeypatch.setitem(METHODS._entries, "toy", MethodSpec(Toy, lambda context, settings: None, "a throwaway"))
    assert "gamma" not in view_schema()["distill"]
    with pytest.raises(SystemExit):
        main(["distill", "--help"])
    assert "--gamma" not in capsys.readouterr().out


def test_nested_settings_are_prefixed_and_built_as_their_dataclass():
    assert [s.name for s in settings_of(SelectionSettings)] == ["embed_source", "embed_epochs"]
    built = build(SelectionSettings, {"embed_epochs": 2}, "herding")
    assert (built.embed.source, built.embed.epochs) == ("trained", 2)
    with pytest.raises(AvddError, match=r"embed_epochs=0 \(must be an integer ≥ 1\)"):
        build(SelectionSettings, {"embed_epochs": 0}, "herding")


def test_per_modality_values_add_to_the_default_mapping():
    assert build(DMSettings, {"lr": {"audio": 0.5}}, "dm").lr == {"audio": 0.5, "frame": 0.2}


def test_avdd_is_dm_with_other_defaults():
    assert [s.name for s in settings_of(AVDDSettings)] == [s.name for s in settings_of(DMSettings)]
    avdd, dm = AVDDSettings().config(), DMSettings().config()
    assert (avdd.weights.joint, avdd.weights.gap, avdd.factor, avdd.init) == (10.0, 10.0, 2, "herding")
    assert (dm.weights.joint, dm.weights.gap, dm.factor, dm.init) == (0.0, 0.0, 1, "random")


def test_a_numeric_setting_without_a_range_is_refused_at_declaration():
    @dataclass(frozen=True)
    class Unranged:
        novel_number: int = field(default=1, metadata=setting("no range declared anywhere"))

    with pytest.raises(TypeError, match="novel_number"):
        settings_of(Unranged)


@pytest.mark.parametrize("typed", ["audio,frame", "audio+frame", " audio , frame ", ["audio", "frame"]])
def test_one_modality_syntax_for_the_cli_and_configs(typed):
    assert parse_modalities(typed) == ("audio", "frame")


@pytest.mark.parametrize("typed", ["", "audio,audio", ",+"])
def test_no_or_repeated_modalities_are_refused(typed):
    with pytest.raises(AvddError, match="modalities must be distinct names"):
        parse_modalities(typed)
