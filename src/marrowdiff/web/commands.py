"""`marrowdiff serve` and `users`: the review station, and its accounts."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

import uvicorn

from marrowdiff.arguments import model_args
from marrowdiff.counting.commands import count_args, count_configs
from marrowdiff.counting.report import check_config
from marrowdiff.inference.predict import load_classifier
from marrowdiff.web.accounts import ROLES, AccountError, Accounts
from marrowdiff.web.app import create_app, serving_hosts
from marrowdiff.web.station import ReviewStation
from marrowdiff.web.validate import reference_cases, validate

DATA_DIR = Path("review-data")


def register(sub) -> None:
    users = sub.add_parser(
        "users", help="the review station's accounts: add, list, passwd, remove"
    ).add_subparsers(title="users commands", metavar="ACTION")
    for action, text in (
        ("add", "add an account (asks for its password)"),
        ("list", "list the accounts and their roles"),
        ("passwd", "set an account's password (ends its sessions)"),
        ("remove", "remove an account (ends its sessions; its name stays in the log)"),
        ("unlock", "lift the login throttle on an account (its failed logins are forgotten)"),
    ):
        p = users.add_parser(action, help=text)
        if action != "list":
            p.add_argument("name", help="the person's name, as the log and reports show it")
        if action == "add":
            p.add_argument(
                "--role",
                choices=ROLES,
                required=True,
                help="reviewer: upload, review, add missed cells; adjudicator: that, and decide "
                "the cells a blind double review disagrees on; signer: both, and sign off",
            )
        if action in ("add", "passwd"):
            p.add_argument(
                "--password-stdin",
                action="store_true",
                help="read the password from the first line of standard input (for scripts)",
            )
        p.add_argument(
            "--data-dir",
            type=Path,
            default=DATA_DIR,
            help="the station's data folder, as given to serve (default %(default)s)",
        )
        p.set_defaults(run=cmd_users, action=action)

    p = sub.add_parser("serve", help="the review station: a web app to confirm every cell")
    model_args(p, positional=False)
    p.add_argument(
        "--data-dir",
        type=Path,
        default=DATA_DIR,
        help="where cases, uploads and reports are kept (default %(default)s)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: this machine only; any other needs accounts, "
        "see `marrowdiff users add`)",
    )
    p.add_argument("--port", type=int, default=8000, help="port (default %(default)s)")
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name clients reach the station by (the Host header), e.g. "
        "marrow.lab.example; repeat for more (default: this machine's names and --host)",
    )
    p.add_argument(
        "--slides",
        type=Path,
        help="the folder of slide files the station may read: a case registers a slide by its "
        "path in it (slides are not uploaded; paths outside it are refused)",
    )
    count_args(p)
    p.set_defaults(run=cmd_serve)

    p = sub.add_parser(
        "validate",
        help="a method comparison: a model against the station's signed, reviewed cases",
    )
    model_args(p)
    p.add_argument(
        "--data-dir",
        type=Path,
        default=DATA_DIR,
        help="the station's data folder, as given to serve (default %(default)s)",
    )
    p.add_argument(
        "--case",
        action="append",
        metavar="NAME",
        help="a signed case to compare on; repeat for more (default: every signed case)",
    )
    p.add_argument("--out", type=Path, required=True, help="the report's folder")
    p.set_defaults(run=cmd_validate)


def cmd_serve(args) -> int:
    accounts = Accounts(args.data_dir) if Accounts.exist(args.data_dir) else None
    hosts = serving_hosts(args.host, args.allowed_host, accounts is not None)  # before the model
    count_config, report_config = count_configs(args)
    classifier = load_classifier(args.model.split(","), args.device, args.normalise_stain)
    check_config(classifier.vocabulary, report_config)  # a wrong --myeloid: before serving
    if args.slides is not None and not args.slides.is_dir():
        raise FileNotFoundError(f"--slides {args.slides}: no such folder")
    station = ReviewStation(
        args.data_dir,
        classifier,
        count_config,
        report_config,
        model_name=args.model,
        slides=args.slides,
    )
    who = f"{len(accounts.users())} accounts" if accounts else "no accounts: names are typed"
    print(f"review station: http://{args.host}:{args.port}/  (data in {args.data_dir}; {who})")
    app = create_app(station, accounts, hosts)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_validate(args) -> int:
    cases = reference_cases(args.data_dir, args.case)  # checked before the model loads
    classifier = load_classifier(args.model.split(","), args.device, args.normalise_stain)
    result = validate(classifier, cases, args.out, args.model, args.tta)
    agree = result["cells"]
    print(
        f"{len(cases)} case(s), {agree['cells']} cells: the model agrees with the consensus on "
        f"{agree['percent']:.1f}% (kappa {agree['kappa'] if agree['kappa'] is not None else 'n/a'})"
        f"; report in {args.out / 'validation.html'}"
    )
    return 0


def cmd_users(args) -> int:
    accounts = Accounts(args.data_dir)
    if args.action == "list":
        for user in accounts.users():
            print(f"{user.name}\t{user.role}")
        if not accounts.users():
            print(f"no accounts in {args.data_dir}: the station serves this machine only")
        return 0
    if args.action == "remove":
        accounts.remove(args.name)
        print(f"{args.name}: removed; their sessions are ended")
        return 0
    if args.action == "unlock":
        n = accounts.unlock(args.name)
        print(f"{args.name}: unlocked ({n} failed login(s) forgotten)")
        return 0
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise AccountError("the two passwords differ; nothing was changed")
    if args.action == "add":
        user = accounts.add(args.name, args.role, password)
        print(f"{user.name}: added as {user.role} in {accounts.path}")
    else:
        accounts.set_password(args.name, password)
        print(f"{args.name}: password changed; their sessions are ended")
    return 0
