"""`sipsimple settings` run as a program: what it stores is what the configuration API
reads back, bad values are refused with nothing saved, and nothing is written outside
the configuration directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.cli import sipsimple

from sipsimple.account import Account
from sipsimple.cli.settings import iter_settings
from sipsimple.configuration import ConfigurationManager
from sipsimple.configuration.datatypes import PortRange, SIPProxyAddress
from sipsimple.configuration.settings import SIPSimpleSettings
from sipsimple.storage import FileStorage


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


def settings(home: Path, config: Path, *args: str) -> tuple[int, str, str]:
    result = sipsimple(home, "settings", "--config-dir", str(config), *args)
    return result.returncode, result.stdout, result.stderr


def stored(config: Path) -> dict:
    return json.loads((config / "config").read_text())


def test_settings_and_accounts_round_trip_through_the_configuration_api(tmp_path, home):
    config = tmp_path / "config-dir"
    code, out, err = settings(
        home,
        config,
        "set",
        "rtp.port_range",
        "50000-50100",
        "sip.transport_list",
        "tcp,udp",
        "--none",
        "dns.probe_domain",
    )
    assert code == 0, err
    assert out.splitlines() == [
        "rtp.port_range = 50000-50100",
        "sip.transport_list = tcp,udp",
        "dns.probe_domain = none",
    ]
    code, out, err = settings(
        home,
        config,
        "account",
        "add",
        "alice@example.test",
        "--password",
        "s3cret",
        "--display-name",
        "Alice Liddell",
        "--outbound-proxy",
        "127.0.0.1:5070;transport=tcp",
    )
    assert (code, out.strip()) == (0, "added alice@example.test (the default account)"), err
    code, out, err = settings(home, config, "account", "add", "bob@example.test", "--disabled")
    assert (code, out.strip()) == (0, "added bob@example.test (disabled)"), err
    code, out, err = settings(
        home, config, "account", "set", "alice@example.test", "registration.enabled", "false"
    )
    assert code == 0, err
    # What the program shows.
    code, out, err = settings(home, config, "show", "rtp")
    assert code == 0, err
    assert "rtp.port_range       = 50000-50100" in out.splitlines()
    assert "rtp.timeout          = 30" in out.splitlines()
    code, out, err = settings(home, config, "account", "list")
    assert out.splitlines() == [
        "alice@example.test  enabled default",
        "bob@example.test  disabled",
        "bonjour@local  enabled",
    ]
    code, out, err = settings(home, config, "account", "show", "alice@example.test", "auth")
    assert out.splitlines() == [
        "id = alice@example.test",
        "auth.username = none",
        "auth.password = ********",
    ]
    # What an application reads back through the API.
    ConfigurationManager().start(FileStorage(config).configuration_backend)
    try:
        global_settings = SIPSimpleSettings()
        assert global_settings.rtp.port_range == PortRange(50000, 50100)
        assert list(global_settings.sip.transport_list) == ["tcp", "udp"]
        assert global_settings.dns.probe_domain is None
        assert global_settings.default_account == "alice@example.test"
        alice = Account("alice@example.test")
        assert alice.enabled and alice.auth.password == "s3cret"
        assert alice.display_name == "Alice Liddell"
        assert alice.sip.outbound_proxy == SIPProxyAddress("127.0.0.1", 5070, "tcp")
        assert alice.registration.enabled is False
        assert Account("bob@example.test").enabled is False
    finally:
        ConfigurationManager().stop()
    # Delete, make another the default (refused while it is disabled).
    code, out, err = settings(home, config, "account", "default", "bob@example.test")
    assert code == 1 and "bob@example.test is disabled: enable it first" in err
    assert settings(home, config, "account", "set", "bob@example.test", "enabled", "true")[0] == 0
    code, out, err = settings(home, config, "account", "default", "bob@example.test")
    assert (code, out.strip()) == (0, "default account: bob@example.test"), err
    code, out, err = settings(home, config, "account", "delete", "alice@example.test")
    assert (code, out.strip()) == (0, "deleted alice@example.test"), err
    assert set(stored(config)["Accounts"]) == {"bob@example.test"}
    assert stored(config)["SIPSimpleSettings"]["default_account"] == "bob@example.test"
    code, out, err = settings(home, config, "set", "--default", "rtp.port_range")
    assert (code, out.strip()) == (0, "rtp.port_range = 50000-50500"), err
    assert "port_range" not in stored(config)["SIPSimpleSettings"].get("rtp", {})
    assert list(home.iterdir()) == []  # nothing outside the configuration directory


BAD_CHANGES = [
    (
        ["set", "rtp.port_range", "50000:50100"],
        "invalid value for SIPSimpleSettings.rtp.port_range: illegal port range "
        "'50000:50100', expected start-end",
    ),
    (["set", "rtp.timeout", "10", "sip.udp_port", "70000"], "illegal port 70000"),
    (["set", "rtp.nonexistent", "1"], "no setting 'rtp.nonexistent'"),
    (["set", "rtp", "1"], "'rtp' is a group of settings, not a setting"),
    (["set", "--none", "user_agent"], "None is not allowed"),
    (["account", "set", "alice@example.test", "enabled", "maybe"], "expected a boolean"),
    (["account", "add", "alice@example.test"], "the account alice@example.test exists"),
    (["account", "delete", "carol@example.test"], "no account 'carol@example.test'"),
]


def test_a_bad_change_is_refused_with_a_message_and_nothing_is_saved(tmp_path, home):
    config = tmp_path / "config-dir"
    assert settings(home, config, "account", "add", "alice@example.test")[0] == 0
    before = (config / "config").read_bytes()
    for args, message in BAD_CHANGES:
        code, out, err = settings(home, config, *args)
        assert code == 1 and message in err, (args, out, err)
        assert (config / "config").read_bytes() == before, args


def test_settings_show_lists_every_stored_setting_of_the_api(tmp_path, home):
    config = tmp_path / "config-dir"
    code, out, err = settings(home, config, "show")
    assert code == 0, err
    names = [line.split(" = ")[0].strip() for line in out.splitlines()]
    ConfigurationManager().start(FileStorage(config).configuration_backend)
    try:
        assert names == [name for name, _ in iter_settings(SIPSimpleSettings())]
    finally:
        ConfigurationManager().stop()
    assert {"rtp.port_range", "sip.transport_list", "audio.echo_canceller.enabled"} <= set(names)
    assert "audio.muted" not in names  # run-time only


def test_a_broken_configuration_file_is_reported_and_left_alone(tmp_path, home):
    config = tmp_path / "config-dir"
    config.mkdir()
    (config / "config").write_text('{"SIPSimpleSettings": {\n  "rtp": [}\n')
    before = (config / "config").read_bytes()
    for command in (["settings", "set", "rtp.timeout", "5"], ["call", "bob"]):
        result = sipsimple(home, command[0], "--config-dir", str(config), *command[1:])
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stderr.startswith(
            f"sipsimple {command[0]}: cannot load the configuration: {config / 'config'}, line 2"
        )
        assert (config / "config").read_bytes() == before


def test_the_settings_command_does_not_load_the_media_stack(tmp_path):
    script = (
        "import sys\n"
        "from sipsimple.cli.main import main\n"
        f"code = main(['settings', '--config-dir', {str(tmp_path)!r}, 'show', 'rtp'])\n"
        "print('LOADED', sorted(m for m in ('numpy', 'av') if m in sys.modules), code)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "LOADED [] 0"
