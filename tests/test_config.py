import pytest

from marrowdiff.config import PRESETS, load_config


def test_paper_preset_is_the_papers_setting():
    paper = load_config("paper")
    assert paper.model.name == "vgg16" and paper.model.input_size == 96
    assert paper.train.recipe == "augmented+oversampled-600"
    assert paper.train.epochs == 150 and paper.train.batch_size == 40
    assert paper.train.optimizer == "sgd" and paper.train.colour == "yuv"
    assert not paper.model.pretrained


def test_toml_overrides_a_preset_then_keywords(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(
        'base = "paper"\n[train]\nepochs = 20\nclasses = ["a", "b"]\n[model]\nwidth = 0.5\n'
    )
    config = load_config(path, train__lr=0.5)
    assert config.train.epochs == 20 and config.model.width == 0.5
    assert config.train.classes == ("a", "b") and config.train.lr == 0.5
    assert config.train.recipe == "augmented+oversampled-600"  # from the base preset


@pytest.mark.parametrize(
    "text, fragment",
    [("[trian]\nepochs = 2\n", "unknown section"), ("[train]\nepoch = 2\n", "unknown TrainConfig")],
)
def test_config_file_typos_are_named(tmp_path, text, fragment):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=fragment):
        load_config(path)


def test_every_preset_round_trips():
    for config in PRESETS.values():
        assert type(config).from_dict(config.to_dict()) == config


def test_a_toml_extra_table_adds_to_the_presets(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text("[model]\nextra = {fc_dropout = 0.1}\n")
    config = load_config(path)
    assert config.model.extra == PRESETS["default"].model.extra | {"fc_dropout": 0.1}
