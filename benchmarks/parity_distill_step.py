"""One DM/AVDD iteration of avdd's ``reference`` protocol against one iteration of the authors'
loop, on the same inputs (issue #19; results in RESULTS.md).

Runs the authors' ``main_DM_AV.main`` (imported from a checkout, ``AVDD_REF``, through the
harness in ``../shared/tools/reference/run_reference.py``; never copied) for one iteration and
records what it draws: the iteration's encoders, each class's real batches and the augmentation
seed. avdd's ``MatchingRun`` (protocol ``reference``) then starts from the authors' initial
synthetic set and is given the same encoders (weights copied), the same real batches and the same
augmentation (the authors' ``DiffAugment`` with their seed: avdd's DSA ops were compared with
theirs op by op, RESULTS.md). Compared, class step by class step: the gradient on the synthetic
data and the data after the step; then the same iteration with one step for all classes instead
(what the authors' per-class steps change).

    AVDD_REF=/path/to/AVDD python benchmarks/parity_distill_step.py --pt PT_DIR --store STORE
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avdd.data.store import open_store
from avdd.distill.dm import MatchingConfig, MatchingRun
from avdd.distill.matching import MatchingWeights
from avdd.models.convnet import DEFAULT_ENCODER, ENCODERS, ConvNet

SEED_BASE = 178645  # the authors' per-iteration seed: (178645 + iteration + experiment) % 100000


def authors_harness(harness: Path, pt: Path, batch_real: int) -> dict[str, Any]:
    """The harness's namespace (the authors' ``main_DM_AV`` as M, ``data_utils`` as D, the run's
    ``args``) for iteration 0 only, IPC 1, no evaluation; its last line (running M.main) left out."""
    sys.argv = ["run_reference.py", str(pt), "avdigits", "1", "0", str(batch_real), "av", "30", "0"]
    source = harness.read_text().rsplit("t = time.time(); M.main(args)", 1)[0]
    namespace: dict[str, Any] = {"__name__": "harness"}
    exec(compile(source, str(harness), "exec"), namespace)  # the harness, run as its README says
    torch.set_num_threads(1)
    return namespace


def recording(step: Callable[..., Any], steps: list[dict[str, list[torch.Tensor]]]) -> Callable[..., Any]:
    """``Optimizer.step`` that appends the parameters before, their gradients and the parameters after."""
    def recording_step(optimizer: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> Any:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        record = {"before": [p.detach().clone() for p in params], "grad": [p.grad.clone() for p in params]}
        out = step(optimizer, *args, **kwargs)
        steps.append({**record, "after": [p.detach().clone() for p in params]})
        return out
    return recording_step


class Recorder:
    """What the authors' iteration draws and computes, recorded around their functions."""

    def __init__(self, main: Any) -> None:
        self.nets: list[tuple[dict[str, torch.Tensor], ...]] = []
        self.augmented: list[tuple[torch.Tensor, int]] = []  # (input, seed) of each DiffAugment call
        self.steps: list[dict[str, list[torch.Tensor]]] = []
        get_network, augment = main.get_network, main.DiffAugment

        def recording_network(args: Any) -> Any:
            nets, net_eval = get_network(args)
            self.nets.append((copy.deepcopy(nets[0].state_dict()), copy.deepcopy(nets[1].state_dict())))
            return nets, net_eval

        def recording_augment(x: torch.Tensor, strategy: str = "", seed: int = -1, param: Any = None) -> torch.Tensor:
            self.augmented.append((x.detach().clone(), seed))
            return augment(x, strategy, seed, param)

        main.get_network, main.DiffAugment = recording_network, recording_augment


def copied_encoders(run: MatchingRun, states: tuple[dict[str, torch.Tensor], ...]) -> dict[str, torch.nn.Module]:
    """avdd's encoders of ``run`` holding the authors' weights (their ``features.*`` matched in order)."""
    encoders: dict[str, torch.nn.Module] = {}
    for m, state in zip(run.modalities, states, strict=True):
        net = ENCODERS.get(DEFAULT_ENCODER)(run.encoder_configs[m])
        assert isinstance(net, ConvNet), "the reference layout is a ConvNet's"
        theirs = [w for k, w in state.items() if k.startswith("features.")]
        ours = net.features.state_dict()
        if [tuple(w.shape) for w in theirs] != [tuple(w.shape) for w in ours.values()]:
            raise SystemExit(f"{m}: the authors' encoder has other layers than avdd's reference layout")
        net.features.load_state_dict(dict(zip(ours, theirs, strict=True)))
        encoders[m] = net.requires_grad_(False)
    return encoders


def avdd_iteration(store: Path, recorder: Recorder, lam: float, batch_real: int, class_steps: bool,
                   data_utils: Any) -> list[dict[str, list[torch.Tensor]]]:
    """avdd's iteration 0 from the authors' initial set with their draws; its optimizer steps recorded."""
    train = open_store(store).split("train")
    config = MatchingConfig(iterations=1, lr={"audio": 0.2, "frame": 0.2}, momentum=0.5, batch_real=batch_real,
                            weights=MatchingWeights(1.0, lam, lam), factor=2, init="random", protocol="reference")
    run = MatchingRun(train, ("audio", "frame"), 1, 0, config)
    run.quirks = dataclasses.replace(run.quirks, class_steps=class_steps)
    with torch.no_grad():
        for m, x in zip(run.modalities, recorder.steps[0]["before"], strict=True):
            run.synthetic[m].copy_(x)
    encoders = copied_encoders(run, recorder.nets[0])
    # per class the authors augment: real audio, synthetic audio, real frames, synthetic frames
    real = [{"audio": recorder.augmented[4 * c][0], "frame": recorder.augmented[4 * c + 2][0]} for c in range(10)]
    seed = recorder.augmented[0][1]
    assert seed == SEED_BASE % 100000 and all(s == seed for _, s in recorder.augmented)
    run._encoders = lambda: encoders  # type: ignore[method-assign]
    run._real_batch = lambda c, modalities: {m: real[c][m] for m in modalities}  # type: ignore[method-assign]
    run.dsa.apply = lambda x, draw, chunks=None: data_utils.DiffAugment(  # type: ignore[method-assign]
        x, "color_crop_cutout_flip_scale_rotate", seed=seed, param=data_utils.ParamDiffAug())
    steps: list[dict[str, list[torch.Tensor]]] = []
    run.optimizer.step = recording(torch.optim.SGD.step, steps).__get__(run.optimizer)  # type: ignore[method-assign]
    run.step()
    return steps


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pt", type=Path, required=True, help="folder of avdigits_{train,test}.pt")
    parser.add_argument("--store", type=Path, required=True, help="avdd prepare reference-pt of the same files")
    parser.add_argument("--harness", type=Path, default=Path("../shared/tools/reference/run_reference.py"))
    parser.add_argument("--lam", type=float, default=10.0, help="joint and gap weights (0: DM)")
    parser.add_argument("--batch-real", type=int, default=64)
    opts = parser.parse_args()
    assert "AVDD_REF" in os.environ, "set AVDD_REF to a checkout of the authors' repository"
    store, pt = opts.store.resolve(), opts.pt.resolve()
    os.environ["LAM_JM"] = os.environ["LAM_MGM"] = str(opts.lam)
    g = authors_harness(opts.harness.resolve(), pt, opts.batch_real)
    recorder = Recorder(g["M"])
    sgd_step = torch.optim.SGD.step
    torch.optim.SGD.step = recording(sgd_step, recorder.steps)  # type: ignore[method-assign]
    g["M"].main(g["args"])
    torch.optim.SGD.step = sgd_step  # type: ignore[method-assign]
    theirs = recorder.steps
    assert len(theirs) == 10 and len(recorder.nets) == 1, (len(theirs), len(recorder.nets))
    report: dict[str, Any] = {"lam": opts.lam, "batch_real": opts.batch_real, "class_steps": []}
    ours = avdd_iteration(store, recorder, opts.lam, opts.batch_real, True, g["D"])
    for c, (t, o) in enumerate(zip(theirs, ours, strict=True)):
        report["class_steps"].append({
            "class": c,
            **{f"{m}_grad_rel": relative(o["grad"][k], t["grad"][k]) for k, m in enumerate(("audio", "frame"))},
            # the data after the step, against the data's own size: float32 rounding is ~6e-8 of it
            **{f"{m}_after_rel": relative(o["after"][k], t["after"][k]) for k, m in enumerate(("audio", "frame"))},
        })
    one_step = avdd_iteration(store, recorder, opts.lam, opts.batch_real, False, g["D"])
    start, end = theirs[0]["before"], theirs[-1]["after"]
    report["one_step_vs_class_steps"] = {
        m: {"moved_max": float((end[k] - start[k]).abs().max()),
            "rel_difference": relative(one_step[0]["after"][k] - start[k], end[k] - start[k])}
        for k, m in enumerate(("audio", "frame"))}
    report["max_rel"] = max(v for row in report["class_steps"] for k, v in row.items() if k != "class")
    print(json.dumps(report, indent=1))
    np.testing.assert_array_less(report["max_rel"], 1e-4)


if __name__ == "__main__":
    main()
