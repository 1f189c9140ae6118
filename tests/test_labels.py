"""Coarse labels: the label space, the set-valued loss and scoring against known answers."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from marrowdiff.classes import VocabularyError, load_vocabulary
from marrowdiff.labels import LabelSpace, fine_classes, set_loss


def test_the_set_loss_of_one_class_is_label_smoothed_cross_entropy():
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    sets = F.one_hot(y, 5).bool()
    for eps in (0.0, 0.1):
        expected = F.cross_entropy(logits, y, label_smoothing=eps, reduction="sum")
        assert torch.allclose(set_loss(logits, sets, eps), expected, atol=1e-5)


def test_the_set_loss_is_the_negative_log_of_the_mass_on_the_set():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    sets = torch.tensor([[False, True, True]])
    assert set_loss(logits, sets).item() == pytest.approx(-np.log(0.5))
    # all mass inside the set: nothing to learn, whichever member holds it
    inside = torch.log(torch.tensor([[1e-9, 0.9, 0.1]]))
    assert set_loss(inside, sets).item() == pytest.approx(0.0, abs=1e-6)


def test_marrow14_reads_pbc_prefixes_and_coarse_labels():
    pbc = load_vocabulary("pbc")
    assert pbc.label_from == "filename-prefix" and pbc.crop == pytest.approx(0.42)
    assert len(pbc.fine_codes) == 18  # 14 counted types; platelet, red cell, smudge, debris
    assert [c for c in pbc.fine_codes if not pbc.counted(c)] == [
        "platelet",
        "red_cell",
        "cell_part",
        "artefact",
    ]
    prefixes = ("PMY", "MY", "MMY", "IG", "BNE", "SNE", "ERB", "PLATELET")
    assert [pbc.resolve(p) for p in prefixes] == [
        "promyelocyte",
        "myelocyte",
        "metamyelocyte",
        "immature_granulocyte",
        "band_neutrophil",
        "segmented_neutrophil",
        "erythroblast",
        "platelet",
    ]
    assert pbc.members_of("erythroblast") == (
        "pronormoblast",
        "basophilic_normoblast",
        "polychromatic_normoblast",
        "orthochromatic_normoblast",
    )
    assert not pbc.counted("platelet") and pbc.counted("monocyte")
    marrow = load_vocabulary("marrow14")
    assert marrow.resolve("0") == "pronormoblast" and marrow.resolve("9") == "segmented_neutrophil"
    assert not marrow.adjacent("segmented_neutrophil", "eosinophil")  # outside the sequence


def test_a_coarse_class_must_list_fine_classes():
    from marrowdiff.classes import Vocabulary

    data = {"classes": [{"code": "a"}, {"code": "ab", "members": ["a", "b"]}]}
    with pytest.raises(VocabularyError, match=r"member\(s\) \['b'\]"):
        Vocabulary.from_dict(data)


def test_the_label_space_puts_classes_first_and_scores_sets():
    v = load_vocabulary("marrow14")
    codes = ["myelocyte", "immature_granulocyte", "erythroblast", "band_neutrophil"]
    classes = fine_classes(v, codes)
    # a coarse label brings its members; the erythroblast brings the four normoblast stages
    assert classes == [
        "pronormoblast",
        "basophilic_normoblast",
        "polychromatic_normoblast",
        "orthochromatic_normoblast",
        "promyelocyte",
        "myelocyte",
        "metamyelocyte",
        "band_neutrophil",
    ]
    space = LabelSpace.of(v, classes, codes)
    y = space.encode(codes)
    assert y.tolist() == [5, 8, 9, 7]  # fine labels keep their class index
    assert space.fine(y).tolist() == [True, False, False, True]
    pred = np.array([5, 6, 0, 6])  # right, in the IG set, in the erythroblast set, wrong
    assert space.hit(y, pred).tolist() == [True, True, True, False]
    # a local model of two classes cannot score a coarse label that reaches outside it
    local = LabelSpace.of(v, ["myelocyte", "metamyelocyte"], codes)
    assert "immature_granulocyte" not in local


def test_coarse_cells_are_scored_by_their_set():
    from marrowdiff.evaluation.evaluate import coarse_metrics

    v = load_vocabulary("marrow14")
    classes = ["promyelocyte", "myelocyte", "metamyelocyte", "band_neutrophil"]
    space = LabelSpace.of(v, classes, ["immature_granulocyte"])
    ig = space.labels.index("immature_granulocyte")
    labels = np.array([ig, ig, ig, ig])
    pred = np.array([0, 1, 2, 3])  # three inside the set, one a band neutrophil
    out = coarse_metrics(space, labels, pred)
    assert out == {
        "n": 4,
        "accuracy": 0.75,
        "per_label": {"immature_granulocyte": {"n": 4, "accuracy": 0.75}},
    }
