"""The `marrowdiff` command: dispatch only. Each stage declares its own subcommands beside the
functions they call (`<stage>/commands.py`: `COMMANDS` and `register`); this module imports a
stage's commands only when one of them runs, so that `count` with an ONNX model never loads
PyTorch, and maps the errors a user can fix to one sentence and exit code 2."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from marrowdiff import __version__
from marrowdiff.errors import UserError

# The stages' command modules, in the order `marrowdiff --help` lists them.
STAGES = (
    "marrowdiff.data.commands",  # data, vocab, audit, split
    "marrowdiff.training.commands",  # train
    "marrowdiff.evaluation.commands",  # evaluate
    "marrowdiff.inference.commands",  # calibrate, export
    "marrowdiff.counting.commands",  # classify
    "marrowdiff.slides.commands",  # count (fields and slides)
    "marrowdiff.web.commands",  # serve, users, validate
    "marrowdiff.pipeline.commands",  # demo, experiment
    "marrowdiff.mining.commands",  # mine
)
# Which module declares each command: a stage is imported only when its command runs.
COMMANDS = {
    "data": STAGES[0], "vocab": STAGES[0], "audit": STAGES[0], "split": STAGES[0],
    "train": STAGES[1],
    "evaluate": STAGES[2],
    "calibrate": STAGES[3], "export": STAGES[3],
    "classify": STAGES[4], "count": STAGES[5],
    "serve": STAGES[6], "users": STAGES[6], "validate": STAGES[6],
    "demo": STAGES[7], "experiment": STAGES[7],
    "mine": STAGES[8],
}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a non-UTF-8 file name is printed, not a crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return args.run(args) or 0
    except BrokenPipeError:  # `marrowdiff vocab show | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (UserError, FileNotFoundError) as exc:  # FileNotFoundError: messages name the file
        print(f"marrowdiff: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("marrowdiff: interrupted; finished outputs were written atomically", file=sys.stderr)
        return 130


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with `command`'s stage registered, or every stage's (for help, or a
    command that is not one)."""
    parser = argparse.ArgumentParser(
        prog="marrowdiff",
        description="White-blood-cell differential counts for bone marrow smears: one command "
        "per pipeline stage (data -> audit -> split -> train -> evaluate -> count -> review). "
        "Start with `marrowdiff demo`.",
    )
    parser.add_argument("--version", action="version", version=f"marrowdiff {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    stages = [COMMANDS[command]] if command in COMMANDS else STAGES
    for stage in stages:
        module = importlib.import_module(stage)
        module.register(sub)
    _show_defaults(parser)
    return parser


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Every option's help ends with its default, unless it says it already."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _show_defaults(sub)
        elif (
            action.option_strings
            and action.help
            and action.default not in (None, False, [], argparse.SUPPRESS)
            and "default" not in action.help
        ):
            action.help += " (default %(default)s)"
