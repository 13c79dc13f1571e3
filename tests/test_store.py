import json
import os
import re
import stat

import numpy as np
import pytest

from avdd.data.store import IMAGE, SPECTROGRAM, ModalitySpec, StoreWriter, open_store, write_store
from avdd.errors import AvddError
from avdd.files import write_text_atomic
from avdd.formats import META_FILE
from conftest import make_tiny_store

MODALITIES = {
    "audio": ModalitySpec((1, 4, 3), "float16", (-50.0,), (20.0,), kind=SPECTROGRAM),
    "frame": ModalitySpec((3, 5, 5), "uint8", (0.4, 0.5, 0.6), (0.2, 0.25, 0.3), scale=1 / 255, kind=IMAGE),
}


def make_splits(rng: np.random.Generator, sizes=(("train", 12), ("test", 6))):
    return {
        split: {
            "labels": rng.integers(0, 3, n),
            "audio": rng.normal(-50, 20, (n, 1, 4, 3)).astype(np.float16),
            "frame": rng.integers(0, 256, (n, 3, 5, 5)).astype(np.uint8),
        }
        for split, n in sizes
    }


def write_tiny(path, rng=None, **kwargs):
    splits = make_splits(rng or np.random.default_rng(0))
    store = write_store(path, name="tiny", class_names=["a", "b", "c"], modalities=MODALITIES, splits=splits,
                        provenance={"source": "test"}, **kwargs)
    return store, splits


def test_round_trip_is_exact_and_memory_mapped(tmp_path):
    store, splits = write_tiny(tmp_path / "s")
    again = open_store(tmp_path / "s")
    assert again.name == "tiny" and again.class_names == ["a", "b", "c"]
    assert again.split_sizes == {"train": 12, "test": 6}
    assert again.modalities == MODALITIES
    assert again.provenance == {"source": "test"}
    for split, arrays in splits.items():
        s = again.split(split)
        assert isinstance(s.labels, np.memmap)
        np.testing.assert_array_equal(s.labels, arrays["labels"])
        for m in MODALITIES:
            assert isinstance(s.arrays[m], np.memmap)
            assert s.arrays[m].dtype == np.dtype(MODALITIES[m].dtype)
            np.testing.assert_array_equal(s.arrays[m], arrays[m])
    assert store.split("train").class_counts() == np.bincount(splits["train"]["labels"], minlength=3).tolist()


def test_class_indices_partition_the_split(tmp_path):
    store, _ = write_tiny(tmp_path / "s")
    split = store.split("train")
    for c, idx in enumerate(split.class_indices):
        assert (split.labels[idx] == c).all()
    assert sorted(np.concatenate(split.class_indices).tolist()) == list(range(12))


def test_normalise_then_denormalise(tmp_path):
    import torch

    spec = MODALITIES["frame"]
    stored = torch.tensor(np.random.default_rng(1).integers(0, 256, (2, 3, 5, 5)), dtype=torch.uint8)
    x = spec.normalise(stored)
    expected = (stored.double() / 255 - torch.tensor([0.4, 0.5, 0.6]).view(3, 1, 1)) / torch.tensor(
        [0.2, 0.25, 0.3]).view(3, 1, 1)
    torch.testing.assert_close(x.double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(spec.denormalise(x), stored.float(), rtol=1e-4, atol=1e-3)


def test_interrupted_write_leaves_nothing_that_opens(tmp_path):
    out = tmp_path / "s"
    with pytest.raises(RuntimeError), StoreWriter(
        out, name="x", class_names=["a", "b"], modalities=MODALITIES, split_sizes={"train": 4}
    ) as writer:
        writer.labels("train")[:] = 0
        raise RuntimeError("killed mid-write")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_partial_directory_of_a_killed_build_is_not_a_store(tmp_path):
    out = tmp_path / "s"
    writer = StoreWriter(out, name="x", class_names=["a", "b"], modalities=MODALITIES, split_sizes={"train": 4})
    writer.labels("train")[:] = 0
    writer.array("train", "audio")[:] = 1
    # the process dies here: no commit
    assert not out.exists()
    with pytest.raises(AvddError, match="not a dataset store"):
        open_store(writer.tmp)


def test_existing_output_is_refused_unless_overwrite(tmp_path):
    write_tiny(tmp_path / "s")
    with pytest.raises(AvddError, match="already exists"):
        write_tiny(tmp_path / "s")
    _, splits = write_tiny(tmp_path / "s", rng=np.random.default_rng(5), overwrite=True)
    np.testing.assert_array_equal(open_store(tmp_path / "s").split("test").labels, splits["test"]["labels"])


def test_truncated_array_is_reported_with_its_file(tmp_path):
    write_tiny(tmp_path / "s")
    victim = tmp_path / "s" / "train_frame.npy"
    victim.write_bytes(victim.read_bytes()[:-100])
    with pytest.raises(AvddError, match="train_frame.npy.*truncated"):
        open_store(tmp_path / "s")


def test_missing_array_is_reported(tmp_path):
    write_tiny(tmp_path / "s")
    (tmp_path / "s" / "test_labels.npy").unlink()
    with pytest.raises(AvddError, match="test_labels.npy: array file missing"):
        open_store(tmp_path / "s")


def test_newer_format_version_is_refused(tmp_path):
    write_tiny(tmp_path / "s")
    meta_path = tmp_path / "s" / META_FILE
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = 99
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(AvddError, match="version 99 is newer"):
        open_store(tmp_path / "s")


def test_array_disagreeing_with_meta_is_reported(tmp_path):
    write_tiny(tmp_path / "s")
    np.save(tmp_path / "s" / "train_audio.npy", np.zeros((12, 1, 4, 4), np.float16))
    with pytest.raises(AvddError, match=r"train_audio.npy: holds float16\[12, 1, 4, 4\] but meta.json says"):
        open_store(tmp_path / "s")


def test_labels_out_of_range_are_reported(tmp_path):
    write_tiny(tmp_path / "s")
    np.save(tmp_path / "s" / "test_labels.npy", np.full(6, 7, np.int64))
    with pytest.raises(AvddError, match="labels outside 0..2"):
        open_store(tmp_path / "s")


@pytest.mark.parametrize("content", [None, "{not json", '{"format": "something-else"}'])
def test_directory_that_is_not_a_store(tmp_path, content):
    if content is not None:
        (tmp_path / META_FILE).write_text(content)
    with pytest.raises(AvddError, match=str(tmp_path)):
        open_store(tmp_path)


def test_unknown_split_lists_known_ones(tmp_path):
    store, _ = write_tiny(tmp_path / "s")
    with pytest.raises(AvddError, match="has: train, test"):
        store.split("val")


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_stores_and_atomic_files_get_the_umask_permissions_not_private_ones(tmp_path, umask):
    # mkdtemp/mkstemp make 0700/0600: a store or result renamed from them would be the user's alone
    previous = os.umask(umask)
    try:
        store = make_tiny_store(tmp_path / "store")
        write_text_atomic(tmp_path / "result.json", "{}\n")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o777 & ~umask
    assert stat.S_IMODE((tmp_path / "result.json").stat().st_mode) == 0o666 & ~umask


def test_kinds_are_written_and_read_back(tmp_path):
    write_tiny(tmp_path / "s")
    meta = json.loads((tmp_path / "s" / META_FILE).read_text())
    assert {m: spec["kind"] for m, spec in meta["modalities"].items()} == {"audio": "spectrogram", "frame": "image"}
    assert {m: spec.kind for m, spec in open_store(tmp_path / "s").modalities.items()} == {
        "audio": "spectrogram", "frame": "image"}


def test_a_store_written_before_kinds_opens_with_the_kinds_its_names_meant(tmp_path):
    # before kinds, report and listen took the modality named "audio" for the spectrogram, all else for images
    write_store(tmp_path / "s", name="old", class_names=["a", "b", "c"], splits=make_splits(np.random.default_rng(0)),
                modalities={**MODALITIES, "frame": ModalitySpec((3, 5, 5), "float16", (0.5,), (0.2,), kind=IMAGE)})
    meta_path = tmp_path / "s" / META_FILE
    meta = json.loads(meta_path.read_text())
    for spec in meta["modalities"].values():
        del spec["kind"]
    meta_path.write_text(json.dumps(meta))
    store = open_store(tmp_path / "s")
    assert store.modalities["audio"].kind == SPECTROGRAM
    assert store.modalities["frame"].kind == IMAGE  # float, as a distilled set's frames are: still an image


def test_an_unknown_kind_is_refused_naming_the_file_and_the_modality(tmp_path):
    write_tiny(tmp_path / "s")
    meta_path = tmp_path / "s" / META_FILE
    meta = json.loads(meta_path.read_text())
    meta["modalities"]["frame"]["kind"] = "video"
    meta_path.write_text(json.dumps(meta))
    message = f'{meta_path}: modalities.frame: kind must be one of image, spectrogram, got "video"'
    with pytest.raises(AvddError, match=re.escape(message)):
        open_store(tmp_path / "s")
    with pytest.raises(ValueError, match="kind must be one of"):
        ModalitySpec((1, 4, 3), "float16", (0.0,), (1.0,), kind="sound")
