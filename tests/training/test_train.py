"""Training end to end on tiny synthetic data: a narrow VGG, a few epochs, seconds."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from marrowdiff import run
from marrowdiff.config import load_config
from marrowdiff.data.datasets import open_dataset
from marrowdiff.data.splits import Splits, splits_for_run
from marrowdiff.inference.predict import load_model
from marrowdiff.run import CheckpointError, load_checkpoint
from marrowdiff.training.epoch import apply_gains, jitter_gains
from marrowdiff.training.train import FitOptions, fit


def _config(epochs=3):
    config = load_config("quick", train__epochs=epochs)
    return replace(
        config,
        model=replace(config.model, input_size=32),
        geometry=replace(config.geometry, input_size=32),
    )


def test_fit_writes_a_self_describing_checkpoint(easy_data, tmp_path):
    dataset = open_dataset(easy_data)
    splits = splits_for_run(dataset, tmp_path / "run", log=lambda m: None)
    final = fit(_config(), dataset, splits, tmp_path / "run", log=lambda m: None)
    assert len(final["history"]) == 3
    assert final["history"][-1]["train_loss"] < final["history"][0]["train_loss"]  # it learns
    for name in (run.MODEL, run.LAST, run.HISTORY, run.CURVES, run.CONFIG, Splits.FILE):
        assert (tmp_path / "run" / name).is_file(), name
    state = torch.load(tmp_path / "run" / run.MODEL, weights_only=True)
    assert state["classes"] == ["metamyelocyte", "band_neutrophil", "segmented_neutrophil"]
    assert state["normalisation"]["colour"] == "yuv"
    assert state["vocabulary"]["name"] == "choi2017"
    assert set(state["config"]) == {"model", "geometry", "train"}
    assert "optimizer" not in state  # the deployable file holds no training state
    model = load_model(tmp_path / "run")
    images = [dataset.load(r) for r in dataset.records[:4]]
    proba = model.proba(images)
    assert proba.shape == (4, 3) and np.allclose(proba.sum(1), 1)
    assert np.allclose(model.proba(images, tta=True).sum(1), 1)


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_resume_after_a_kill_matches_an_uninterrupted_run(easy_data, tmp_path, ema):
    dataset = open_dataset(easy_data)
    splits = splits_for_run(dataset, tmp_path / "a", log=lambda m: None)
    config = replace(_config(3), train=replace(_config(3).train, ema=ema))
    full = fit(config, dataset, splits, tmp_path / "a", log=lambda m: None)
    assert (
        fit(config, dataset, splits, tmp_path / "b", log=lambda m: None, stop_after=2) is None
    )  # killed after epoch 2
    assert not (tmp_path / "b" / run.MODEL).exists()
    state = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert state["epoch"] == 2 and ("averaged" in state) == bool(ema)
    resumed = fit(
        config, dataset, splits, tmp_path / "b", FitOptions(resume=True), log=lambda m: None
    )
    if ema:  # the model kept is the average, not the last step's weights
        last = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["state_dict"]
        assert any(not torch.equal(v, full["state_dict"][k]) for k, v in last.items())

    def drop_time(rows):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]

    assert drop_time(resumed["history"]) == drop_time(full["history"])
    for key, value in full["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key


def test_checkpoint_errors_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="marrowdiff train"):
        load_checkpoint(tmp_path)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a marrowdiff checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


@pytest.mark.slow
def test_cli_trains_resumes_a_finished_run_and_refuses_another_schedule(
    easy_data, tmp_path, capsys
):
    from marrowdiff.cli import main

    run_dir = tmp_path / "run"
    train = ["train", str(easy_data), "--out", str(run_dir), "--config", "quick", "--recipe",
             "original"]  # fmt: skip
    assert main([*train, "--epochs", "1"]) == 0
    assert (run_dir / run.MODEL).is_file() and (run_dir / Splits.FILE).is_file()
    assert main([*train, "--epochs", "1", "--resume"]) == 0  # finished: nothing more to do
    assert len(load_checkpoint(run_dir).state["history"]) == 1
    assert main([*train, "--epochs", "2", "--resume"]) == 2  # another schedule: refused
    assert "train.epochs: 1 -> 2" in capsys.readouterr().err


def test_colour_jitter_scales_each_image_within_its_amount_and_zero_turns_it_off():
    generator = torch.Generator().manual_seed(0)
    assert jitter_gains(4, 0.0, generator) is None  # the paper preset: no jitter
    x = torch.full((4, 3, 2, 2), 100, dtype=torch.uint8)
    assert torch.equal(apply_gains(x, None), x)
    gains = jitter_gains(4, 0.1, generator)
    assert gains.shape == (4, 3, 1, 1) and ((gains >= 0.9) & (gains <= 1.1)).all()
    assert len(set(gains.flatten().tolist())) == 12  # per image and channel
    assert torch.equal(apply_gains(x, gains), (100 * gains).round().to(torch.uint8).expand(x.shape))


def test_colour_jitter_changes_what_the_model_learns(easy_data, tmp_path):
    dataset = open_dataset(easy_data)
    splits = splits_for_run(dataset, tmp_path / "s", log=lambda m: None)
    weights = {}
    for name, jitter in (("off", 0.0), ("off-again", 0.0), ("on", 0.2)):
        config = _config(epochs=1)
        config = replace(config, train=replace(config.train, colour_jitter=jitter))
        weights[name] = fit(config, dataset, splits, tmp_path / name, log=lambda m: None)[
            "state_dict"
        ]
    same = [torch.equal(v, weights["off-again"][k]) for k, v in weights["off"].items()]
    changed = [not torch.equal(v, weights["on"][k]) for k, v in weights["off"].items()]
    assert all(same) and any(changed)


def test_resume_with_other_settings_is_refused_naming_them(easy_data, tmp_path):
    dataset = open_dataset(easy_data)
    splits = splits_for_run(dataset, tmp_path / "r", log=lambda m: None)
    config = _config(3)
    assert fit(config, dataset, splits, tmp_path / "r", log=lambda m: None, stop_after=1) is None
    faster = replace(config, train=replace(config.train, lr=0.5))
    with pytest.raises(CheckpointError, match=r"train\.lr: 0\.002 -> 0\.5"):
        fit(faster, dataset, splits, tmp_path / "r", FitOptions(resume=True), log=lambda m: None)
    assert not (tmp_path / "r" / run.MODEL).exists()  # nothing was trained on the mix
    resumed = fit(
        config, dataset, splits, tmp_path / "r", FitOptions(resume=True), log=lambda m: None
    )
    assert resumed["config"]["train"]["lr"] == 0.002 and len(resumed["history"]) == 3


def test_fit_learns_from_two_data_sets_and_coarse_labels(easy_data, pbc_like, tmp_path):
    from marrowdiff.training.cells import Source

    quiet = lambda m: None  # noqa: E731
    dataset = open_dataset(easy_data, "marrow14")  # folders 7, 8, 9: the archive's classes
    splits = splits_for_run(dataset, tmp_path / "run", log=quiet)
    other = open_dataset(pbc_like[0], str(pbc_like[1]))
    assert {r.label for r in other.records} == {
        "metamyelocyte",
        "immature_granulocyte",
        "band_neutrophil",
    }
    other_splits = splits_for_run(other, tmp_path / "other", log=quiet)
    notes = []
    final = fit(
        _config(2),
        dataset,
        splits,
        tmp_path / "run",
        FitOptions(also=(Source(other, other_splits, weight=0.5),)),
        log=notes.append,
    )
    # IG brings its members: promyelocyte and myelocyte are learned from coarse labels only
    assert final["classes"] == [
        "promyelocyte",
        "myelocyte",
        "metamyelocyte",
        "band_neutrophil",
        "segmented_neutrophil",
    ]
    assert any("promyelocyte, myelocyte learned from coarse labels only" in n for n in notes)
    (source,) = final["also"]
    assert source["weight"] == 0.5 and source["fingerprint"] == other.fingerprint
    assert source["n_train"] == len(other_splits.fold(0)[0])
    assert final["data"]["n_train"] == len(splits.fold(0)[0])  # the run's own cells
    # resuming with another weight is refused: the weights came from the first
    with pytest.raises(CheckpointError, match="also"):
        fit(
            _config(3),
            dataset,
            splits,
            tmp_path / "run",
            FitOptions(also=(Source(other, other_splits, weight=1.0),), resume=True),
            log=quiet,
        )


def test_each_data_set_is_drawn_by_its_weight(easy_data, pbc_like, tmp_path):
    from marrowdiff.labels import LabelSpace
    from marrowdiff.training.cells import SplitData
    from marrowdiff.training.recipes import get_recipe

    space = LabelSpace.of(open_dataset(easy_data, "marrow14").vocabulary, ["a"], [])
    labels = np.array([0] * 30 + [0] * 50)
    data = SplitData([], labels, None, space, ((0, 30, 1.0), (30, 80, 0.5)))
    recipe = get_recipe("balanced-random")  # 100 draws per label and epoch
    items = data.items(recipe, _config().geometry, seed=0, epoch=0)
    own = (items[:, 0] < 30).sum()
    assert own == 100 and len(items) - own == 50  # the second at half the draws
    assert np.array_equal(items, data.items(recipe, _config().geometry, seed=0, epoch=0))


def test_init_copies_weights_and_matches_output_rows_by_class(easy_data, tmp_path):
    from marrowdiff.models import build_model
    from marrowdiff.training.pretrained import initialise, output_layer

    quiet = lambda m: None  # noqa: E731
    dataset = open_dataset(easy_data)
    splits = splits_for_run(dataset, tmp_path / "run", log=quiet)
    fit(_config(1), dataset, splits, tmp_path / "run", log=quiet)
    trained = load_checkpoint(tmp_path / "run").state["state_dict"]
    # a model of other classes, in another order: two shared, one new
    config = _config(1)
    classes = ["segmented_neutrophil", "myeloblast", "metamyelocyte"]
    module = build_model(replace(config.model, num_classes=3))
    head = output_layer(module) + ".weight"
    fresh = module.state_dict()[head].clone()
    record = initialise(module, tmp_path / "run", classes, log=quiet)
    state = module.state_dict()
    assert torch.equal(state[head][0], trained[head][2])  # segmented: row 2 there
    assert torch.equal(state[head][2], trained[head][0])  # metamyelocyte: row 0 there
    assert torch.equal(state[head][1], fresh[1])  # myeloblast: not learned there, kept fresh
    assert torch.equal(state["features.0.weight"], trained["features.0.weight"])
    assert record["classes"] == ["metamyelocyte", "band_neutrophil", "segmented_neutrophil"]
    other = build_model(replace(load_config("default").model, num_classes=3, pretrained=False))
    with pytest.raises(CheckpointError, match="pre-train with the same --config"):
        initialise(other, tmp_path / "run", classes, log=quiet)


def test_fp16_trains_with_a_gradient_scaler_and_resumes_it(easy_data, tmp_path):
    from marrowdiff.distributed.runtime import Runtime, resolve_precision

    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    quiet = lambda m: None  # noqa: E731
    dataset = open_dataset(easy_data)
    splits = splits_for_run(dataset, tmp_path / "run", log=quiet)
    runtime = Runtime(precision="fp16")
    config = _config(2)  # every image once an epoch: fp16 on a CPU is slow, and this is enough
    config = replace(config, train=replace(config.train, recipe="original"))
    fit(config, dataset, splits, tmp_path / "run", log=quiet, runtime=runtime, stop_after=1)
    last = torch.load(tmp_path / "run" / run.LAST, weights_only=True)
    assert last["scaler"]["scale"] > 0  # the scaler's state is resumable
    final = fit(config, dataset, splits, tmp_path / "run", FitOptions(resume=True), log=quiet,
                runtime=runtime)  # fmt: skip
    assert final["runtime"]["precision"] == "fp16"
    assert all(np.isfinite(row["train_loss"]) for row in final["history"])


@pytest.mark.slow  # dynamo's first trace takes 10-20 s
def test_compile_trains_the_same_weights_and_saves_a_plain_model(easy_data, tmp_path, monkeypatch):
    import functools

    from marrowdiff.distributed.runtime import Runtime

    # the "eager" backend runs the traced graph op by op: the plumbing is tested (what is
    # wrapped, what is saved), not the compiler, which needs a C++ toolchain and minutes
    compiled = []
    real = torch.compile

    def eager(model, **kw):
        compiled.append(model)
        return real(model, backend="eager", **kw)

    monkeypatch.setattr(torch, "compile", functools.partial(eager))
    quiet = lambda m: None  # noqa: E731
    dataset = open_dataset(easy_data)
    splits = splits_for_run(dataset, tmp_path / "plain", log=quiet)
    fit(_config(1), dataset, splits, tmp_path / "plain", log=quiet)
    assert not compiled
    final = fit(_config(1), dataset, splits, tmp_path / "fast", log=quiet,
                runtime=Runtime(compile=True))  # fmt: skip
    assert len(compiled) == 1 and final["runtime"]["compile"] is True
    plain = load_checkpoint(tmp_path / "plain").state["state_dict"]
    fast = load_checkpoint(tmp_path / "fast").state["state_dict"]
    assert list(fast) == list(plain)  # no "_orig_mod." prefixes: a plain model file
    for name in plain:
        torch.testing.assert_close(fast[name], plain[name], rtol=1e-5, atol=1e-6)
    load_model(tmp_path / "fast")  # and it loads as any model does


def test_a_config_file_lists_the_other_data_sets(easy_data, pbc_like, tmp_path, capsys):
    from marrowdiff.cli import main

    root, vocab = pbc_like
    config = tmp_path / "joint.toml"
    config.write_text(
        'base = "quick"\n[model]\ninput_size = 32\n[geometry]\ninput_size = 32\n'
        f'[[also]]\ndata = "{root.name}"\nvocab = "{vocab.name}"\nweight = 0.25\n'
    )  # paths relative to the file
    train = ["train", str(easy_data), "--vocab", "marrow14", "--out", str(tmp_path / "run"),
             "--config", str(config), "--epochs", "1"]  # fmt: skip
    assert main(train) == 0
    (source,) = load_checkpoint(tmp_path / "run").state["also"]
    assert source["weight"] == 0.25 and source["vocabulary"] == "pbc-like"
    assert main([*train, "--also", str(root)]) == 2  # both ways at once: refused
    assert "use one or the other" in capsys.readouterr().err
    config.write_text(config.read_text().replace("0.25", "0"))
    assert main(train) == 2  # a weight of 0 would still draw: refused, naming the data set
    assert f"{root.name}: weight 0.0; give a weight above 0" in capsys.readouterr().err


def test_a_class_list_that_cannot_train_is_a_sentence_not_a_traceback(easy_data, tmp_path, capsys):
    from marrowdiff.cli import main

    train = ["train", str(easy_data), "--out", str(tmp_path / "run"), "--config", "quick",
             "--epochs", "1"]  # fmt: skip
    assert main([*train, "--classes", "myeloblast,no_such"]) == 2
    assert "are not fine classes of vocabulary 'choi2017'" in capsys.readouterr().err
    assert main([*train, "--classes", "myeloblast,band_neutrophil"]) == 2  # no myeloblast here
    assert "no training images of class(es) myeloblast" in capsys.readouterr().err
