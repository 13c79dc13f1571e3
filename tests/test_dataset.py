"""avdd.load: any store as a torch Dataset, factorised sets decoded into their tiles."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

import avdd
from avdd.data.store import Store
from avdd.distill.api import distill
from avdd.errors import AvddError
from avdd.training.inputs import load_training_set


@pytest.fixture(scope="module")
def factorised(tiny_store: Store, tmp_path_factory: pytest.TempPathFactory) -> Store:
    """An AVDD set at IPC 2, factor on: 3 classes x 2 stored samples of 4 tiles each."""
    saved = distill(tiny_store.path, tmp_path_factory.mktemp("sets") / "avdd", "avdd", modalities=("audio", "frame"),
                    ipc=2, progress=False, iterations=1, batch_real=4, width=8)
    assert saved is not None and saved.provenance["factor"] == 2
    return saved


def test_a_factorised_set_has_4x_its_stored_samples_decoded_as_evaluation_decodes_them(factorised: Store) -> None:
    data = avdd.load(factorised.path)
    assert len(factorised.split("train")) == 6 and len(data) == 24
    assert data.class_names == ["c0", "c1", "c2"]
    stored_labels = factorised.split("train").labels.tolist()
    assert stored_labels == [0, 0, 1, 1, 2, 2]
    assert data.labels.tolist() == stored_labels * 4  # tile-major: every stored sample's tile 0, then tile 1, ...
    inputs, labels = load_training_set(factorised, ("audio", "frame"), torch.device("cpu"))
    assert [data[i]["label"] for i in range(len(data))] == labels.tolist()
    for i in (0, 5, 6, 23, -1):
        item = data[i]
        for m in ("audio", "frame"):
            assert torch.equal(item[m], inputs[m][i])  # decoded alone, as in the whole set
    with pytest.raises(IndexError):
        data[24]


def test_a_real_store_in_a_dataloader(tiny_store: Store) -> None:
    data = avdd.load(tiny_store.path, split="test", modalities=["frame"])
    assert len(data) == 18 and data.labels.tolist() == tiny_store.split("test").labels.tolist()
    batches = list(DataLoader(data, batch_size=8))
    assert [len(b["label"]) for b in batches] == [8, 8, 2]
    first = batches[0]
    assert set(first) == {"frame", "label"} and first["frame"].shape == (8, 3, 8, 8)
    assert first["frame"].dtype == torch.float32
    raw = torch.from_numpy(tiny_store.split("test").arrays["frame"][:8].copy()).float() / 255
    torch.testing.assert_close(first["frame"], (raw - 0.5) / 0.25)  # normalised by the store's statistics
    with pytest.raises(AvddError, match="no modality 'depth'"):
        avdd.load(tiny_store.path, modalities=["depth"])


def test_import_avdd_stays_light() -> None:
    code = "import sys, avdd; assert 'torch' not in sys.modules, 'torch'; assert callable(avdd.load)"
    src = str(Path(avdd.__file__).parent.parent)
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": src})
