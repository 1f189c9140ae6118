import gzip
import hashlib
import zipfile

import pytest

from marrowdiff.data.datasets import DatasetError, open_dataset
from marrowdiff.data.public import ChecksumError, PublicArchive, fetch

from ..conftest import encode


@pytest.fixture
def tiny_archive(tmp_path, cells):
    source = tmp_path / "published.zip"
    with zipfile.ZipFile(source, "w") as zf:
        for k, cell in enumerate(cells(4)):
            zf.writestr(f"{k % 2}/{k}.png", encode(cell))
    data = source.read_bytes()
    return source, PublicArchive(
        name="tiny",
        url=source.as_uri(),
        filename="tiny.zip",
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        vocabulary="choi2017",
        citation="test",
    )


def test_fetch_downloads_and_verifies(tiny_archive, tmp_path):
    source, archive = tiny_archive
    target = fetch(archive, tmp_path / "cache", progress=False)  # through urllib, file:// URL
    assert target.read_bytes() == source.read_bytes()
    assert len(open_dataset(target)) == 4
    assert fetch(archive, tmp_path / "cache", progress=False) == target  # already there: no-op
    copy = fetch(archive, tmp_path / "other", from_file=source, progress=False)
    assert copy.read_bytes() == source.read_bytes()


def test_fetch_checksum_mismatch_leaves_nothing(tiny_archive, tmp_path):
    source, archive = tiny_archive
    bad = tmp_path / "tampered.zip"
    bad.write_bytes(source.read_bytes()[:-10])
    with pytest.raises(ChecksumError, match="does not match"):
        fetch(archive, tmp_path / "cache", from_file=bad, progress=False)
    assert list((tmp_path / "cache").iterdir()) == []  # no partial file left behind


def test_fetch_unreachable_address_says_what_to_do(tiny_archive, tmp_path):
    _, archive = tiny_archive
    with pytest.raises(DatasetError, match="--from FILE"):
        fetch(archive, tmp_path / "cache", url=(tmp_path / "nowhere.zip").as_uri(), progress=False)


@pytest.fixture
def by_manifest(tmp_path, cells):
    """A data set checked image by image: a published zip in the PBC layout (prefix labels)
    wrapped in an outer zip as Mendeley serves it, and a manifest of 4 of its 5 images."""
    images = {
        f"PBC/ig/{name}.jpg": encode(cell)
        for name, cell in zip(["MY_1", "PMY_2", "IG_3", "MMY_4", "MY_5"], cells(5), strict=True)
    }
    inner = tmp_path / "PBC.zip"
    with zipfile.ZipFile(inner, "w") as z:
        for path, data in images.items():
            z.writestr(path, data)
    outer = tmp_path / "download.zip"
    with zipfile.ZipFile(outer, "w") as z:
        z.write(inner, "PBC.zip")
    kept = sorted(images)[:4]
    manifest = tmp_path / "manifest.tsv.gz"
    rows = ["path\tbytes\tsha256"] + [
        f"{p}\t{len(images[p])}\t{hashlib.sha256(images[p]).hexdigest()}" for p in kept
    ]
    manifest.write_bytes(gzip.compress("\n".join(rows).encode()))
    archive = PublicArchive(
        name="pbc-like",
        url=outer.as_uri(),
        filename="pbc.zip",
        sha256="",
        size=0,
        vocabulary="pbc",
        citation="test",
        manifest=str(manifest),
    )
    return archive, images, kept, inner


def test_fetch_by_manifest_keeps_the_verified_images_in_the_published_layout(by_manifest, tmp_path):
    archive, images, kept, inner = by_manifest
    target = fetch(archive, tmp_path / "data", progress=False)  # download: a zip in a zip
    with zipfile.ZipFile(target) as z:
        assert sorted(z.namelist()) == kept  # the image outside the manifest is not kept
        assert all(z.read(p) == images[p] for p in kept)
    dataset = open_dataset(target, "pbc")
    assert sorted(r.label for r in dataset.records) == [
        "immature_granulocyte",
        "metamyelocyte",
        "myelocyte",
        "myelocyte",
    ]  # IG_3, MMY_4, MY_1, MY_5: the label is the file-name prefix
    assert fetch(archive, tmp_path / "data", progress=False) == target  # verified: no-op
    # a local copy in a mirror's layout (other folders, same file names) is found by name
    mirror = tmp_path / "mirror"
    for path, data in images.items():
        out = mirror / "wbc" / path.split("/")[1] / path.split("/")[2]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
    copy = fetch(archive, tmp_path / "other", from_file=mirror, progress=False)
    assert copy.read_bytes() == target.read_bytes()


def test_fetch_by_manifest_refuses_an_altered_or_missing_image(by_manifest, tmp_path):
    archive, images, kept, inner = by_manifest
    altered = tmp_path / "altered.zip"
    with zipfile.ZipFile(altered, "w") as z:
        for path, data in images.items():
            z.writestr(path, data[:-1] + b"x" if path == kept[1] else data)
    with pytest.raises(ChecksumError, match=f"not the published image {kept[1]}"):
        fetch(archive, tmp_path / "data", from_file=altered, progress=False)
    assert not (tmp_path / "data" / "pbc.zip").exists()
    short = tmp_path / "short.zip"
    with zipfile.ZipFile(short, "w") as z:
        z.writestr(kept[0], images[kept[0]])
    with pytest.raises(ChecksumError, match="3 of the 4 images"):
        fetch(archive, tmp_path / "data", from_file=short, progress=False)
    assert not (tmp_path / "data" / "pbc.zip").exists()
