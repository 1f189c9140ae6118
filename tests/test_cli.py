import json
import zipfile

import pytest

from marrowdiff.cli import main


def test_audit_then_split_from_the_command_line(with_duplicates, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["audit", str(with_duplicates), "--out", str(out)]) == 0
    assert "2 duplicate groups, 1 with conflicting labels" in capsys.readouterr().out
    assert (
        main(
            [
                "split",
                str(with_duplicates),
                "--out",
                str(out),
                "--audit",
                str(out / "audit.json"),
                "--test-folds",
                "3",
                "--folds",
                "3",
            ]
        )
        == 0
    )
    splits = json.loads((out / "splits.json").read_text())
    assert (
        splits["dataset"]["fingerprint"]
        == json.loads((out / "audit.json").read_text())["fingerprint"]
    )
    # the conflicting pair stays together in every split
    for side in [splits["test"], *(f[k] for f in splits["folds"] for k in ("train", "val"))]:
        assert ("0/cell.png" in side) == ("1/same-cell.png" in side)


def test_split_audits_on_the_fly_and_is_reproducible(class_tree, tmp_path):
    for k in (1, 2):
        assert main(["split", str(class_tree), "--out", str(tmp_path / f"s{k}")]) == 0
    assert (tmp_path / "s1" / "splits.json").read_bytes() == (
        tmp_path / "s2" / "splits.json"
    ).read_bytes()
    assert (tmp_path / "s1" / "audit.json").is_file()


def test_stale_audit_is_refused(class_tree, tmp_path, capsys):
    assert main(["audit", str(class_tree), "--out", str(tmp_path / "a")]) == 0
    (class_tree / "0" / "0.png").rename(class_tree / "0" / "renamed.png")
    assert (
        main(
            [
                "split",
                str(class_tree),
                "--out",
                str(tmp_path / "s"),
                "--audit",
                str(tmp_path / "a" / "audit.json"),
            ]
        )
        == 2
    )
    assert "run `marrowdiff audit` again" in capsys.readouterr().err


def test_errors_exit_2_with_a_message(tmp_path, capsys):
    assert main(["audit", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_fetch_from_a_local_copy_with_the_wrong_checksum(tmp_path, capsys):
    fake = tmp_path / "data_WBC_torch.zip"
    with zipfile.ZipFile(fake, "w") as zf:
        zf.writestr("0/1.jpg", b"x")
    assert main(["data", "fetch", "--to", str(tmp_path / "d"), "--from", str(fake)]) == 2
    assert "does not match the published" in capsys.readouterr().err
    assert not (tmp_path / "d" / "data_WBC_torch.zip").exists()


def test_vocab_init_and_show(tmp_path, cells, capsys):
    from .conftest import write_image

    for label, cell in zip(["lymphocyte", "monocyte"], cells(2), strict=True):
        write_image(tmp_path / "d" / label / "x.png", cell)
    vocab = tmp_path / "mine.toml"
    assert main(["vocab", "init", str(tmp_path / "d"), "--out", str(vocab)]) == 0
    assert main(["vocab", "show", str(vocab)]) == 0
    shown = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert [c["code"] for c in shown["classes"]] == ["lymphocyte", "monocyte"]
    assert (
        main(["audit", str(tmp_path / "d"), "--vocab", str(vocab), "--out", str(tmp_path / "a")])
        == 0
    )


def _subcommands(parser) -> set[str]:
    import argparse

    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(sub.choices)


def test_each_command_is_declared_by_the_stage_the_dispatch_table_names():
    from marrowdiff.cli import COMMANDS, build_parser

    assert _subcommands(build_parser()) == set(COMMANDS)
    for command in COMMANDS:  # only that stage is registered, and it declares the command
        assert command in _subcommands(build_parser(command))
        assert _subcommands(build_parser(command)) < set(COMMANDS)


def test_train_takes_every_registered_model_and_refuses_others(capsys):
    from marrowdiff.cli import build_parser
    from marrowdiff.models import MODELS

    for name in MODELS:
        assert build_parser("train").parse_args(["train", "d", "--out", "o", "--model", name])
    with pytest.raises(SystemExit):
        build_parser("train").parse_args(["train", "d", "--out", "o", "--model", "resnet"])
    assert "invalid choice: 'resnet'" in capsys.readouterr().err


def test_counting_with_an_onnx_model_never_imports_pytorch():
    import subprocess
    import sys

    code = (
        "import sys, marrowdiff.cli; "
        "[marrowdiff.cli.build_parser(c) for c in ('count', 'classify', 'data', 'audit')]; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_serve_binds_to_this_machine_by_default(tiny_run, tmp_path, monkeypatch):
    import uvicorn

    from marrowdiff.cli import main

    started = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.update(kw, app=app))
    assert main(["serve", "--model", str(tiny_run), "--data-dir", str(tmp_path / "d")]) == 0
    assert started["host"] == "127.0.0.1" and started["port"] == 8000
    assert (tmp_path / "d" / "marrowdiff.sqlite3").is_file()


def test_asking_for_a_gpu_that_is_not_there_is_a_clear_error(tiny_run, tmp_path, capsys):
    import torch

    from marrowdiff.cli import main

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    args = ["count", str(tiny_run), str(tmp_path), "--out", str(tmp_path / "o")]
    assert main([*args, "--device", "cuda"]) == 2
    assert "no CUDA device here; use --device cpu or auto" in capsys.readouterr().err


def test_a_file_name_that_is_not_utf8_is_audited_and_split(class_tree, tmp_path, capsys):
    import os

    from marrowdiff.cli import main

    os.rename(class_tree / "0" / "0.png", os.path.join(bytes(class_tree / "0"), b"\xff-cell.png"))
    assert main(["split", str(class_tree), "--out", str(tmp_path / "s"), "--test-folds", "3",
                 "--folds", "2"]) == 0  # fmt: skip
    splits = json.loads((tmp_path / "s" / "splits.json").read_text(encoding="utf-8"))
    assert b"0/\xff-cell.png".decode("utf-8", "surrogateescape") in splits["labels"]


def test_a_wrong_class_option_is_refused_before_any_work(tiny_run, tmp_path, capsys, monkeypatch):
    import marrowdiff.counting.count as count
    from marrowdiff.cli import main

    monkeypatch.setattr(count, "count_fields", lambda *a, **k: pytest.fail("counted anyway"))
    argv = [
        "count",
        str(tiny_run),
        str(tmp_path),
        "--out",
        str(tmp_path / "o"),
        "--myeloid",
        "blasts",
    ]
    assert main(argv) == 2
    assert "--myeloid names ['blasts'], not classes of vocabulary" in capsys.readouterr().err


def test_fetch_from_a_missing_copy_names_it(tmp_path, capsys):
    from marrowdiff.cli import main

    missing = tmp_path / "nowhere.zip"
    assert main(["data", "fetch", "--to", str(tmp_path / "d"), "--from", str(missing)]) == 2
    assert f"--from {missing}: no such file" in capsys.readouterr().err


def test_accounts_from_the_command_line_then_serving_the_laboratory(
    tiny_run, tmp_path, monkeypatch, capsys
):
    import io

    import uvicorn

    started = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.update(kw, app=app))
    data = ["--data-dir", str(tmp_path / "d")]
    serve = ["serve", "--model", str(tiny_run), "--host", "0.0.0.0", *data]
    assert main(serve) == 2  # no accounts: this machine only
    assert "without accounts would let anyone" in capsys.readouterr().err and not started

    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery\n"))
    assert main(["users", "add", "Zoë", "--role", "signer", "--password-stdin", *data]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["users", "add", "Bo", "--role", "reviewer", "--password-stdin", *data]) == 2
    assert "at least 10 characters" in capsys.readouterr().err
    assert main(["users", "list", *data]) == 0
    assert capsys.readouterr().out == "Zoë\tsigner\n"

    assert main(serve) == 2  # every address: which names will clients use?
    assert "--allowed-host" in capsys.readouterr().err and not started
    assert main([*serve, "--allowed-host", "marrow.lab.example"]) == 0
    assert started["host"] == "0.0.0.0"
    app = started["app"]
    assert app.state.accounts.users()[0].name == "Zoë"
    assert main(["users", "remove", "Zoë", *data]) == 0
    assert main(["users", "remove", "Zoë", *data]) == 2
    assert "no user 'Zoë'" in capsys.readouterr().err


def test_every_option_says_what_it_does_and_its_default():
    import argparse

    from marrowdiff.cli import build_parser

    def actions(parser, path=()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from actions(sub, (*path, name))
            elif action.dest != "help":
                yield " ".join(path), action

    for command, action in actions(build_parser()):
        where = f"{command} {action.option_strings or action.dest}"
        assert action.help, f"{where}: no help text"
        if action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS):
            assert "default" in action.help, f"{where}: its default is not shown"


def test_nothing_readable_is_not_a_success_and_missing_files_are_named(tmp_path, capsys):
    for label in "01":
        (tmp_path / "d" / label).mkdir(parents=True)
        (tmp_path / "d" / label / "x.png").write_bytes(b"not an image")
    assert main(["audit", str(tmp_path / "d"), "--out", str(tmp_path / "a")]) == 1
    assert "no image could be read" in capsys.readouterr().out
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\nmissing1.png,0\nmissing2.png,1\n")
    assert main(["audit", str(manifest), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "missing1.png: line 2: file not found; missing2.png: line 3: file not found" in err


def test_output_piped_into_a_reader_that_stops_early_is_not_a_traceback():
    """`marrowdiff vocab show marrow14 | head -1`: the reader closes the pipe first."""
    import subprocess
    import sys

    run = subprocess.Popen(
        [sys.executable, "-m", "marrowdiff", "vocab", "show", "marrow14"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    run.stdout.close()  # before the command has written a byte (it takes a while to start)
    err = run.stderr.read().decode()
    assert run.wait(timeout=60) == 0 and "Traceback" not in err, err
