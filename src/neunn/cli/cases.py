"""Case store subcommands: ``neunn users`` (named reviewers: add, list, disable, enable, role, password) and ``neunn
cases`` (list, export reviewed cells). Roles and statuses are checked by the case store, which names the valid ones."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from neunn.cli.common import add_command, add_store
from neunn.errors import NeunnError


def _open(args: argparse.Namespace, *, create: bool = False):
    """The case store of --store/--db; only ``create`` (adding a user) makes one where there is none."""
    from neunn.cases import open_store

    return open_store(args.store, db_url=args.db or os.environ.get("NEUNN_DB"), create=create)


def _utc_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r} (e.g. 2026-11-27 or 2026-11-27T09:00Z)")
    return moment.astimezone(timezone.utc) if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _read_password(name: str) -> str:
    """The new password: from a prompt (typed twice) on a terminal, else the first line of standard input."""
    if sys.stdin.isatty():
        try:
            password = getpass.getpass(f"password for {name}: ")
            if getpass.getpass("again: ") != password:
                raise NeunnError("The two passwords differ; nothing was changed.")
        except EOFError:  # Ctrl-D at the prompt
            raise NeunnError("No password was typed (the input ended); nothing was changed.") from None
        return password
    return sys.stdin.readline().rstrip("\r\n")


def _cmd_users_add(args: argparse.Namespace) -> int:
    from neunn.cases.users import add_user

    password = _read_password(args.name)
    store = _open(args, create=True)
    with store.transaction() as db:
        user = add_user(db, args.name, password, role=args.role)
    print(f"added {user.role} {user.name} to {store.describe()}")
    return 0


def _cmd_users_list(args: argparse.Namespace) -> int:
    from neunn.cases.times import iso
    from neunn.cases.users import list_users

    with _open(args).transaction() as db:
        for user in list_users(db):
            print(f"{user['name']}\t{user['role']}\t{'active' if user['active'] else 'disabled'}\t"
                  f"{iso(user['created_at'])}")
    return 0


def _cmd_users_disable(args: argparse.Namespace) -> int:
    from neunn.cases.users import set_active

    with _open(args).transaction() as db:
        set_active(db, args.name, False)
    print(f"disabled {args.name}: their logins stop working now")
    return 0


def _cmd_users_enable(args: argparse.Namespace) -> int:
    from neunn.cases.users import set_active

    with _open(args).transaction() as db:
        set_active(db, args.name, True)
    print(f"re-enabled {args.name}: they can log in again")
    return 0


def _cmd_users_role(args: argparse.Namespace) -> int:
    from neunn.cases.users import set_role

    with _open(args).transaction() as db:
        user = set_role(db, args.name, args.role)
    print(f"{user.name} is now a {user.role}")
    return 0


def _cmd_users_password(args: argparse.Namespace) -> int:
    from neunn.cases.users import reset_password

    password = _read_password(args.name)
    with _open(args).transaction() as db:
        reset_password(db, args.name, password)
    print(f"reset the password of {args.name}: their logins have ended")
    return 0


def _cmd_cases_list(args: argparse.Namespace) -> int:
    from neunn.cases.casework import list_cases

    with _open(args).transaction() as db:
        rows = list_cases(db, status=args.status)
    for row in rows:
        print(f"{row['id']}\t{row['sample_id']}\t{row['status']}\t{row['n_decided']}/{row['n_cells']} decided\t"
              f"{row['n_critical']} critical\t{row['signed_by'] or ''}")
    return 0


def _cmd_cases_export(args: argparse.Namespace) -> int:
    from neunn.cases.export import export_reviewed

    report = export_reviewed(_open(args), args.out, skip_accepted=args.skip_accepted, include_bulk=args.include_bulk,
                             signed_since=args.signed_since)
    print(f"wrote {report['n_cells']} signed cells of {report['n_cases']} cases to {report['out']} "
          f"({report['n_corrected']} corrected by reviewers, {report['n_accepted_at_signing']} accepted as classified "
          f"at signing, {report['n_confirmed_in_bulk']} confirmed in bulk; {report['n_new_files']} new files, "
          f"{report['n_removed_files']} removed): {report['per_class']}")
    if report["n_bulk_left_out"]:
        print(f"left out {report['n_bulk_left_out']} cells confirmed in bulk (--include-bulk exports them)")
    if report["n_conflicting_images"]:
        print(f"left out {report['n_conflicting_images']} images that signed cases label differently")
    print(f"train with them: neunn train DATA --add {report['out']} --split-file RUN/splits.json init_from=RUN "
          "--out NEW_RUN")
    return 0


def add_parsers(sub) -> None:
    users = sub.add_parser("users", help="named reviewers of the review station", description="named reviewers")
    users_sub = users.add_subparsers(dest="users_command", required=True, metavar="COMMAND")
    p = add_command("add", users_sub, "add a user (the password is read from a prompt, or from standard input)",
                    "neunn users add dr.ruiz --role admin", _cmd_users_add,
                    interrupted="interrupted; nothing was changed")
    p.add_argument("name")
    p.add_argument("--role", default="technologist",
                   help="technologist: pre-classifies, signs cases without a critical finding; pathologist: verifies "
                        "and signs every case; admin: a pathologist who manages users (default: technologist)")
    add_store(p)
    p = add_command("list", users_sub, "list users and their roles", "neunn users list", _cmd_users_list)
    add_store(p)
    p = add_command("disable", users_sub, "disable a user (kept in the audit trail, can no longer log in)",
                    "neunn users disable dr.ruiz", _cmd_users_disable)
    p.add_argument("name")
    add_store(p)
    p = add_command("enable", users_sub, "re-enable a disabled user", "neunn users enable dr.ruiz", _cmd_users_enable)
    p.add_argument("name")
    add_store(p)
    p = add_command("role", users_sub, "change a user's role", "neunn users role ana pathologist", _cmd_users_role)
    p.add_argument("name")
    p.add_argument("role", help="technologist, pathologist or admin")
    add_store(p)
    p = add_command("password", users_sub, "reset a user's password (read from a prompt, or from standard input); "
                                           "their logins end", "neunn users password ana", _cmd_users_password,
                    interrupted="interrupted; nothing was changed")
    p.add_argument("name")
    add_store(p)

    cases = sub.add_parser("cases", help="the review station's cases: list, export reviewed cells",
                           description="the review station's cases")
    cases_sub = cases.add_subparsers(dest="cases_command", required=True, metavar="COMMAND")
    p = add_command("list", cases_sub, "the worklist: critical findings first", "neunn cases list --status signed",
                    _cmd_cases_list)
    p.add_argument("--status", help="to_review, in_progress, to_verify, signed or void (default: all but void)")
    add_store(p)
    p = add_command("export", cases_sub, "write the signed cells as a folder-per-class dataset with a provenance "
                                         "manifest (for neunn train --add)",
                    "neunn cases export --reviewed --out reviewed/", _cmd_cases_export)
    p.add_argument("--reviewed", action="store_true", required=True,
                   help="the cells of signed cases, labelled with the reviewers' final calls (the only export)")
    p.add_argument("--out", type=Path, required=True,
                   help="a new folder, or a previous export to bring up to date")
    p.add_argument("--skip-accepted", action="store_true",
                   help="leave out cells accepted as classified at signing (nobody decided them one by one)")
    p.add_argument("--include-bulk", action="store_true",
                   help="also export the cells confirmed in bulk (left out by default: nobody decided them one by one)")
    p.add_argument("--signed-since", type=_utc_time, metavar="TIME",
                   help="only cases signed at or after TIME (ISO 8601, UTC unless it says otherwise), e.g. for a "
                        "held-out set of later reviews")
    add_store(p)
