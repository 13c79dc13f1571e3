"""Each `avdd prepare` source's parser on small metadata files, and the reference-pt import."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from avdd.data import download
from avdd.data.sources import ave, csvfile, folder, music21, reference_pt, vggs10k, vggsound
from avdd.data.sources.common import stratified_split
from avdd.data.sources.registry import PREPARE_SOURCES
from avdd.errors import AvddError

LONG_CLIP = "video_with_failing_audio.mp4"  # 11 s, with sound in seconds 0-4: second 4 is usable


def link(src: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.symlink_to(src)
    return dest


@pytest.fixture
def vgg_rows(data_root: Path) -> list[dict[str, str]]:
    """One row per class of the real VGGS-10K list, in label-id order."""
    with open(data_root / "meta" / "vgg_subset.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    first = {}
    for row in rows:
        first.setdefault(int(row["label_id"]), row)
    return [first[i] for i in sorted(first)]


def write_csv(path: Path, header: list[str], rows: list[list[str]] | list[dict[str, str]]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([[r[h] for h in header] if isinstance(r, dict) else r for r in rows])
    return path


def test_vggs10k_finds_both_names_and_takes_second_4(data_root: Path, vgg_rows, tmp_path: Path) -> None:
    root = tmp_path / "videos"
    a, b = vgg_rows[0], vgg_rows[1]
    link(data_root / "video" / LONG_CLIP, root / f"{a['vid']}.mp4")
    link(data_root / "video" / LONG_CLIP, root / "nested" / f"{b['vid']}_{int(b['num']):06d}.mp4")
    table = write_csv(tmp_path / "subset.csv", ["vid", "num", "label", "split", "label_id"], vgg_rows)

    clips = vggs10k.list_vggs10k(root, table)
    assert clips.classes == [r["label"] for r in vgg_rows]  # ordered by the file's label_id
    assert len(clips.classes) == 10
    assert clips.clips[0].path == root / f"{a['vid']}.mp4"
    assert clips.clips[1].path == root / "nested" / f"{b['vid']}_{int(b['num']):06d}.mp4"
    assert {c.seconds for c in clips.clips} == {(4,)}

    store = PREPARE_SOURCES.get("vggs10k").build(tmp_path / "store", root=root, csv=table, image_size=8,
                                                 workers=1, progress=False)
    assert store.class_names == clips.classes
    assert sum(store.split_sizes.values()) == 2
    assert store.provenance["skipped"] == 8  # the other classes' videos are missing
    labels = np.concatenate([store.split(s).labels for s in store.split_sizes])
    assert sorted(labels.tolist()) == [0, 1]


def test_vggs10k_label_ids_must_be_consistent(vgg_rows, tmp_path: Path) -> None:
    rows = [dict(r) for r in vgg_rows]
    rows[1]["label_id"] = rows[0]["label_id"]
    table = write_csv(tmp_path / "bad.csv", ["vid", "num", "label", "split", "label_id"], rows)
    with pytest.raises(AvddError, match="names both"):
        vggs10k.list_vggs10k(tmp_path, table)


def test_vggs10k_downloads_its_pinned_list(data_root: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AVDD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(vggs10k, "CSV_URL", (data_root / "meta" / "vgg_subset.csv").as_uri())
    clips = vggs10k.list_vggs10k(tmp_path)
    assert len(clips.clips) == 9252 and len(clips.classes) == 10
    cached = tmp_path / "cache" / "meta" / "vgg_subset.csv"
    assert download.sha256_file(cached) == vggs10k.CSV_SHA256
    # a file that does not match the pinned digest is refused
    cached.unlink()
    monkeypatch.setattr(vggs10k, "CSV_URL", (data_root / "meta" / "music_21.csv").as_uri())
    with pytest.raises(AvddError, match="checksum mismatch"):
        vggs10k.list_vggs10k(tmp_path)
    assert not any(cached.parent.iterdir())  # neither the file nor its temporary download


@pytest.mark.parametrize("header", [True, False])
def test_vggsound_list_with_or_without_header(tmp_path: Path, header: bool) -> None:
    root = tmp_path / "videos"
    (root / "abc_000030.mp4").parent.mkdir()
    (root / "abc_000030.mp4").touch()
    (root / "xyz.mkv").touch()
    rows = ["abc,30,dog barking,train\n", "xyz,0,cat purring,test\n", "missing,5,dog barking,test\n"]
    table = tmp_path / "vggsound.csv"
    table.write_text(("youtube_id,start_seconds,label,split\n" if header else "") + "".join(rows))
    clips = vggsound.list_vggsound(root, table)
    assert [(c.path.name, c.label, c.split, c.seconds) for c in clips.clips] == [
        ("abc_000030.mp4", "dog barking", "train", (4,)),
        ("xyz.mkv", "cat purring", "test", (4,)),
        ("missing_000005.mp4", "dog barking", "test", (4,)),  # reported missing when prepared
    ]
    assert clips.classes == ["cat purring", "dog barking"]


def write_ave(root: Path) -> None:
    (root / "Annotations.txt").write_text(
        "Category&VideoID&Quality&StartTime&EndTime\n"
        "Church bell&AAA&good&0&10\nBark&BBB&good&3&6\nBanjo&CCC&good&2&4\n"
    )
    (root / "trainSet.txt").write_text("Church bell&AAA&good&0&10\nBark&BBB&good&3&6\n")
    (root / "testSet.txt").write_text("Banjo&CCC&good&2&4\r\n\r\n")


def test_ave_every_event_second_is_a_sample(tmp_path: Path) -> None:
    write_ave(tmp_path)
    clips = ave.list_ave(tmp_path)
    assert clips.classes == ["Banjo", "Bark", "Church bell"]
    assert [(c.path, c.label, c.split, c.seconds) for c in clips.clips] == [
        (tmp_path / "AVE" / "AAA.mp4", "Church bell", "train", tuple(range(10))),
        (tmp_path / "AVE" / "BBB.mp4", "Bark", "train", (3, 4, 5)),
        (tmp_path / "AVE" / "CCC.mp4", "Banjo", "test", (2, 3)),
    ]


def test_ave_prepares_event_seconds_from_real_clips(data_root: Path, tmp_path: Path) -> None:
    write_ave(tmp_path)
    link(data_root / "video" / LONG_CLIP, tmp_path / "AVE" / "BBB.mp4")
    link(data_root / "video" / "fire2.mp4", tmp_path / "AVE" / "CCC.mp4")  # 2.4 s: seconds 2-3 too short
    store = PREPARE_SOURCES.get("ave").build(tmp_path / "store", root=tmp_path, image_size=8, workers=1,
                                             progress=False)
    assert store.split_sizes == {"train": 2}  # BBB's seconds 3 and 4; its second 5 is silent
    assert store.split("train").labels.tolist() == [1, 1]
    assert store.provenance["skipped"] == 10 + 1 + 2  # AAA missing, BBB's silent second, CCC too short


@pytest.mark.parametrize("line", ["Bark&BBB&good&6&3", "Bark&BBB&good&three&6", "Bark&BBB&6"])
def test_ave_bad_lines_name_the_file_and_line(tmp_path: Path, line: str) -> None:
    write_ave(tmp_path)
    (tmp_path / "trainSet.txt").write_text(f"Church bell&AAA&good&0&10\n{line}\n")
    with pytest.raises(AvddError, match=r"trainSet\.txt:2"):
        ave.list_ave(tmp_path)


def test_ave_needs_its_annotations(tmp_path: Path) -> None:
    with pytest.raises(AvddError, match=r"Annotations\.txt: no such file"):
        ave.list_ave(tmp_path)


def test_music21_finds_videos_in_class_folders(data_root: Path, tmp_path: Path) -> None:
    with open(data_root / "meta" / "music_21.csv", newline="") as f:
        header = next(csv.reader(f))
    rows = [{"vid": "v1", "split": "train", "label": "flute"}, {"vid": "v2", "split": "test", "label": "cello"}]
    table = write_csv(tmp_path / "music.csv", header, rows)
    link(data_root / "video" / "fire2.mp4", tmp_path / "videos" / "flute" / "v1.mp4")
    clips = music21.list_music21(tmp_path / "videos", table)
    assert [(c.path, c.label, c.split, c.seconds) for c in clips.clips] == [
        (tmp_path / "videos" / "flute" / "v1.mp4", "flute", "train", "center"),
        (tmp_path / "videos" / "v2.mp4", "cello", "test", "center"),
    ]
    assert clips.classes == ["cello", "flute"]
    assert music21.list_music21(tmp_path / "videos", table, seconds="all").clips[0].seconds == "all"


def test_csv_source_merges_rows_and_keeps_given_splits(tmp_path: Path) -> None:
    table = write_csv(tmp_path / "mine.csv", ["path", "label", "split", "second"], [
        ["a.mp4", "dog", "train", "3"], ["sub/b.mp4", "cat", "test", "0"], ["a.mp4", "dog", "train", "1"],
    ])
    clips = csvfile.list_csv(table)
    assert [(c.path, c.label, c.split, c.seconds) for c in clips.clips] == [
        (tmp_path / "a.mp4", "dog", "train", (1, 3)),
        (tmp_path / "sub" / "b.mp4", "cat", "test", (0,)),
    ]
    assert csvfile.list_csv(table, root=Path("/data")).clips[0].path == Path("/data/a.mp4")


def test_csv_source_without_split_or_second(tmp_path: Path) -> None:
    rows = [[f"{label}{i}.mp4", label] for label in ("dog", "cat") for i in range(5)]
    table = write_csv(tmp_path / "mine.csv", ["path", "label"], rows)
    clips = csvfile.list_csv(table, test_fraction=0.4, split_seed=3)
    assert {c.seconds for c in clips.clips} == {"all"}
    for label in ("dog", "cat"):
        assert sorted(c.split for c in clips.clips if c.label == label) == ["test"] * 2 + ["train"] * 3
    again = csvfile.list_csv(table, test_fraction=0.4, split_seed=3)
    assert [c.split for c in again.clips] == [c.split for c in clips.clips]  # seeded


@pytest.mark.parametrize(("rows", "message"), [
    ([["a.mp4", "dog", "train"], ["a.mp4", "cat", "train"]], "another label or split"),
    ([["a.mp4", "dog", ""]], "empty split"),
    ([["", "dog", "train"]], "must not be empty"),
])
def test_csv_source_rejects_inconsistent_rows(tmp_path: Path, rows, message: str) -> None:
    table = write_csv(tmp_path / "mine.csv", ["path", "label", "split"], rows)
    with pytest.raises(AvddError, match=message):
        csvfile.list_csv(table)


def test_csv_source_needs_path_and_label_columns(tmp_path: Path) -> None:
    table = write_csv(tmp_path / "mine.csv", ["file", "label"], [["a.mp4", "dog"]])
    with pytest.raises(AvddError, match="missing column"):
        csvfile.list_csv(table)


def test_stratified_split_keeps_one_of_each_side_per_class() -> None:
    splits = stratified_split(["a"] * 2 + ["b"] * 10 + ["c"], test_fraction=0.2, seed=0)
    assert splits[:2].count("test") == 1 and splits[2:12].count("test") == 2 and splits[12] == "train"
    assert splits != stratified_split(["a"] * 2 + ["b"] * 10 + ["c"], test_fraction=0.2, seed=1)


def test_folder_source_one_folder_per_class(tmp_path: Path) -> None:
    for label in ("drums", "bells"):
        for i in range(4):
            (tmp_path / label / "deep").mkdir(parents=True, exist_ok=True)
            (tmp_path / label / ("deep" if i == 3 else ".") / f"{i}.mp4").touch()
    (tmp_path / "bells" / "notes.txt").touch()
    (tmp_path / "empty").mkdir()
    clips = folder.list_folder(tmp_path, test_fraction=0.25)
    assert clips.classes == ["bells", "drums"]
    assert len(clips.clips) == 8 and all(c.path.suffix == ".mp4" for c in clips.clips)
    assert sorted(c.split for c in clips.clips if c.label == "drums") == ["test", "train", "train", "train"]
    with pytest.raises(AvddError, match="no videos"):
        folder.list_folder(tmp_path / "empty")


def reference_files(tmp_path: Path, images_train: torch.Tensor) -> tuple[Path, Path]:
    g = torch.Generator().manual_seed(0)
    train = {
        "audio_train": torch.randn(5, 1, 128, 56, generator=g) * 10 - 20,
        "images_train": images_train,
        "labels_train": torch.tensor([0, 1, 2, 1, 0], dtype=torch.int32),
        "classes": ["bark", "bell", "horn"],
    }
    test = {
        "audio_test": torch.randn(2, 1, 128, 56, generator=g),
        "images_test": torch.randint(0, 256, (2, 3, 12, 12), generator=g, dtype=torch.uint8),
        "labels_test": torch.tensor([2, 0], dtype=torch.int32),
    }
    torch.save(train, tmp_path / "train.pt")
    torch.save(test, tmp_path / "test.pt")
    return tmp_path / "train.pt", tmp_path / "test.pt"


def test_reference_pt_converts_the_authors_layout(tmp_path: Path) -> None:
    images = torch.rand(5, 3, 12, 12, generator=torch.Generator().manual_seed(1)) * 255  # float, 0..255
    train, test = reference_files(tmp_path, images)
    store = reference_pt.import_reference(tmp_path / "store", train=train, test=test, progress=False)
    assert store.class_names == ["bark", "bell", "horn"]
    assert store.split_sizes == {"train": 5, "test": 2}
    frames = store.split("train").arrays["frame"]
    assert frames.dtype == np.uint8 and frames.shape == (5, 3, 12, 12)
    np.testing.assert_array_equal(frames, images.round().to(torch.uint8).numpy())
    np.testing.assert_array_equal(store.split("test").arrays["frame"], torch.load(test)["images_test"].numpy())
    assert store.split("train").labels.tolist() == [0, 1, 2, 1, 0]
    audio = torch.load(train)["audio_train"].numpy()
    np.testing.assert_allclose(store.split("train").arrays["audio"], audio, atol=0.02)
    assert store.modalities["audio"].mean[0] == pytest.approx(audio.mean(), abs=1e-4)
    assert store.modalities["audio"].std[0] == pytest.approx(audio.std(), rel=1e-4)


def test_reference_pt_refuses_normalised_frames(tmp_path: Path) -> None:
    train, test = reference_files(tmp_path, torch.randn(5, 3, 12, 12))
    with pytest.raises(AvddError, match=r"expected 0\.\.255"):
        reference_pt.import_reference(tmp_path / "store", train=train, test=test, progress=False)
    assert not (tmp_path / "store").exists()


def test_reference_pt_names_missing_keys(tmp_path: Path) -> None:
    train, _ = reference_files(tmp_path, torch.zeros(5, 3, 12, 12, dtype=torch.uint8))
    with pytest.raises(AvddError, match="audio_test"):
        reference_pt.import_reference(tmp_path / "store", train=train, test=train, progress=False)
