"""Experiment configs: resolving a dataset and schedule, --set overrides, grid expansion, errors."""

import contextlib
from pathlib import Path

import pytest

from avdd.errors import AvddError
from avdd.experiments.config import OPEN, load_experiment, read_config, resolve, view_schema
from avdd.experiments.grid import WHOLE_DATA, expand

CONFIG_DIR = Path(__file__).parent.parent / "configs"
CONFIGS = [CONFIG_DIR / f"{name}.yaml" for name in ("recognition", "fusion", "ablation", "retrieval", "beyond")]


def doc(**changes):
    base = {
        "experiment": "t",
        "dataset": "small",
        "datasets": {"small": {"data": "d/small", "schedule": "quick"}, "big": {"data": "d/big", "schedule": "long"}},
        "schedules": {"quick": {"seeds": [0], "distill": {"iterations": 2}, "evaluate": {"num_eval": 1}},
                      "long": {"seeds": [0, 1, 2], "distill": {"iterations": 5000}, "evaluate": {"num_eval": 5}}},
        "grid": {"method": ["random", "dm"], "ipc": [1, 10], "modalities": ["audio", "audio+frame"]},
    }
    return {**base, **changes}


def test_the_dataset_picks_its_schedule_and_set_overrides_it():
    quick = resolve(doc())
    assert quick.view["data"] == "d/small" and quick.view["seeds"] == [0]
    big = resolve(doc(), ["dataset=big"])
    assert big.view["schedule"] == "long" and big.view["distill"] == {"iterations": 5000}
    mixed = resolve(doc(), ["dataset=big", "schedule=quick", "data=/x", "evaluate.epochs=3", "grid.ipc=[20]"])
    assert mixed.view["data"] == "/x" and mixed.view["seeds"] == [0]
    assert mixed.view["evaluate"] == {"num_eval": 1, "epochs": 3} and mixed.view["grid"]["ipc"] == [20]


def test_grid_expansion_is_the_product_minus_exclusions_plus_whole_data_per_seed():
    exp = resolve(doc(exclude=[{"method": "dm", "modalities": "audio"}], whole_data=["audio+frame"]),
                  ["seeds=[0,1]"])
    cells = expand(exp)
    described = [(c.labels["method"], c.labels["ipc"], c.labels["modalities"], c.seed) for c in cells]
    assert described == [
        ("random", 1, "audio", 0), ("random", 1, "audio", 1), ("random", 1, "audio+frame", 0),
        ("random", 1, "audio+frame", 1), ("random", 10, "audio", 0), ("random", 10, "audio", 1),
        ("random", 10, "audio+frame", 0), ("random", 10, "audio+frame", 1),
        ("dm", 1, "audio+frame", 0), ("dm", 1, "audio+frame", 1), ("dm", 10, "audio+frame", 0),
        ("dm", 10, "audio+frame", 1), (WHOLE_DATA, None, "audio+frame", 0), (WHOLE_DATA, None, "audio+frame", 1),
    ]
    assert cells[8].modalities == ("audio", "frame") and cells[8].fusion == "ensemble"
    assert cells[-1].whole and not cells[0].whole


def test_named_variants_set_several_settings_and_label_the_axis():
    grid = {"ipc": [1], "variant": {"base": {"method": "avdd", "lambda_jm": 0, "lambda_mgm": 0},
                                    "full": {"method": "avdd"}}}
    cells = expand(resolve(doc(grid=grid, table={"rows": ["variant"], "columns": ["ipc"]})))
    assert [c.labels for c in cells] == [{"ipc": 1, "variant": "base"}, {"ipc": 1, "variant": "full"}]
    assert cells[0].method_settings() == {"lambda_jm": 0, "lambda_mgm": 0} and cells[1].method_settings() == {}


@pytest.mark.parametrize(("overrides", "message"), [
    (["evaluate.num_evl=1"], "unknown key 'num_evl' in evaluate"),
    (["distill.iteratons=1"], "unknown key 'iteratons' in distill"),
    (["nonsense=1"], "unknown config key 'nonsense'"),
    (["epochs"], "--set takes KEY=VALUE"),
    (["dataset=nope"], "no dataset 'nope' in datasets; known: small, big"),
    (["schedule=nope"], "no schedule 'nope'"),
    (["seeds=[]"], "seeds must be a non-empty list"),
    (["evaluate.num_eval=0"], r"evaluate.num_eval=0 \(must be an integer ≥ 1\)"),
    (["grid.bogus=[1]"], "grid.bogus: a list axis must be a setting"),
    (["grid.ipc=[0]"], r"grid.ipc\[0\]=0 \(must be an integer ≥ 1\)"),
    (["grid.modalities=[audio+audio]"], "modalities must be distinct"),
    (["evaluation=speed"], "evaluation must be one of recognition, retrieval"),
    (["table.rows=[nope]"], "table.rows must list grid axes"),
    # issue 18: wrong types and numbers out of range, wherever they are set
    (["evaluate.num_eval=one"], r"evaluate.num_eval='one' \(must be an integer ≥ 1\)"),
    (["grid=5"], "grid must be a mapping, got 5"),
    (["distill=[1]"], r"distill must be a mapping, got \[1\]"),
    (["intermediate=5"], "intermediate must be a mapping"),
    (["data=5"], "data must be a string, got 5"),
    (["methods.dm=5"], "methods.dm must map settings to values"),
    (["seeds=[true]"], "seeds must be a non-empty list, each an integer ≥ 0"),
    (["grid.ipc=[true]"], r"grid.ipc\[0\]=True \(must be an integer ≥ 1\)"),
    (["grid.method=[random, 5]"], r"grid.method\[1\]=5 \(must be a string\)"),
    (["grid.variant={a: {lambda_jm: -1}}"], r"grid.variant.a.lambda_jm=-1 \(must be a number ≥ 0\)"),
    (["intermediate.every=-1"], r"intermediate.every=-1 \(must be an integer ≥ 0\)"),
    (["distill.momentum=1.5"], r"distill.momentum=1.5 \(must be a number in \[0, 1\)\)"),
    (["methods.dm.iterations=-1"], r"methods.dm.iterations=-1 \(must be an integer ≥ 0\)"),
    (["retrieval.subsets=0"], r"retrieval.subsets=0 \(must be an integer ≥ 1\)"),
    (["evaluate.betas=5"], r"evaluate.betas=5 \(must be 2 numbers, each in \[0, 1\)\)"),
    (["distill.lr=5"], r"distill.lr=5 \(must be a mapping of modality names to numbers > 0"),
    (["distill.iterations=2", "distill.batch_real=0"], r"distill.batch_real=0"),
    (["methods.mtt.experts={epochs: x}"], r"methods.mtt.experts.epochs='x' \(must be an integer ≥ 1\)"),
    (["methods.mtt.experts={num_experts: 2, lr: 0}"], r"methods.mtt.experts.lr=0 \(must be a number > 0\)"),
    (["methods.mtt.experts=runs/experts"], "methods.mtt.experts must map the experts step's settings to values"),
    (["intermediate={evry: 1}"], "unknown key 'evry' in intermediate"),  # a whole section: its keys checked too
    (["distill={iteratons: 5}"], "unknown key 'iteratons' in distill"),
    (["evaluate.protocol=[1]"], r"evaluate.protocol=\[1\] \(must be a string\)"),
    (["evaluate.lr_encoder=null"], r"lr_encoder=None \(must be a mapping"),
    (["distill.lr={frame: 0.1, frame: 0.2}"], r"not valid YAML \(the key 'frame' is given twice\)"),
    # issue 18, item 12: a per-modality setting for a modality no cell has
    (["distill.lr={video: 0.1}"], r"distill.lr names video, which no cell of this grid has \(its modalities: "
                                  r"audio, frame\)"),
    (["evaluate.lr_encoder={audio: 0.1, vision: 0.1}"], "evaluate.lr_encoder names vision"),
    (["grid.modalities=[audio]", "methods.dm.lr={frame: 1}"], "methods.dm.lr names frame"),
    (["grid.factor=[{audio: 0, frame: 2}]"], r"grid.factor\[0\]={'audio': 0, 'frame': 2} \(must be an integer ≥ 1, "
                                           r"or one per modality, e.g. \{audio: 4, frame: 2\}\)"),
    (["grid.factor=[{video: 2}]"], r"grid.factor\[0\] names video, which no cell of this grid has"),
])
def test_bad_settings_are_reported_clearly(overrides, message):
    with pytest.raises(AvddError, match=message):
        resolve(doc(), overrides)


def test_any_value_of_any_key_is_a_valid_experiment_or_an_avdd_error():
    """Every key of the resolved view (and some of the grid's and a method's), set to a value of
    every YAML type: never another exception (a traceback)."""
    keys = [path for head, sub in view_schema().items()
            for path in [head, *(f"{head}.{s}" for s in (sub if sub and sub is not OPEN else ()))]]
    keys += ["grid.method", "grid.ipc", "grid.modalities", "grid.fusion", "grid.variant", "methods.dm",
             "methods.dm.iterations", "methods.mtt.experts", "methods.mtt.experts.epochs"]
    values = ["5", "x", "[1]", "{a: 1}", "null", "true", "-1", "[true]", "{}", "[]", "1.5", "nan"]
    for key in keys:
        for value in values:
            with contextlib.suppress(AvddError):
                expand(resolve(doc(), [f"{key}={value}"]))


def test_a_factor_axis_takes_one_factor_or_one_per_modality():
    cells = expand(resolve(doc(grid={"method": ["dm"], "ipc": [1], "factor": [2, {"audio": 4, "frame": 2}]})))
    assert [c.method_settings()["factor"] for c in cells] == [2, {"audio": 4, "frame": 2}]
    assert [c.labels["factor"] for c in cells] == [2, "audio=4 frame=2"]  # labels are table keys: hashable
    kept = expand(resolve(doc(grid={"method": ["dm"], "ipc": [1], "factor": [2, {"audio": 4, "frame": 2}]},
                              exclude=[{"factor": {"audio": 4, "frame": 2}}])))
    assert [c.method_settings()["factor"] for c in kept] == [2]


def test_a_learning_rate_for_a_modality_some_cell_has_is_fine():
    exp = resolve(doc(), ["distill.lr={frame: 0.1}", "evaluate.lr_encoder={frame: 0.1}"])
    assert exp.view["distill"]["lr"] == {"frame": 0.1}


@pytest.mark.parametrize(("changes", "message"), [
    ({"schedules": {"quick": {"seeds": [0], "distill": [1]}}}, "schedules.quick.distill must be a mapping"),
    ({"schedules": {"quick": {"seeds": [0], "methods": {"dm": [1]}}}}, "schedules.quick.methods.dm must be a mapping"),
    ({"schedules": {"quick": {"seeds": [0], "evaluate": {"num_eval": "one"}}}}, "evaluate.num_eval='one'"),
    ({"exclude": {"method": "dm"}}, "exclude must be a list"),
    ({"whole_data": "audio"}, "whole_data must be a list"),
    ({"retrieval": 5}, "retrieval must be a mapping"),
])
def test_wrong_types_in_the_file_are_reported_clearly(changes, message):
    with pytest.raises(AvddError, match=message):
        resolve(doc(**changes))


@pytest.mark.parametrize(("text", "where"), [
    ("experiment: x\nexperiment: y\n", "line 2, column 1: the key 'experiment' is given twice"),
    ("schedules: {s: {distill: {lr: {frame: 0.1, frame: 0.2}}}}\n", "the key 'frame' is given twice"),
])
def test_a_key_given_twice_in_a_file_is_an_error_not_the_last_one_winning(text, where, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(AvddError, match=f"c.yaml: malformed YAML at {where}" if "line" in where else where):
        load_experiment(path)


def test_a_binary_file_as_config_is_one_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xff\xfe\x00grid")
    with pytest.raises(AvddError, match="c.yaml: not a text file"):
        load_experiment(path)


def test_a_merge_key_may_still_be_overridden(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("dataset: d\ndatasets: {d: {data: x, schedule: s}}\n"
                    "schedules: {base: &base {seeds: [0, 1]}, s: {<<: *base, seeds: [2]}}\n"
                    "grid: {method: [random], ipc: [1]}\n")
    assert load_experiment(path).view["seeds"] == [2]


@pytest.mark.parametrize("include", ["[1, 2]", "5", "{a: b}"])
def test_an_include_that_names_no_file_is_reported(include, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"include: {include}\nexperiment: x\n")
    with pytest.raises(AvddError, match="include names a config file or a list of them"):
        load_experiment(path)


def test_malformed_yaml_names_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: x\ngrid: [1, 2\n")
    with pytest.raises(AvddError, match=r"bad.yaml: malformed YAML at line \d+"):
        load_experiment(bad)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("experiment: x\ngird: {}\n")
    with pytest.raises(AvddError, match="unknown top-level key"):
        load_experiment(unknown)


def test_a_cell_without_a_method_is_an_error():
    with pytest.raises(AvddError, match="sets no method"):
        expand(resolve(doc(grid={"ipc": [1]}, table={"rows": ["ipc"], "columns": []})))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_resolves_for_every_dataset(path):
    datasets = read_config(path)["datasets"]
    assert "avdigits" in datasets
    for name in datasets:
        cells = expand(load_experiment(path, [f"dataset={name}"]))
        assert cells and all(c.whole or c.ipc >= 1 for c in cells)


def test_the_ablation_covers_init_factor_and_matching_terms():
    cells = expand(load_experiment(CONFIG_DIR / "ablation.yaml", ["grid.ipc=[1]"]))
    assert len(cells) == 2 * 2 * 5
    assert {(c.settings["init"], c.settings["factor"]) for c in cells} == {
        ("random", 1), ("random", 2), ("herding", 1), ("herding", 2)}
    without_base = [c for c in cells if c.labels["matching"] == "JM + MGM"]
    assert len(without_base) == 4 and all(c.method_settings()["lambda_base"] == 0 for c in without_base)


def test_includes_merge_underneath_the_including_file(tmp_path):
    (tmp_path / "base.yaml").write_text("schedules: {s: {seeds: [0], evaluate: {num_eval: 1, epochs: 2}}}\n")
    (tmp_path / "top.yaml").write_text(
        "include: base.yaml\ndataset: d\ndatasets: {d: {data: x, schedule: s}}\n"
        "schedules: {s: {evaluate: {epochs: 9}}}\ngrid: {method: [random], ipc: [1]}\n")
    exp = load_experiment(tmp_path / "top.yaml")
    assert exp.view["evaluate"] == {"num_eval": 1, "epochs": 9} and exp.view["seeds"] == [0]
