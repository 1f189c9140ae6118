import json

import pytest

from marrowdiff.classes import (
    Vocabulary,
    VocabularyError,
    builtin_vocabularies,
    infer_vocabulary,
    load_vocabulary,
)


def test_choi2017_maps_archive_folders_to_paper_classes():
    vocab = load_vocabulary("choi2017")
    assert "choi2017" in builtin_vocabularies()
    assert len(vocab) == 10
    assert [vocab.resolve(str(k)) for k in range(10)] == list(vocab.codes)
    assert [vocab.resolve(f"C{k}") for k in range(1, 11)] == list(vocab.codes)
    assert vocab.resolve("0") == "pronormoblast"
    assert vocab.resolve("9") == "segmented_neutrophil"
    assert [c.lineage for c in vocab.classes] == ["erythroid"] * 4 + ["myeloid"] * 6
    assert vocab.resolve("Band Neutrophil") == vocab.resolve("band-neutrophil") == "band_neutrophil"


def test_unknown_labels_are_listed_in_one_error():
    vocab = load_vocabulary()
    with pytest.raises(VocabularyError) as err:
        vocab.map_labels(["0", "plasma cell", "lymphocyte", "plasma cell"], where="x.csv")
    message = str(err.value)
    assert "'lymphocyte'" in message and "'plasma cell'" in message and "x.csv" in message
    assert "--vocab" in message


def test_user_vocabulary_from_toml_and_json(tmp_path):
    toml = tmp_path / "pb.toml"
    toml.write_text(
        'name = "pb"\n'
        '[[classes]]\ncode = "lymphocyte"\nlineage = "lymphoid"\naliases = ["LY"]\n'
        '[[classes]]\ncode = "plasma_cell"\nlineage = "lymphoid"\norder = 3\n'
        '[[classes]]\ncode = "monocyte"\nlineage = "myeloid"\n'
    )
    vocab = load_vocabulary(toml)
    assert vocab.codes == ("lymphocyte", "plasma_cell", "monocyte")
    assert vocab.map_labels(["LY", "Plasma cell"]) == ["lymphocyte", "plasma_cell"]
    as_json = tmp_path / "pb.json"
    as_json.write_text(json.dumps(vocab.to_dict()))
    assert load_vocabulary(as_json) == vocab
    assert Vocabulary.from_dict(vocab.to_dict()) == vocab


@pytest.mark.parametrize(
    "text, fragment",
    [
        (
            '[[classes]]\ncode = "a"\naliases = ["x"]\n[[classes]]\ncode = "b"\naliases = ["x"]\n',
            "names both",
        ),
        ('[[classes]]\ncode = "a"\nlineage = "plasma"\n', "lineage"),
        ("classes = []\n", "no classes"),
        ('[[classes]]\nname = "no code"\n', "code"),
        ("this is not toml = = =", "cannot parse"),
    ],
)
def test_bad_vocabulary_files_name_the_problem(tmp_path, text, fragment):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(VocabularyError, match=fragment):
        load_vocabulary(path)


def test_missing_vocabulary_file():
    with pytest.raises(VocabularyError, match="neither a built-in"):
        load_vocabulary("no/such/vocab.toml")


def test_adjacent_stages():
    vocab = load_vocabulary()
    assert vocab.adjacent("band_neutrophil", "segmented_neutrophil")
    assert vocab.adjacent("myeloblast", "myeloblast")
    assert not vocab.adjacent("myeloblast", "myelocyte")
    assert not vocab.adjacent("orthochromatic_normoblast", "myeloblast")  # across lineages
    inferred = infer_vocabulary(["b", "a"])
    assert not inferred.adjacent("a", "b")  # "other" has no maturation order


def test_infer_vocabulary_orders_numeric_labels_numerically():
    assert infer_vocabulary(["10", "9", "1"]).codes == ("1", "9", "10")


def test_a_vocabulary_template_reads_back_as_the_same_vocabulary(tmp_path):
    from dataclasses import replace

    from marrowdiff.classes import vocabulary_template

    vocab = load_vocabulary("choi2017")
    tricky = replace(vocab.classes[0], name='Pro"normo\\blast, ü', aliases=("a'b", "tab\there"))
    vocab = replace(vocab, classes=(tricky, *vocab.classes[1:]), description='line\n"two"')
    path = tmp_path / "mine.toml"
    path.write_text(vocabulary_template(vocab), encoding="utf-8")
    assert load_vocabulary(path) == vocab


def test_a_cell_between_two_neighbouring_stages_is_a_coarse_label_of_both():
    vocabulary = load_vocabulary("choi2017")
    code = vocabulary.between("metamyelocyte", "myelocyte")
    assert code == "myelocyte|metamyelocyte"  # the less mature stage first
    assert vocabulary.resolve("Metamyelocyte|MYELOCYTE") == code  # any order, case, alias
    assert vocabulary[code].coarse and vocabulary.members_of(code) == ("myelocyte", "metamyelocyte")
    assert vocabulary[code].name == "between Myelocyte and Metamyelocyte"
    assert vocabulary.map_labels(["C7|C8"]) == [code]
    for a, b in (("myeloblast", "myelocyte"), ("pronormoblast", "myeloblast"), ("myelocyte",) * 2):
        with pytest.raises(VocabularyError, match="not neighbouring stages"):
            vocabulary.between(a, b)
    assert vocabulary.resolve("myeloblast|myelocyte") is None  # not a label: said as unknown
    with pytest.raises(VocabularyError, match="not in vocabulary"):
        vocabulary.map_labels(["myeloblast|myelocyte"])
