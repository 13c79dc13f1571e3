"""``avdd report``: figures, sounds and one HTML page for a distilled set or a whole experiment run.

For a run (a directory with ``results.json``), the page shows its tables and one section per
distilled set of the first seed (the other seeds are replicates); for a set, that set's section.
Output layout::

    report.html
    sets/NAME/MODALITY_grid.png    per-class grid of each modality's training samples
    sets/NAME/projection.png       real vs synthetic embeddings in 2-D (when the source store opens)
    sets/NAME/losses.png           loss terms per iteration (iterative methods)
    sets/NAME/accuracy.png         intermediate evaluations (distilled with evaluations on)
    sets/NAME/thumbs/*.png         one image per sample and modality, for the page
    sets/NAME/audio/*.wav          the sound of each spectrogram (avdd listen)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from avdd.data.store import SPECTROGRAM, Store, open_store
from avdd.distill.result import LOG_FILE
from avdd.errors import AvddError
from avdd.experiments.runner import RESULTS, read_results
from avdd.experiments.tables import build_table, format_label, format_value, to_html
from avdd.files import write_text_atomic
from avdd.report.embed import random_encoder_features
from avdd.report.figures import Points, accuracy_figure, class_grid, loss_figure, projection_figure, save_image
from avdd.report.html import Sample, Section, render_page
from avdd.report.projection import project
from avdd.report.samples import ClassSamples, training_samples, view
from avdd.report.sonify import write_clips
from avdd.training.factor import decoded_per_stored, describe_factor, factor_of, is_factorised

REPORT = "report.html"
Log = Callable[[str], None]


def describe(store: Store) -> str:
    p = store.provenance
    if "method" not in p:
        return f"{store.name} (not a distilled set)"
    modalities = "+".join(p.get("modalities", store.modalities))
    factor, tiles = factor_of(store), ""
    if is_factorised(factor):
        per_side = "" if isinstance(factor, int) else f": {describe_factor(factor)} per side"
        tiles = f", factorised ({decoded_per_stored(factor, store.modalities)} tiles per stored sample{per_side})"
    return f"{p['method']}, IPC {p.get('ipc')}, {modalities}, seed {p.get('seed')}{tiles}"


def short_name(store: Store) -> str:
    p = store.provenance
    return f"{p['method']} IPC {p.get('ipc')}" if "method" in p else store.name


def source_of(store: Store) -> Store:
    """The real store a set was distilled from (recorded in its provenance)."""
    path = store.provenance.get("source_dataset", {}).get("path")
    if not path:
        raise AvddError(f"{store.path}: its provenance names no source dataset")
    return open_store(path)


def stacked(samples: ClassSamples, modality: str) -> tuple[torch.Tensor, torch.Tensor]:
    """All classes' samples of one modality in one tensor, and their labels."""
    x = torch.cat([per_class[modality] for per_class in samples.samples])
    labels = torch.cat([torch.full((len(per_class[modality]),), c) for c, per_class in enumerate(samples.samples)])
    return x, labels


class RealEmbeddings:
    """Embeddings of a seeded subset of a real store's training samples, computed once per store and
    modality (every set of a run is drawn against the same real points)."""

    def __init__(self, per_class: int = 50, device: str | torch.device = "cpu") -> None:
        self.per_class, self.device = per_class, device
        self._cache: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}

    def get(self, real: Store, modality: str) -> tuple[torch.Tensor, torch.Tensor]:
        key = (str(real.path.resolve()), modality)
        if key not in self._cache:
            x, labels = stacked(training_samples(real, [modality], self.per_class, shuffle_seed=0), modality)
            features = random_encoder_features(real.modalities[modality], modality, x, device=self.device)
            self._cache[key] = features, labels
        return self._cache[key]


def projection_points(store: Store, samples: ClassSamples, method: str,
                      reals: RealEmbeddings) -> dict[str, Points]:
    """Per modality, 2-D coordinates and labels of real training samples and the set's samples."""
    real = source_of(store)
    points = {}
    for m, spec in store.modalities.items():
        real_features, real_labels = reals.get(real, m)
        x, labels = stacked(samples, m)
        real_xy, syn_xy = project(real_features, random_encoder_features(spec, m, x, device=reals.device),
                                  method=method)
        points[m] = (real_xy, real_labels, syn_xy, labels)
    return points


def thumbnails(store: Store, samples: ClassSamples, folder: Path, rel: str,
               sounds: Sequence[Sequence[Path]]) -> list[tuple[str, list[Sample]]]:
    """One small image per sample and modality (colour scales as in the grids), with its sound."""
    folder.mkdir(parents=True, exist_ok=True)
    classes = []
    for c, (name, per_class) in enumerate(zip(samples.class_names, samples.samples, strict=True)):
        row = []
        for k in range(len(next(iter(per_class.values())))):
            images = []
            for m, x in per_class.items():
                spec = store.modalities[m]
                pixels, style = view(spec, x[k])
                file = f"{c:03d}-{k}-{m}.png"
                save_image(pixels, style, folder / file)
                images.append((m, spec.kind, f"{rel}/thumbs/{file}"))
            sound = f"{rel}/audio/{sounds[c][k].name}" if c < len(sounds) and k < len(sounds[c]) else None
            row.append(Sample(images, sound))
        classes.append((name, row))
    return classes


def set_section(store: Store, out: Path, name: str, reals: RealEmbeddings, *, projection: str = "pca",
                max_per_class: int = 8, summary: Sequence[str] = ()) -> Section:
    """Figures, thumbnails and sounds of one set under ``out/sets/name``; its section of the page."""
    folder, rel = out / "sets" / name, f"sets/{name}"
    samples = training_samples(store, max_per_class=max_per_class)
    figures, notes = [], []
    for m in store.modalities:
        class_grid(samples, store, m, folder / f"{m}_grid.png", f"{m}: {short_name(store)}")
        figures.append((f"{m}: training samples per class (denormalised)", f"{rel}/{m}_grid.png"))
    try:
        points = projection_points(store, samples, projection, reals)
        projection_figure(points, store.class_names, folder / "projection.png",
                          f"{projection.upper()} of random-ConvNet embeddings: real vs synthetic")
        caption = f"{projection.upper()}: real (dots) vs synthetic (stars) per modality"
        figures.append((caption, f"{rel}/projection.png"))
    except AvddError as err:
        notes.append(f"no projection: {err}")
    log = json.loads((store.path / LOG_FILE).read_text()) if (store.path / LOG_FILE).is_file() else {}
    if loss_figure(log, folder / "losses.png", f"loss per term: {short_name(store)}"):
        figures.append(("loss per term and iteration", f"{rel}/losses.png"))
    if accuracy_figure(log, folder / "accuracy.png", f"accuracy while distilling: {short_name(store)}"):
        figures.append(("test accuracy of the set while it was distilled", f"{rel}/accuracy.png"))
    elif log.get("losses"):
        notes.append("no accuracy-vs-iteration figure: distilled without intermediate evaluations "
                     "(avdd distill --eval-every K, or intermediate.every in a config)")
    sounds: list[list[Path]] = []
    if any(spec.kind == SPECTROGRAM for spec in store.modalities.values()):
        try:
            sounds = write_clips(store, folder / "audio", max_per_class=max_per_class)
        except AvddError as err:
            notes.append(f"no sound: {err}")
    classes = thumbnails(store, samples, folder / "thumbs", rel, sounds)
    return Section(name, name, [describe(store), *summary], figures, classes, notes)


def run_sets(cells: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """The sets of the first seed, each with the cells evaluated on it, in grid order."""
    done = [c for c in cells if c["status"] == "done" and c.get("set")]
    first = min((c["seed"] for c in done), default=0)
    sets: dict[str, list[Mapping[str, Any]]] = {}
    for c in done:
        if c["seed"] == first:
            sets.setdefault(c["set"], []).append(c)
    return sets


def cell_line(cell: Mapping[str, Any]) -> str:
    labels = ", ".join(format_label(a, v) for a, v in cell["labels"].items() if v is not None)
    metrics = "; ".join(f"{m} {format_value(m, v['mean'], v['std'])}" for m, v in cell["metrics"].items())
    return f"evaluated as {labels}: {metrics}"


def build_report(path: str | Path, out: str | Path, *, projection: str = "pca", max_per_class: int = 8,
                 device: str | torch.device = "cpu", log: Log = print) -> Path:
    """Write ``out/report.html`` (and its files) for a run directory or a distilled set."""
    path, out = Path(path), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    reals = RealEmbeddings(device=device)
    if (path / RESULTS).is_file():
        results = read_results(path)
        experiment = results["experiment"]
        layout = experiment["table"]
        table = build_table(results["cells"], layout["rows"], layout["columns"], results["title"])
        failed = sum(c["status"] != "done" for c in results["cells"])
        grid = " × ".join(f"{axis} {list(values)}" for axis, values in experiment["grid"].items())
        intro = [experiment.get("description") or "", f"this run's grid: {grid}", f"run directory: {path.resolve()}",
                 f"{len(results['cells'])} cells, {failed} failed (see results.json)"]
        sections = []
        for set_path, cells in run_sets(results["cells"]).items():
            log(f"report: {set_path}")
            sections.append(set_section(open_store(path / set_path), out, Path(set_path).name, reals,
                                        projection=projection, max_per_class=max_per_class,
                                        summary=[cell_line(c) for c in cells]))
        page = render_page(f"avdd report: {results['title']}", [line for line in intro if line], [to_html(table)],
                           sections)
    else:
        store = open_store(path)
        log(f"report: {path}")
        section = set_section(store, out, path.name, reals, projection=projection, max_per_class=max_per_class)
        page = render_page(f"avdd report: {path.name}", [f"set: {path.resolve()}"], [], [section])
    write_text_atomic(out / REPORT, page)
    return out / REPORT
