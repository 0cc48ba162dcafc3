"""``sipsimple settings``: show and change the global settings and the accounts.

Everything goes through the configuration API (SIPSimpleSettings, AccountManager,
Account), so values are parsed by each setting's datatype exactly as an application's
assignments are, and a value that does not parse is refused with the datatype's
message before anything is saved. Settings are named by their dotted path
(``rtp.port_range``, ``sip.transport_list``); values are given in their stored text
form (``50000-50100``, ``tls,tcp``, ``true``); ``--none`` stores None (nillable
settings only) and ``--default`` returns a setting to its default.

The configuration lives in ``--config-dir`` (default ``~/.sipsimple``), in its
``config`` file; nothing is written anywhere else.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from sipsimple.account import Account, AccountManager, BonjourAccount
from sipsimple.configuration import (
    ConfigurationError,
    ConfigurationManager,
    DefaultValue,
    Setting,
    SettingsObject,
    SettingsState,
)
from sipsimple.configuration.datatypes import SIPAddress, state_of
from sipsimple.configuration.settings import SIPSimpleSettings
from sipsimple.storage import FileStorage
from sipsimple.threading import SIPThread, run_in_sip_thread

__all__ = [
    "DEFAULT_CONFIG_DIR",
    "CommandError",
    "add_config_dir_argument",
    "add_settings_parser",
    "assign",
    "iter_settings",
]

DEFAULT_CONFIG_DIR = os.path.join("~", ".sipsimple")
_TIMEOUT = 10.0
_HIDDEN_VALUE = "********"


class CommandError(Exception):
    """A command that cannot be done: the message says why, for the user."""


def add_config_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config-dir",
        default=DEFAULT_CONFIG_DIR,
        metavar="DIR",
        help=f"where the configuration is kept (default {DEFAULT_CONFIG_DIR})",
    )


def iter_settings(state: SettingsState, prefix: str = "") -> Iterator[tuple[str, Setting[Any]]]:
    """(dotted name, Setting) of every stored setting of ``state``, groups included."""
    for name, member in type(state)._members().items():
        if isinstance(member, Setting):
            if member.persistent:
                yield prefix + name, member
        else:
            yield from iter_settings(getattr(state, name), f"{prefix}{name}.")


def _resolve(state: SettingsState, dotted: str) -> tuple[SettingsState, Setting[Any]]:
    """The container and the Setting named by ``dotted`` (CommandError if none)."""
    *groups, name = dotted.split(".")
    container = state
    for group in groups:
        member = type(container)._members().get(group)
        if member is None or isinstance(member, Setting):
            raise CommandError(f"no settings group {group!r} in {dotted!r}")
        container = getattr(container, group)
    member = type(container)._members().get(name)
    if member is None:
        raise CommandError(f"no setting {dotted!r}")
    if not isinstance(member, Setting):
        raise CommandError(f"{dotted!r} is a group of settings, not a setting")
    if not member.persistent:
        raise CommandError(f"{dotted!r} is a run-time setting: it is never stored")
    return container, member


def assign(state: SettingsState, dotted: str, value: Any) -> None:
    """Set the setting ``dotted`` of ``state`` to ``value`` (text, None or DefaultValue),
    parsed by its datatype; CommandError with the datatype's message when it does not
    parse (nothing is changed then)."""
    container, member = _resolve(state, dotted)
    try:
        setattr(container, member.name, value)
    except ValueError as error:
        raise CommandError(str(error)) from None


def _text(name: str, value: Any) -> str:
    if value is None:
        return "none"
    if name == "auth.password":
        return _HIDDEN_VALUE if value else ""
    state = state_of(value)
    return ",".join(state) if isinstance(state, list) else state


def _lines(state: SettingsState, section: str | None) -> list[str]:
    rows = [
        (name, _text(name, _value(state, name)))
        for name, _ in iter_settings(state)
        if section is None or name == section or name.startswith(section + ".")
    ]
    if not rows:
        raise CommandError(f"no setting or section {section!r}")
    width = max(len(name) for name, _ in rows)
    return [f"{name:<{width}} = {value}" for name, value in rows]


def _value(state: SettingsState, dotted: str) -> Any:
    value: Any = state
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def _changes(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """(name, value) of ``NAME VALUE ...`` pairs, ``--none NAME`` and ``--default NAME``."""
    pairs = args.pairs
    if len(pairs) % 2:
        raise CommandError(f"no value for {pairs[-1]!r}: give NAME VALUE pairs")
    changes: list[tuple[str, Any]] = list(zip(pairs[::2], pairs[1::2], strict=True))
    changes += [(name, None) for name in args.none]
    changes += [(name, DefaultValue) for name in args.default]
    if not changes:
        raise CommandError("nothing to change: give NAME VALUE, --none NAME or --default NAME")
    return changes


def _apply(state: SettingsObject, changes: list[tuple[str, Any]]) -> list[str]:
    """Assign every change, then save them together; CommandError, with nothing
    assigned, when one does not parse."""
    for name, value in changes:
        container, member = _resolve(state, name)
        if value is not DefaultValue:
            try:
                member.coerce(value, container)
            except ValueError as error:
                raise CommandError(str(error)) from None
    for name, value in changes:
        assign(state, name, value)
    _save(state)
    return [_lines(state, name)[0] for name, _ in changes]


def _account(account_id: str) -> Account | BonjourAccount:
    try:
        return AccountManager().get_account(SIPAddress(account_id))
    except (KeyError, ValueError):
        raise CommandError(
            f"no account {account_id!r} (see: sipsimple settings account list)"
        ) from None


def _save(state: SettingsObject) -> None:
    state.save().result(_TIMEOUT)


# -- the commands: each gets the parsed arguments and prints what it did


def _show(args: argparse.Namespace) -> None:
    for line in _lines(SIPSimpleSettings(), args.section):
        print(line)


def _set(args: argparse.Namespace) -> None:
    for line in _apply(SIPSimpleSettings(), _changes(args)):
        print(line)


def _account_list(args: argparse.Namespace) -> None:
    manager = AccountManager()
    default = manager.default_account
    for account in sorted(manager.get_accounts(), key=lambda a: str(a.id)):
        flags = ["enabled" if account.enabled else "disabled"]
        if account is default:
            flags.append("default")
        if isinstance(account, Account) and account.enabled and account.registration.enabled:
            flags.append("registers")
        print(f"{account.id}  {' '.join(flags)}")


def _account_show(args: argparse.Namespace) -> None:
    account = _account(args.id)
    print(f"id = {account.id}")
    for line in _lines(account, args.section):
        print(line)


def _account_add(args: argparse.Namespace) -> None:
    try:
        account_id = SIPAddress(args.id)
    except ValueError as error:
        raise CommandError(str(error)) from None
    if AccountManager().has_account(account_id):
        raise CommandError(f"the account {account_id} exists already")
    account = Account(account_id)  # stored only by save(): a bad value leaves nothing
    assign(account, "enabled", "false" if args.disabled else "true")
    if args.password is not None:
        assign(account, "auth.password", args.password)
    if args.display_name is not None:
        assign(account, "display_name", args.display_name)
    if args.outbound_proxy is not None:
        assign(account, "sip.outbound_proxy", args.outbound_proxy)
    if args.no_register:
        assign(account, "registration.enabled", "false")
    _save(account)
    manager = AccountManager()
    if account.enabled and isinstance(manager.default_account, BonjourAccount | None):
        manager.default_account = account  # a SIP account rather than the Bonjour one
    note = " (disabled)" if args.disabled else ""
    if manager.default_account is account:
        note = " (the default account)"
    print(f"added {account_id}{note}")


def _account_set(args: argparse.Namespace) -> None:
    account = _account(args.id)
    changes = _changes(args)
    if any(name == "id" for name, _ in changes):
        raise CommandError("an account's id cannot be changed: add a new account")
    for line in _apply(account, changes):
        print(f"{account.id}: {line}")


def _account_delete(args: argparse.Namespace) -> None:
    account = _account(args.id)
    if isinstance(account, BonjourAccount):
        raise CommandError("the Bonjour account cannot be deleted; disable it instead")
    account.delete().result(_TIMEOUT)
    print(f"deleted {account.id}")


def _account_default(args: argparse.Namespace) -> None:
    account = _account(args.id)
    try:
        AccountManager().default_account = account
    except ValueError:
        raise CommandError(f"{account.id} is disabled: enable it first") from None
    print(f"default account: {account.id}")


def run(args: argparse.Namespace) -> int:
    """Open the configuration in ``args.config_dir``, run the chosen command, write the
    changes and close it again. Returns the exit status."""
    try:
        storage = FileStorage(args.config_dir)
        ConfigurationManager().start(storage.configuration_backend)
    except (OSError, ConfigurationError) as error:
        print(f"sipsimple settings: cannot load the configuration: {error}", file=sys.stderr)
        return 2
    SIPThread().start()
    status = 0
    try:
        AccountManager().start().result(_TIMEOUT)
        args.action(args)
    except CommandError as error:
        print(f"sipsimple settings: {error}", file=sys.stderr)
        status = 1
    finally:
        run_in_sip_thread(_nothing)  # what the accounts do about the changes is done
        AccountManager().stop().result(_TIMEOUT)
        if not ConfigurationManager().flush(_TIMEOUT):
            print("sipsimple settings: the configuration was not written", file=sys.stderr)
            status = 1
        SIPThread().stop()
        ConfigurationManager().stop()
    return status


def _nothing() -> None:
    pass


def _value_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "pairs", nargs="*", metavar="NAME VALUE", help="e.g. rtp.port_range 50000-50100"
    )
    parser.add_argument(
        "--none", action="append", default=[], metavar="NAME", help="store None (nillable)"
    )
    parser.add_argument(
        "--default", action="append", default=[], metavar="NAME", help="back to the default"
    )


def add_settings_parser(
    commands: Any, handler: Callable[[argparse.Namespace], int] = run
) -> argparse.ArgumentParser:
    """Add ``settings`` and its subcommands to the subparsers ``commands``."""
    parser = commands.add_parser("settings", help="show and change settings and accounts")
    add_config_dir_argument(parser)
    parser.set_defaults(handler=handler)
    actions = parser.add_subparsers(dest="action_name", required=True)

    show = actions.add_parser("show", help="list the settings (of one section)")
    show.add_argument("section", nargs="?", help="e.g. rtp, or one setting: rtp.port_range")
    show.set_defaults(action=_show)
    change = actions.add_parser("set", help="change settings: NAME VALUE ..., all or none")
    _value_arguments(change)
    change.set_defaults(action=_set)

    accounts = actions.add_parser("account", help="add, list, show, change, delete accounts")
    account_actions = accounts.add_subparsers(dest="account_action", required=True)
    add = account_actions.add_parser("add", help="add an account (enabled unless --disabled)")
    add.add_argument("id", help="the SIP address, user@domain")
    add.add_argument("--password", help="the digest password")
    add.add_argument("--display-name")
    add.add_argument("--outbound-proxy", metavar="HOST[:PORT][;transport=T]")
    add.add_argument("--no-register", action="store_true", help="registration.enabled false")
    add.add_argument("--disabled", action="store_true")
    add.set_defaults(action=_account_add)
    listing = account_actions.add_parser("list", help="the accounts, the default marked")
    listing.set_defaults(action=_account_list)
    show_account = account_actions.add_parser("show", help="the settings of an account")
    show_account.add_argument("id")
    show_account.add_argument("section", nargs="?", help="e.g. sip, or auth.username")
    show_account.set_defaults(action=_account_show)
    set_account = account_actions.add_parser("set", help="change account settings, all or none")
    set_account.add_argument("id")
    _value_arguments(set_account)
    set_account.set_defaults(action=_account_set)
    delete = account_actions.add_parser("delete", help="remove an account")
    delete.add_argument("id")
    delete.set_defaults(action=_account_delete)
    default = account_actions.add_parser("default", help="make an account the default one")
    default.add_argument("id")
    default.set_defaults(action=_account_default)
    return parser
