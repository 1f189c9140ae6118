import hashlib
import pickle
import zipfile

import numpy as np
import pytest

from marrowdiff.classes import VocabularyError
from marrowdiff.data.datasets import DatasetError, open_dataset

from ..conftest import write_image


def test_folder_layout_skips_and_counts_junk(class_tree):
    (class_tree / ".DS_Store").write_bytes(b"x")
    (class_tree / "README.txt").write_text("notes")
    (class_tree / "0" / "Thumbs.db").write_bytes(b"x")
    (class_tree / "0" / "notes.csv").write_text("a,b")
    (class_tree / "__MACOSX" / "0").mkdir(parents=True)
    (class_tree / "__MACOSX" / "0" / "._0.png").write_bytes(b"x")
    blank = np.zeros((8, 8, 3), np.uint8)
    write_image(class_tree / "1" / "nested" / "deep.png", blank)
    write_image(class_tree / "loose.png", blank)
    dataset = open_dataset(class_tree)
    assert dataset.kind == "folder"
    assert len(dataset) == 25  # 24 cells + the nested one
    assert dataset.counts["basophilic_normoblast"] == 9
    assert dataset.counts["segmented_neutrophil"] == 0  # every class listed, zeros included
    reasons = {s.path: s.reason for s in dataset.skipped}
    assert reasons["README.txt"].startswith("not an image")
    assert reasons["0/Thumbs.db"] == "system or thumbnail file"
    assert reasons["__MACOSX/0/._0.png"].startswith("inside __MACOSX")
    assert reasons["loose.png"] == "outside a class folder"
    assert "1/nested/deep.png" in [r.path for r in dataset.records]


def test_zip_layout_with_wrapper_folder_and_git_junk(class_tree, tmp_path):
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(class_tree.rglob("*.png")):
            zf.write(path, f"wrapped/{path.relative_to(class_tree).as_posix()}")
        zf.writestr("wrapped/.git/config", "[core]")
        zf.writestr("wrapped/.git/objects/ab/cdef", b"\x00\x01")
        zf.writestr("__MACOSX/wrapped/0/._0.png", b"\x00")
        zf.writestr("wrapped/1/", b"")  # a directory entry
    dataset = open_dataset(archive)
    assert dataset.kind == "zip" and len(dataset) == 24
    assert dataset.records[0].path == "wrapped/0/0.png"
    assert dataset.records[0].label == "pronormoblast"
    assert len(dataset.skipped) == 3
    assert dataset.load(dataset.records[0]).shape == (48, 48, 3)


def test_manifest_with_groups_and_missing_files(class_tree):
    manifest = class_tree / "manifest.csv"
    manifest.write_text(
        "path,label,group\n"
        "0/0.png,C1,patient-a\n"
        "1/0.png,basophilic normoblast,patient-a\n"
        "2/0.png,2,\n"
        "2/missing.png,2,patient-b\n"
        ",2,\n"
    )
    dataset = open_dataset(manifest)
    assert dataset.kind == "manifest"
    assert [(r.path, r.label, r.group) for r in dataset.records] == [
        ("0/0.png", "pronormoblast", "patient-a"),
        ("1/0.png", "basophilic_normoblast", "patient-a"),
        ("2/0.png", "polychromatic_normoblast", None),
    ]
    assert [s.reason for s in dataset.skipped] == [
        "line 5: file not found",
        "line 6: empty path or label",
    ]
    assert dataset.load(dataset.records[2]).shape == (48, 48, 3)


def test_manifest_without_required_columns(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("file,class\na.png,0\n")
    with pytest.raises(DatasetError, match="path,label"):
        open_dataset(manifest)


def test_unknown_labels_fail_with_the_list_and_infer_accepts_them(tmp_path, cells):
    for label, cell in zip(["lymphocyte", "plasma cell", "0"], cells(3), strict=True):
        write_image(tmp_path / "d" / label / "a.png", cell)
    with pytest.raises(VocabularyError, match="'lymphocyte', 'plasma cell'"):
        open_dataset(tmp_path / "d")
    dataset = open_dataset(tmp_path / "d", "infer")
    assert dataset.vocabulary.codes == ("0", "lymphocyte", "plasma cell")


def test_missing_or_empty_sources(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        open_dataset(tmp_path / "nothing")
    (tmp_path / "empty" / "0").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no labelled images"):
        open_dataset(tmp_path / "empty")


def test_corrupt_image_is_reported_by_name_not_raised(class_tree):
    (class_tree / "2" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    dataset = open_dataset(class_tree)
    records, images, skipped = dataset.load_all()
    assert len(images) == 24
    assert [s.path for s in skipped] == ["2/broken.png"]
    assert "corrupt" in skipped[0].reason or "not an image" in skipped[0].reason


def test_fingerprint_and_pickling(class_tree, tmp_path):
    dataset = open_dataset(class_tree)
    assert dataset.fingerprint == open_dataset(class_tree).fingerprint
    listing = "\n".join(sorted(f"{r.path}\t{r.label}\t" for r in dataset.records))
    assert dataset.fingerprint == hashlib.sha256(listing.encode()).hexdigest()  # streamed, same
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone.records == dataset.records
    write_image(class_tree / "0" / "new.png", dataset.load(dataset.records[0]))
    assert open_dataset(class_tree).fingerprint != dataset.fingerprint


def test_a_manifest_listing_an_image_twice_is_refused_naming_both_lines(class_tree):
    manifest = class_tree / "m.csv"
    manifest.write_text("path,label\n0/0.png,0\n1/1.png,1\n./0/0.png,2\n")
    with pytest.raises(DatasetError, match=r"line 4 lists './0/0.png' again \(first on line 2\)"):
        open_dataset(manifest)


def test_a_zip_with_two_members_of_one_name_is_refused(class_tree, tmp_path):
    import warnings
    import zipfile

    archive = tmp_path / "twice.zip"
    with warnings.catch_warnings(), zipfile.ZipFile(archive, "w") as z:
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns of the duplicate name
        z.write(class_tree / "0" / "0.png", "0/a.png")
        z.write(class_tree / "0" / "1.png", "0/a.png")
        z.write(class_tree / "1" / "1.png", "1/b.png")
    with pytest.raises(DatasetError, match=r"more than once, e.g. \['0/a.png'\]"):
        open_dataset(archive)


def test_a_latin1_manifest_is_refused_with_the_fix(class_tree):
    manifest = class_tree / "m.csv"
    manifest.write_bytes("path,label\n0/0.png,pronormoblast\n1/1.png,Zoë\n".encode("latin-1"))
    with pytest.raises(DatasetError, match="not UTF-8 text.*save the manifest as UTF-8"):
        open_dataset(manifest)


def test_a_zip_member_too_large_for_a_cell_is_skipped_unread(class_tree, tmp_path):
    import resource

    from marrowdiff.images import MAX_FILE_BYTES

    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(class_tree / "0" / "0.png", "0/fine.png")
        with z.open("0/huge.png", "w") as member:  # 65 MB of zeros, a few kB in the zip
            for _ in range(65):
                member.write(bytes(2**20))
    assert archive.stat().st_size < 200_000
    dataset = open_dataset(archive)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    found = {r.path: reason for r, _, reason in dataset.iter_images()}
    assert found["0/fine.png"] is None
    assert f"limit {MAX_FILE_BYTES // 2**20} MB" in found["0/huge.png"]
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 32 * 1024  # the member was never inflated


def test_a_prefix_vocabulary_labels_by_file_name_and_crops_the_centre(tmp_path, cells):
    root = tmp_path / "pbc"
    image = np.zeros((100, 60, 3), np.uint8)
    image[40:60, 20:40] = 200  # the centre: what a crop of 0.2 x 0.33 keeps
    write_image(root / "ig" / "MY_1.png", image)
    write_image(root / "ig" / "IG_2.png", cells(1)[0])
    write_image(root / "neutrophil" / "NEUTROPHIL_3.png", cells(1)[0])
    vocab = tmp_path / "v.toml"
    vocab.write_text('base = "marrow14"\nlabel_from = "filename-prefix"\ncrop = 0.2\n')
    dataset = open_dataset(root, str(vocab))
    assert {r.path: r.label for r in dataset.records} == {
        "ig/IG_2.png": "immature_granulocyte",
        "ig/MY_1.png": "myelocyte",
        "neutrophil/NEUTROPHIL_3.png": "neutrophil",
    }
    record = next(r for r in dataset.records if r.label == "myelocyte")
    assert dataset.load(record).shape == (20, 12, 3)  # round(100 * 0.2), round(60 * 0.2)
    assert (dataset.load(record) == 200).all()
    assert dataset.load(record, whole=True).shape == (100, 60, 3)  # what the audit compares


def test_manifest_paths_outside_its_folder_are_read_only_when_allowed(class_tree, monkeypatch):
    inner = class_tree / "lists"
    inner.mkdir()
    for rel in ("../0/0.png", str(class_tree / "0" / "0.png"), "x/../../0/0.png"):
        manifest = inner / "m.csv"
        manifest.write_text(f"path,label\n{rel},0\n../1/1.png,1\n")
        with pytest.raises(DatasetError, match=r"line 2: .* is outside the manifest's folder"):
            open_dataset(manifest)
    monkeypatch.setenv("MARROWDIFF_ALLOW_OUTSIDE_PATHS", "1")
    manifest.write_text(f"path,label\n../0/0.png,0\n{class_tree / '1' / '1.png'},1\n")
    dataset = open_dataset(manifest)
    assert [r.path for r in dataset.records] == ["../0/0.png", str(class_tree / "1" / "1.png")]
    assert dataset.load(dataset.records[0]).shape[-1] == 3
