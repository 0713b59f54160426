"""`aigc users …` and `aigc keys …`: accounts and their API keys in the app database.

    aigc users add NAME [--admin|--staff] [--password-stdin]     (asks twice on a terminal otherwise)
    aigc users list | remove NAME | set-password NAME [--password-stdin]
    aigc users set-limits NAME [--rate-limit 60/minute] [--token-quota 200000/day]  ("" clears)
    aigc keys create --user NAME [--name LABEL]          (prints the key once)
    aigc keys list [--user NAME] | revoke ID

The database is the server's: --database-url, else AIGC_DATABASE_URL, else sqlite:///aigc.db.
"""

from __future__ import annotations

import argparse
import getpass
import sys


def register(sub) -> None:
    from aigc.cli.common import add_database_arg

    users = sub.add_parser("users", help="manage accounts (users and admins) of the web app and API")
    u = users.add_subparsers(dest="users_command", metavar="COMMAND")
    u.required = True
    p = u.add_parser("add", help="add a user (the first admin inherits data made before accounts)")
    p.add_argument("name")
    p.add_argument("--admin", action="store_true", help="an administrator (dashboard, users, every key)")
    p.add_argument("--staff", action="store_true",
                   help="customer-service staff: answers the hand-off queue of every support site")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p.add_argument("--no-password", action="store_true", help="no web login: API keys only")
    add_database_arg(p)
    p.set_defaults(func=_add)
    p = u.add_parser("list", help="list users")
    add_database_arg(p)
    p.set_defaults(func=_list)
    p = u.add_parser("remove", help="remove a user and everything they own")
    p.add_argument("name")
    add_database_arg(p)
    p.set_defaults(func=_remove)
    p = u.add_parser("set-password", help="set a user's password (logs them out everywhere)")
    p.add_argument("name")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add_database_arg(p)
    p.set_defaults(func=_set_password)
    p = u.add_parser("set-limits", help="override the server's rate limit or token quota for one user")
    p.add_argument("name")
    p.add_argument("--rate-limit", default=None, help='requests, e.g. "60/minute" ("" = the server default)')
    p.add_argument("--token-quota", default=None, help='tokens, e.g. "200000/day" ("" = the server default)')
    add_database_arg(p)
    p.set_defaults(func=_set_limits)

    keys = sub.add_parser("keys", help="manage users' API keys for the OpenAI routes")
    k = keys.add_subparsers(dest="keys_command", metavar="COMMAND")
    k.required = True
    p = k.add_parser("create", help="create an API key for a user (shown once)")
    p.add_argument("--user", required=True)
    p.add_argument("--name", default="", help="a label, e.g. the program that will use it")
    add_database_arg(p)
    p.set_defaults(func=_key_create)
    p = k.add_parser("list", help="list API keys (prefix, owner, last use)")
    p.add_argument("--user", default=None)
    add_database_arg(p)
    p.set_defaults(func=_key_list)
    p = k.add_parser("revoke", help="revoke an API key by id")
    p.add_argument("id", type=int)
    add_database_arg(p)
    p.set_defaults(func=_key_revoke)


def _store(args: argparse.Namespace):
    from aigc.accounts import UserStore
    from aigc.cli.common import open_database

    return UserStore(open_database(args))


def _read_password(from_stdin: bool) -> str:
    from aigc.accounts.users import check_password

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            raise ValueError("no terminal to ask for a password: pass --password-stdin and pipe it in")
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat: ") != password:
            raise ValueError("the passwords differ")
    check_password(password)
    return password


def _add(args: argparse.Namespace) -> int:
    store = _store(args)
    password = None if args.no_password else _read_password(args.password_stdin)
    if args.admin and args.staff:
        raise ValueError("choose one of --admin and --staff")
    user = store.add(args.name, password, admin=args.admin, staff=args.staff)
    print(f"added {user.role} {user.name}")
    return 0


def _list(args: argparse.Namespace) -> int:
    users = _store(args).list()
    if not users:
        print("no users (the app runs as a single-user app on loopback)")
    for user in users:
        limits = ", ".join(x for x in (user.rate_limit, user.token_quota) if x)
        print(f"{user.name}\t{user.role}\t{user.created_at:%Y-%m-%d}" + (f"\t{limits}" if limits else ""))
    return 0


def _remove(args: argparse.Namespace) -> int:
    _store(args).remove(args.name)
    print(f"removed {args.name}")
    return 0


def _set_password(args: argparse.Namespace) -> int:
    store = _store(args)
    store.by_name(args.name)  # an unknown user fails before the password is asked
    store.set_password(args.name, _read_password(args.password_stdin))
    print(f"password of {args.name} set")
    return 0


def _set_limits(args: argparse.Namespace) -> int:
    from aigc.accounts.limits import parse_limit

    for value, unit in ((args.rate_limit, "requests"), (args.token_quota, "tokens")):
        if value:
            parse_limit(value, unit)
    user = _store(args).set_limits(args.name, rate_limit=args.rate_limit, token_quota=args.token_quota)
    print(f"{user.name}: rate limit {user.rate_limit or 'server default'}, "
          f"token quota {user.token_quota or 'server default'}")
    return 0


def _key_create(args: argparse.Namespace) -> int:
    store = _store(args)
    user = store.by_name(args.user)
    key, info = store.create_key(user.id, args.name)
    print(key)
    print(f"(key {info['id']} of {user.name}: shown once, store it now)", file=sys.stderr)
    return 0


def _key_list(args: argparse.Namespace) -> int:
    store = _store(args)
    user_id = store.by_name(args.user).id if args.user else None
    for k in store.list_keys(user_id):
        state = "revoked" if k["revoked"] else f"last used {k['last_used_at'] or 'never'}"
        print(f"{k['id']}\t{k['prefix']}…\t{k['user']}\t{k['name'] or '-'}\t{state}")
    return 0


def _key_revoke(args: argparse.Namespace) -> int:
    if not _store(args).revoke_key(args.id):
        raise ValueError(f"no API key with id {args.id}")
    print(f"revoked key {args.id}")
    return 0
