"""avdd-plus's kernel ridge regression term: the one term across classes (issue #21).

Every other matching term is a sum of per-class values, while the evaluation learns all classes
together. This term asks a linear ridge regression fitted on the synthetic embeddings of every class
(under the iteration's encoders) to predict the classes of the real embeddings. Per modality, with R
the real rows and S the synthetic rows, both centred on R's mean and divided by R's root mean squared
norm, and targets Y = one-hot − 1/C:

    α = (S Sᵀ + ρ · mean diag(S Sᵀ) · I)⁻¹ Y_S,    L = C · mean over R's rows of ‖R Sᵀ α − Y_R‖²

(ρ = ``krr_ridge``; the ridge's scale is a constant of the step, not differentiated), summed over
modalities. Because L couples every class, the loop first evaluates it, and its gradient G with
respect to every synthetic embedding, on detached embeddings of all classes (every process's,
gathered); each class group then backpropagates <G, its embeddings>, which gives the data the
gradient of L while the group memory bound stays (:meth:`RegressionPull.terms`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from avdd.distributed import current, gather_all

Rows = dict[str, torch.Tensor]  # (n, d) embeddings of one class, per modality


def ridge_loss(real: torch.Tensor, real_labels: torch.Tensor, synthetic: torch.Tensor, synthetic_labels: torch.Tensor,
               num_classes: int, ridge: float) -> torch.Tensor:
    """C × the mean squared error, on the real rows, of the ridge regression of the one-hot − 1/C
    targets fitted on the synthetic rows (the module's L for one modality; labels in [0, C))."""
    centre = real.mean(0)
    scale = (real - centre).pow(2).sum(1).mean().sqrt()
    r, s = (real - centre) / scale, (synthetic - centre) / scale
    targets = torch.eye(num_classes, dtype=r.dtype, device=r.device) - 1 / num_classes
    kernel = s @ s.T
    # floored: synthetic rows all at the real mean would leave no ridge and a singular system
    scale_of_ridge = kernel.diagonal().mean().detach().clamp_min(torch.finfo(s.dtype).eps)
    regularised = kernel + ridge * scale_of_ridge * torch.eye(len(s), dtype=s.dtype, device=s.device)
    alpha = torch.linalg.solve(regularised, targets[synthetic_labels])
    # R (Sᵀ α), not (R Sᵀ) α: a (d, C) product instead of a (real × synthetic) one
    return num_classes * (r @ (s.T @ alpha) - targets[real_labels]).pow(2).sum(1).mean()


@dataclass(frozen=True)
class RegressionPull:
    """The term at this iteration: its value (over the job's ``classes`` classes) and its gradient
    with respect to this process's synthetic embeddings ((classes × samples, d), class-major, in the
    run's class order), per modality."""

    value: torch.Tensor
    gradient: Rows
    classes: int

    def terms(self, group: slice, features: Rows) -> torch.Tensor:
        """(n,) per class of the classes at positions ``group``, whose embeddings are ``features``:
        each L / C in value, and in gradient <G, the class's embeddings> — so the group's backward
        gives its data their share of the gradient of L."""
        n = group.stop - group.start
        pulls = []
        for m, f in features.items():
            per_class = len(f) // n
            rows = self.gradient[m][group.start * per_class: group.stop * per_class]
            pulls.append((rows * f).view(n, -1).sum(1))
        pull = torch.stack(pulls).sum(0)
        return self.value / self.classes + pull - pull.detach()


def _gathered(classes: Sequence[int], real: Sequence[Rows], synthetic: Sequence[Rows]
              ) -> tuple[list[int], list[Rows], list[Rows]]:
    """Every process's classes and their rows, ordered by class (this process's alone when serial)."""
    if current().world_size == 1:
        order = sorted(range(len(classes)), key=lambda p: classes[p])
        return [classes[p] for p in order], [real[p] for p in order], [synthetic[p] for p in order]
    mine = [(c, {m: x.cpu() for m, x in r.items()}, {m: x.cpu() for m, x in s.items()})
            for c, r, s in zip(classes, real, synthetic, strict=True)]
    every = sorted((row for part in gather_all(mine) for row in part), key=lambda row: row[0])
    return [row[0] for row in every], [row[1] for row in every], [row[2] for row in every]


def regression_pull(classes: Sequence[int], real: Sequence[Rows], synthetic: Sequence[Rows],
                    ridge: float) -> RegressionPull:
    """The term over the job's classes, from this process's ``classes`` with their real and (detached)
    synthetic embeddings; the same value and, row for row, the same gradient in every process."""
    device = synthetic[0][next(iter(synthetic[0]))].device
    every, real_rows, syn_rows = _gathered(classes, real, synthetic)
    position = {c: p for p, c in enumerate(every)}

    def labels(rows: Sequence[Rows], m: str) -> torch.Tensor:
        return torch.cat([torch.full((len(r[m]),), p, device=device) for p, r in enumerate(rows)])

    value = torch.zeros((), device=device)
    gradient: Rows = {}
    for m in synthetic[0]:
        leaf = torch.cat([r[m] for r in syn_rows]).to(device).requires_grad_()
        with torch.enable_grad():
            loss = ridge_loss(torch.cat([r[m] for r in real_rows]).to(device), labels(real_rows, m), leaf,
                              labels(syn_rows, m), len(every), ridge)
            (grad,) = torch.autograd.grad(loss, leaf)
        value = value + loss.detach()
        per_class = grad.view(len(every), -1, grad.shape[1])  # every class has the same synthetic count
        gradient[m] = torch.cat([per_class[position[c]] for c in classes])
    return RegressionPull(value, gradient, len(every))
