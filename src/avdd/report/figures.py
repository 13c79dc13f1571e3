"""Figures (PNG): per-class grids of a set's samples, real vs synthetic embeddings in 2-D, loss
curves per term and accuracy vs iteration from ``distill_log.json``.

Drawn with matplotlib's object API on Agg canvases (no pyplot state, no display needed). Sizes are
fixed by the content (no tight bounding box), so a figure's pixel size is known in advance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.image
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from avdd.data.store import Store
from avdd.files import write_atomic
from avdd.report.samples import ClassSamples, view

DPI = 100
CELL = 1.0  # inches per sample in a grid
LABEL, TITLE = 0.9, 0.5  # inches: the class-name column and the title row of a grid
LEGEND_MAX = 12  # classes named in a projection's legend


def class_colours(labels: torch.Tensor, classes: int) -> np.ndarray:
    """Distinct colours per class (tab10/tab20), a continuous map beyond 20 classes."""
    if classes <= 20:
        cmap = matplotlib.colormaps["tab10" if classes <= 10 else "tab20"]
        return cmap(labels.numpy() % cmap.N)
    return matplotlib.colormaps["turbo"](labels.numpy() / (classes - 1))


def save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    write_atomic(path, lambda f: fig.savefig(f, dpi=DPI, format="png"))
    return path


def save_image(pixels: np.ndarray, style: Mapping[str, Any], path: Path) -> Path:
    """One picture as a PNG of its own pixels (no axes), in the colours ``style`` gives ``imshow``."""
    options = {a: v for a, v in style.items() if a != "aspect"}  # imsave draws pixels 1:1
    write_atomic(path, lambda f: matplotlib.image.imsave(f, pixels, format="png", **options))
    return path


def grid_inches(classes: int, columns: int) -> tuple[float, float]:
    return LABEL + CELL * max(columns, 1), TITLE + CELL * classes


def class_grid(samples: ClassSamples, store: Store, modality: str, path: Path, title: str) -> Path:
    """One row per class, one column per sample of ``modality``, denormalised to the store's units."""
    return save(class_grid_figure(samples, store, modality, title), path)


def class_grid_figure(samples: ClassSamples, store: Store, modality: str, title: str) -> Figure:
    """The figure of :func:`class_grid` (drawn into pixels by avdd/tracking.py)."""
    spec = store.modalities[modality]
    columns = max(len(s[modality]) for s in samples.samples)
    width, height = grid_inches(len(samples.class_names), columns)
    fig = Figure(figsize=(width, height), dpi=DPI)
    fig.subplots_adjust(left=LABEL / width, right=1 - 0.05 / width, bottom=0.05 / height, top=1 - TITLE / height,
                        wspace=0.08, hspace=0.08)
    axes = fig.subplots(len(samples.class_names), max(columns, 1), squeeze=False)
    for c, (name, per_class) in enumerate(zip(samples.class_names, samples.samples, strict=True)):
        axes[c, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
        for k, ax in enumerate(axes[c]):
            ax.set_xticks([])
            ax.set_yticks([])
            if k < len(per_class[modality]):
                pixels, style = view(spec, per_class[modality][k])
                ax.imshow(pixels, interpolation="nearest", **style)
            else:
                ax.set_axis_off()
    fig.suptitle(title, fontsize=10, wrap=True)
    return fig


Points = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # real xy, labels, synthetic xy, labels


def projection_figure(points: Mapping[str, Points],
                      class_names: Sequence[str], path: Path, title: str) -> Path:
    """Per modality: real samples (small dots) and synthetic ones (large outlined stars), coloured by
    class. ``points[m]`` = (real xy, real labels, synthetic xy, synthetic labels)."""
    fig = Figure(figsize=(5.0 * len(points), 5.4), dpi=DPI)
    axes = fig.subplots(1, len(points), squeeze=False)[0]
    n = len(class_names)
    for ax, (modality, (real, real_labels, syn, syn_labels)) in zip(axes, points.items(), strict=True):
        ax.scatter(real[:, 0], real[:, 1], c=class_colours(real_labels, n), s=14, alpha=0.45, linewidths=0)
        ax.scatter(syn[:, 0], syn[:, 1], c=class_colours(syn_labels, n), s=150, marker="*", edgecolors="black",
                   linewidths=0.8)
        ax.set_title(f"{modality}: {len(real)} real (dots), {len(syn)} synthetic (stars)", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    if n <= LEGEND_MAX:
        colours = class_colours(torch.arange(n), n)
        handles = [Line2D([], [], marker="o", linestyle="", color=colours[c], label=name)
                   for c, name in enumerate(class_names)]
        axes[-1].legend(handles=handles, fontsize=8, loc="upper right", framealpha=0.8)
    fig.suptitle(title, fontsize=11)
    fig.subplots_adjust(left=0.03, right=0.97, bottom=0.03, top=0.86, wspace=0.08)
    return save(fig, path)


def loss_figure(log: Mapping[str, Any], path: Path, title: str) -> Path | None:
    """Every logged loss term against the iteration (log scale); None when nothing was logged."""
    losses = log.get("losses") or []
    terms = [k for k in (losses[0] if losses else {}) if k != "iteration"]
    if not terms:
        return None
    fig = Figure(figsize=(7.0, 4.0), dpi=DPI)
    ax = fig.subplots()
    iterations = [row["iteration"] for row in losses]
    for term in terms:
        ax.plot(iterations, [row[term] for row in losses], label=term, linewidth=1.2)
    if all(row[t] > 0 for row in losses for t in terms):
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (sum over classes)")
    ax.legend(fontsize=9)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=11)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.13, top=0.9)
    return save(fig, path)


def accuracy_figure(log: Mapping[str, Any], path: Path, title: str) -> Path | None:
    """Intermediate evaluations: accuracy mean ± std against the iteration; None without any."""
    evaluations = log.get("evaluations") or []
    if not evaluations:
        return None
    fig = Figure(figsize=(6.0, 4.0), dpi=DPI)
    ax = fig.subplots()
    x = [e["iteration"] for e in evaluations]
    ax.errorbar(x, [100 * e["mean"] for e in evaluations], yerr=[100 * e["std"] for e in evaluations],
                marker="o", capsize=3)
    ax.set_xlabel("iteration")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=11)
    fig.subplots_adjust(left=0.13, right=0.96, bottom=0.13, top=0.9)
    return save(fig, path)
