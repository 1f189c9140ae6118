import json

import pytest

from marrowdiff.data.audit import audit_dataset, read_audit, write_audit
from marrowdiff.data.datasets import DatasetError, open_dataset


def test_audit_finds_conflicts_and_same_label_duplicates(with_duplicates, tmp_path):
    dataset = open_dataset(with_duplicates)
    audit, records = audit_dataset(dataset)
    assert audit["n_images"] == 22
    assert audit["counts"]["pronormoblast"] == 7
    groups = audit["duplicate_groups"]
    assert len(groups) == 2
    conflict, same = groups  # conflicts are listed first
    assert conflict["conflicting_labels"] is True
    assert {(m["path"], m["label"]) for m in conflict["members"]} == {
        ("0/cell.png", "pronormoblast"),
        ("1/same-cell.png", "basophilic_normoblast"),
    }
    assert same["conflicting_labels"] is False
    assert {m["path"] for m in same["members"]} == {"2/a.png", "2/a-again.jpg"}
    assert 0.85 <= same["similarity"] <= 1.0 and not same["exact"]

    written = write_audit(audit, dataset, tmp_path / "out")
    names = sorted(p.name for p in written)
    assert names == ["audit.html", "audit.json", "audit.md", "duplicates-1.png"]
    assert json.loads((tmp_path / "out" / "audit.json").read_text()) == audit
    markdown = (tmp_path / "out" / "audit.md").read_text()
    assert "1 with conflicting labels" in markdown and "`0/cell.png`" in markdown
    page = (tmp_path / "out" / "audit.html").read_text()
    assert "<div class='group conflict'><h3>#1: conflicting labels" in page
    assert "<b>basophilic_normoblast</b><br>1/same-cell.png</figcaption>" in page  # in full
    assert page.count("data:image/jpeg;base64,") == 4 and "http" not in page


def test_five_broken_files_are_reported_and_the_audit_finishes(class_tree, tmp_path):
    (class_tree / "0" / "empty.png").write_bytes(b"")
    (class_tree / "0" / "text.jpg").write_text("hello")
    (class_tree / "1" / "trunc.png").write_bytes((class_tree / "1" / "0.png").read_bytes()[:60])
    (class_tree / "1" / "trunc.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 30)
    (class_tree / "2" / "bad.bmp").write_bytes(b"BM" + b"\x01" * 20)
    audit, _ = audit_dataset(open_dataset(class_tree))
    assert audit["n_listed"] == 29 and audit["n_images"] == 24
    assert audit["n_unreadable"] == 5
    unreadable = sorted(s["path"] for s in audit["skipped"] if s["stage"] == "decode")
    assert unreadable == ["0/empty.png", "0/text.jpg", "1/trunc.jpg", "1/trunc.png", "2/bad.bmp"]
    assert all(s["reason"] for s in audit["skipped"])


def test_clean_data_set_has_no_groups(class_tree, tmp_path):
    dataset = open_dataset(class_tree)
    audit, records = audit_dataset(dataset)
    assert audit["duplicate_groups"] == [] and audit["skipped"] == []
    written = write_audit(audit, dataset, tmp_path / "out")
    assert [p.name for p in written] == ["audit.json", "audit.md", "audit.html"]  # no sheet


@pytest.mark.parametrize("text", ["{garbage", "[]", '{"no": "fingerprint"}'])
def test_a_damaged_audit_file_is_refused_by_name(tmp_path, text):
    path = tmp_path / "audit.json"
    path.write_text(text)
    with pytest.raises(DatasetError, match="audit") as error:
        read_audit(path)
    assert str(path) in str(error.value)


def test_an_audit_reads_back_as_written(with_duplicates, tmp_path):
    dataset = open_dataset(with_duplicates)
    audit, _ = audit_dataset(dataset)
    write_audit(audit, dataset, tmp_path)
    assert read_audit(tmp_path) == json.loads(json.dumps(audit))


def test_an_interrupted_audit_goes_on_from_where_it_stopped(with_duplicates, tmp_path, monkeypatch):
    from marrowdiff.data.audit import ReadLog
    from marrowdiff.data.datasets import Dataset

    monkeypatch.setattr(ReadLog, "EVERY", 4)
    dataset = open_dataset(with_duplicates)
    uninterrupted, _ = audit_dataset(dataset)
    real, reads, armed = Dataset.load, [], [True]

    def load(self, record, whole=False):
        reads.append(record.path)
        if armed[0] and len(reads) == 11:  # a kill while the 11th image is read
            raise KeyboardInterrupt
        return real(self, record, whole)

    monkeypatch.setattr(Dataset, "load", load)
    work = tmp_path / "work"
    with pytest.raises(KeyboardInterrupt):
        audit_dataset(dataset, work=work)
    assert len((work / "read.jsonl").read_text().splitlines()) == 8  # flushed after 4 and 8
    with open(work / "read.jsonl", "a") as fh:
        fh.write('{"size": "64x')  # a line torn by the kill
    reads.clear()
    armed[0] = False
    said = []
    resumed, _ = audit_dataset(dataset, work=work, log=said.append)
    assert said == [f"resuming the audit: 8 of {len(dataset.records)} images were read"]
    first_pass = reads[: len(dataset.records) - 8]
    assert first_pass == [r.path for r in dataset.records[8:]]  # the first 8 not read again
    assert resumed == uninterrupted and not work.exists()


def test_a_work_folder_of_another_listing_is_not_resumed(class_tree, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "state.json").write_text('{"fingerprint": "another"}')
    (work / "read.jsonl").write_text('{"size": "1x1", "digest": "00"}\n' * 3)
    said = []
    audit, _ = audit_dataset(open_dataset(class_tree), work=work, log=said.append)
    assert said == [] and audit["n_images"] == 24


def test_an_audit_killed_in_the_duplicate_search_keeps_the_stages_it_finished(
    with_duplicates, tmp_path, monkeypatch
):
    from marrowdiff.data.datasets import Dataset

    dataset = open_dataset(with_duplicates)
    n = len(dataset.records)
    real, reads, armed = Dataset.load, [], [False]

    def load(self, record, whole=False):
        reads.append(record.path)
        if armed[0] and len(reads) == n + 1:  # the first image the verification reads again
            raise KeyboardInterrupt
        return real(self, record, whole)

    monkeypatch.setattr(Dataset, "load", load)
    uninterrupted, _ = audit_dataset(dataset)
    verifying = len(reads) - n  # what the last stage reads
    reads.clear()
    armed[0] = True
    work = tmp_path / "work"
    with pytest.raises(KeyboardInterrupt):
        audit_dataset(dataset, work=work)
    assert {p.name for p in work.glob("*.npy")} == {"thumbnails.npy", "neighbours.npy",
                                                   "candidates.npy"}  # fmt: skip
    reads.clear()
    armed[0] = False
    resumed, _ = audit_dataset(dataset, work=work, log=lambda m: None)
    assert len(reads) == verifying  # no image read for the pass or the first two stages
    assert resumed == uninterrupted and not work.exists()
