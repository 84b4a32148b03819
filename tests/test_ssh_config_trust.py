"""A cloned project's mbdeploy.toml never makes ssh run a command (issue 13, item 2).

Through the real CLI and the system ssh client: a ProxyCommand that would run is a
`touch`, so a file that appears is a command that ran.
"""

from __future__ import annotations

import shutil

import pytest

from mbdeploy.devices.config import load_config
from mbdeploy.errors import InvalidInput
from support.cli import harness_env, mbdeploy

pytestmark = pytest.mark.skipif(shutil.which("ssh") is None, reason="the OpenSSH client is not installed")

BOARD = "ssh://nobody@127.0.0.1:1"  # nothing listens: ssh fails fast once it gets that far


def _project(tmp_path, ssh: str) -> None:
    (tmp_path / "mbdeploy.toml").write_text(f'[ssh]\nhosts = ["{BOARD}"]\n{ssh}')


@pytest.mark.parametrize("ssh, refused", [
    ('options = ["-o", "ProxyCommand=touch {pwned}"]\n', "ProxyCommand=touch"),
    ('options = ["-oLocalCommand=touch {pwned}", "-o", "PermitLocalCommand=yes"]\n', "LocalCommand=touch"),
    ('options = ["-o", "KnownHostsCommand touch {pwned}"]\n', "KnownHostsCommand touch"),
    ('options = ["-F", "evil.conf"]\n', "'-F' is refused"),
    ('config = "evil.conf"\n', "runs a command on this host"),
])
def test_a_project_file_runs_no_command_with_or_without_the_opt_in(tmp_path, ssh, refused):
    pwned = tmp_path / "pwned"
    (tmp_path / "evil.conf").write_text(f"Host *\n  ForwardAgent no\nMatch exec \"touch {pwned}\"\n"
                                        f"  ProxyCommand touch {pwned}\n")
    _project(tmp_path, ssh.format(pwned=pwned))
    env = harness_env(tmp_path)

    plain = mbdeploy(["devices", "--json"], cwd=tmp_path, env=env)
    assert plain.returncode == 0, plain.stderr
    assert "Warning:" in plain.stderr and "--trust-project-ssh" in plain.stderr
    assert not pwned.exists()

    trusted = mbdeploy(["devices", "--trust-project-ssh"], cwd=tmp_path, env=env)
    assert trusted.returncode == 2 and trusted.stderr.startswith("Error: ") and refused in trusted.stderr
    assert trusted.stderr.count("\n") == 1 and not pwned.exists()
    bench = mbdeploy(["bench", "--device", BOARD, "--trust-project-ssh"], cwd=tmp_path, env=env)
    assert bench.returncode == 2 and refused in bench.stderr and not pwned.exists()


def test_match_exec_in_a_project_ssh_config_is_refused_and_safe_options_pass(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MBDEPLOY_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "none"))
    (tmp_path / "boards.conf").write_text("Host board\n  Port 2222\nMatch host x EXEC \"true\"\n")
    _project(tmp_path, 'config = "boards.conf"\noptions = ["-o", "Compression=no", "-4"]\n')
    with pytest.raises(InvalidInput, match="boards.conf:3: 'Match host x EXEC"):
        load_config(trust_project_ssh=True)
    (tmp_path / "boards.conf").write_text("Host board\n  Port 2222\nMatch host x\n  User pi\n")
    config = load_config(trust_project_ssh=True)
    assert config.ssh_options == ["-o", "Compression=no", "-4"] and config.ssh_config == tmp_path / "boards.conf"
    with pytest.warns(UserWarning, match="ignored"):
        untrusted = load_config()
    assert untrusted.ssh_options == [] and untrusted.ssh_config is None and untrusted.ssh_hosts == [BOARD]


def test_the_users_own_config_is_honoured_as_written(tmp_path, monkeypatch):
    ran = tmp_path / "ran"
    user = tmp_path / "config" / "mbdeploy" / "config.toml"
    user.parent.mkdir(parents=True)
    user.write_text(f'[aliases]\nboard = "{BOARD}"\n[ssh]\nhosts = ["{BOARD}"]\n'
                    f'options = ["-o", "ProxyCommand=sh -c \'touch {ran}; exit 1\'"]\n')
    (tmp_path / "mbdeploy.toml").write_text('[aliases]\nboard = "local"\nhere = "local"\n')
    env = harness_env(tmp_path)  # XDG_CONFIG_HOME is tmp_path/config
    done = mbdeploy(["devices", "--json"], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert ran.exists()  # the user's own ProxyCommand is theirs to run
    assert "mbdeploy.toml" not in done.stderr and "--trust-project-ssh" not in done.stderr
    monkeypatch.delenv("MBDEPLOY_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    config = load_config(cwd=tmp_path)
    assert config.aliases == {"board": BOARD, "here": "local"}  # both files; the user's alias wins
