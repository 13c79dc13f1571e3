"""Expert trajectories for trajectory matching (MTT): networks trained on the real train split,
their parameters saved after every epoch.

An expert directory holds::

    experts.json     format, the expert settings, the training protocol (architecture, DSA,
                     batches), the data the experts learnt from, the parameter layout, code version
    expert_000.pt    {"trajectory": (epochs + 1, P) float32 or float16, "losses": [...],
                      "test_accuracy": float or None}; row 0 is the initialisation

Experts are the evaluation protocol's networks (encoders + fusion head, DSA on every batch),
trained with constant-rate SGD rather than the protocol's Adam: the student that follows them
takes plain SGD steps, as in the MTT reference (``buffer.py``). Expert ``e`` draws everything from
generators keyed by (seed, e), so it does not depend on which experts ran before it; a finished
expert's file is written atomically and skipped on a rerun, so an interrupted run resumes by
running the same command again (with a larger ``--num-experts`` it adds experts).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from avdd.data.store import Split, Store, open_store
from avdd.device import resolve_device
from avdd.distill.api import refuse_factorised
from avdd.distill.checkpoint import config_differences, load_checkpoint, save_checkpoint
from avdd.errors import AvddError
from avdd.files import write_text_atomic
from avdd.formats import EXPERTS_FORMAT, EXPERTS_MANIFEST
from avdd.models.flat import Layout, flatten_parameters, parameter_layout
from avdd.ranges import check_fields
from avdd.training.inputs import load_training_set
from avdd.training.protocol import EvalConfig, accuracy_on, network_generators, protocol_network, train_network
from avdd.version import code_version

FORMAT_VERSION = 1


def expert_file(index: int) -> str:
    return f"expert_{index:03d}.pt"


@dataclass(frozen=True)
class ExpertConfig:
    """How experts are trained; the architecture and augmentation are the evaluation protocol's."""

    modalities: tuple[str, ...] = ("audio", "frame")
    num_experts: int = 10
    epochs: int = 20
    lr: float = 0.01  # constant SGD learning rate (the MTT reference's lr_teacher)
    batch_size: int = 32  # the protocol's (the MTT reference uses 256 on 50k CIFAR images; avdigits has 2700)
    fusion: str = "ensemble"
    width: int = 128  # encoder width (the protocol's); smaller experts are a cheaper, rougher proxy
    float16: bool = False  # save trajectories as float16: half the disk, ~3 significant digits
    seed: int = 0

    def __post_init__(self) -> None:
        check_fields("expert", self, ("num_experts", "epochs", "batch_size", "fusion", "width", "float16", "seed"),
                     expert_lr=self.lr)  # one SGD rate, where a distillation's lr is one per modality

    def protocol(self) -> EvalConfig:
        """The evaluation protocol with these batches and epochs; its step decay never fires
        (``lr_step`` = ``epochs``): a trajectory is followed with one learnable step size."""
        return replace(EvalConfig(), modalities=tuple(self.modalities), fusion=self.fusion, width=self.width,
                       epochs=self.epochs, batch_size=self.batch_size, lr_step=self.epochs, seed=self.seed)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "modalities": list(self.modalities)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExpertConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in data.items() if k in known}, "modalities": tuple(data["modalities"])})


def _manifest(store: Store, config: ExpertConfig, layout: Layout) -> dict[str, Any]:
    return {
        "format": EXPERTS_FORMAT,
        "format_version": FORMAT_VERSION,
        "config": config.to_json(),
        "protocol": config.protocol().to_json(),
        "data": {"name": store.name, "path": str(store.path.resolve()), "classes": store.class_names,
                 "shapes": {m: list(store.modalities[m].shape) for m in config.modalities}},
        "parameters": [[name, list(shape)] for name, shape in layout],
        "code_version": code_version(),
    }


def _comparable(manifest: dict[str, Any]) -> dict[str, Any]:
    # experts are independent of how many there are and of the code revision that trained them
    config = {k: v for k, v in manifest.get("config", {}).items() if k != "num_experts"}
    return {**{k: v for k, v in manifest.items() if k != "code_version"}, "config": config}


def _prepare_directory(out: Path, manifest: dict[str, Any]) -> None:
    """Create ``out`` with its manifest, or check that an existing one was made with these settings."""
    path = out / EXPERTS_MANIFEST
    if path.is_file():
        diffs = config_differences(_comparable(_read_manifest(path)), _comparable(manifest))
        if diffs:
            raise AvddError(f"{out}: holds experts trained differently ({'; '.join(diffs)}); "
                            "use another --out or the original settings")
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise AvddError(f"{out}: exists and is not an expert directory; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(manifest, indent=1) + "\n")


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise AvddError(f"{path}: unreadable ({err}); delete the directory and train the experts again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != EXPERTS_FORMAT:
        raise AvddError(f"{path}: not an avdd expert manifest")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise AvddError(f"{path}: expert format version {manifest['format_version']} is newer than this avdd "
                        f"supports ({FORMAT_VERSION}); upgrade avdd")
    return manifest


def train_expert(
    store: Store, inputs: dict[str, torch.Tensor], labels: torch.Tensor, config: ExpertConfig, index: int,
    device: torch.device, bar: tqdm, test: Split | None = None,
) -> dict[str, Any]:
    """Expert ``index``: its parameters at initialisation and after every epoch, losses, test accuracy."""
    protocol = config.protocol()
    generators = network_generators(config.seed, index, device)
    model = protocol_network(store, protocol, generators["init"], device)
    trajectory = [flatten_parameters(model)]
    losses: list[float] = []

    def on_epoch(loss: float) -> None:
        if not math.isfinite(loss):
            raise AvddError(f"expert {index}: training diverged (loss {loss}) in epoch {len(losses) + 1}; "
                            "lower --lr")
        losses.append(loss)
        trajectory.append(flatten_parameters(model))
        bar.set_postfix(expert=f"{index + 1}/{config.num_experts}", loss=f"{loss:.3f}")
        bar.update()

    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
    train_network(model, inputs, labels, protocol, generators, on_epoch, optimizer)
    accuracy = (accuracy_on(model, test, protocol.modalities, device, protocol.test_batch_size,
                            protocol.memory_format) if test is not None else None)
    dtype = torch.float16 if config.float16 else torch.float32
    return {"trajectory": torch.stack(trajectory).to(dtype).cpu(), "losses": losses, "test_accuracy": accuracy}


def train_experts(
    data: str | Path | Store,
    out: str | Path,
    config: ExpertConfig = ExpertConfig(),
    *,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> ExpertSet:
    """Train ``config.num_experts`` experts on ``data``'s train split into ``out``, skipping finished ones.

    Each expert's test accuracy (on ``data``'s test split, where it has one) is saved with it.
    ``device`` None: the best available.
    """
    store = data if isinstance(data, Store) else open_store(data)
    refuse_factorised(store)
    missing = [m for m in config.modalities if m not in store.modalities]
    if missing:
        raise AvddError(f"{store.path}: no modality {missing[0]!r} (has: {', '.join(store.modalities)})")
    device = resolve_device(device)
    out = Path(out)
    protocol = config.protocol()
    layout = parameter_layout(protocol_network(store, protocol, torch.Generator(), torch.device("cpu")))
    _prepare_directory(out, _manifest(store, config, layout))
    todo = [e for e in range(config.num_experts) if not (out / expert_file(e)).is_file()]
    if todo:
        inputs, labels = load_training_set(store, config.modalities, device, protocol.memory_format)
        test = store.split("test") if "test" in store.split_sizes else None
        with tqdm(total=len(todo) * config.epochs, disable=not progress, unit="epoch", desc="experts") as bar:
            for e in todo:
                save_checkpoint(out / expert_file(e), train_expert(store, inputs, labels, config, e, device, bar, test))
    return ExpertSet.open(out)


@dataclass
class ExpertSet:
    """A directory of expert trajectories, opened for reading (trajectories memory-mapped)."""

    path: Path
    config: ExpertConfig
    layout: Layout
    data: dict[str, Any]
    files: list[Path]  # the finished experts, in index order
    _cache: dict[int, dict[str, Any]] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, path: str | Path) -> ExpertSet:
        path = Path(path)
        if not path.is_dir():
            raise AvddError(f"{path}: no such directory (expected expert trajectories from `avdd experts`)")
        if not (path / EXPERTS_MANIFEST).is_file():
            raise AvddError(f"{path}: not an expert directory (no {EXPERTS_MANIFEST}); "
                            "train experts with `avdd experts`")
        manifest = _read_manifest(path / EXPERTS_MANIFEST)
        config = ExpertConfig.from_json(manifest["config"])
        files = [path / expert_file(e) for e in range(config.num_experts) if (path / expert_file(e)).is_file()]
        if not files:
            raise AvddError(f"{path}: no finished experts yet; run `avdd experts` (again) to train them")
        layout = [(name, tuple(shape)) for name, shape in manifest["parameters"]]
        return cls(path, config, layout, manifest["data"], files)

    @property
    def num_parameters(self) -> int:
        return sum(int(torch.Size(shape).numel()) for _, shape in self.layout)

    def check_data(self, store: Store, modalities: tuple[str, ...]) -> None:
        """The experts were trained on these modalities (same order) of data with these classes and shapes."""
        trained = tuple(self.config.modalities)
        if tuple(modalities) != trained:
            raise AvddError(f"{self.path}: the experts were trained on {','.join(trained)}; pass --modalities "
                            f"{','.join(trained)} or train experts for {','.join(modalities)}")
        if store.class_names != self.data["classes"]:
            raise AvddError(f"{self.path}: the experts were trained on other classes than {store.path}'s "
                            f"(their data: {self.data['path']})")
        for m in modalities:
            if list(store.modalities[m].shape) != self.data["shapes"][m]:
                raise AvddError(f"{self.path}: the experts' {m} inputs are {self.data['shapes'][m]}, "
                                f"{store.path}'s are {list(store.modalities[m].shape)}")

    def _load(self, index: int) -> dict[str, Any]:
        if index not in self._cache:
            path = self.files[index]
            saved = load_checkpoint(path, mmap=True, remedy="delete it and rerun `avdd experts`")
            trajectory = saved.get("trajectory")
            if not isinstance(trajectory, torch.Tensor):
                raise AvddError(f"{path}: not an expert (no trajectory); delete it and rerun `avdd experts`")
            expected = (self.config.epochs + 1, self.num_parameters)
            if tuple(trajectory.shape) != expected:
                raise AvddError(f"{path}: holds a {list(trajectory.shape)} trajectory, the manifest says "
                                f"{list(expected)}; delete it and rerun `avdd experts`")
            self._cache[index] = saved
        return self._cache[index]

    def trajectory(self, index: int) -> torch.Tensor:
        """(epochs + 1, P) parameters of finished expert ``index`` (memory-mapped: rows load on use)."""
        return self._load(index)["trajectory"]

    def test_accuracy(self, index: int) -> float | None:
        """Finished expert ``index``'s accuracy on its data's test split (None without one)."""
        return self._load(index)["test_accuracy"]
