"""The shipped settings files (``.env.example``, ``cron/ponte.env.example``) read the same in a
POSIX shell (``set -a; . FILE``), systemd's ``EnvironmentFile=`` and python-dotenv /
pydantic-settings; the crontab line and the README's install step, sourced as written, reach
``ponte`` with those values; the crontab's log folder is created by the install steps."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from dotenv import dotenv_values

from etl.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
FILES = [ROOT / ".env.example", ROOT / "cron" / "ponte.env.example"]
IDS = [".env.example", "cron/ponte.env.example"]
GENERATOR = "30-systemd-environment-d-generator"
SHIPPED_BIN = "/opt/ponte/.venv/bin/ponte"


def read_with_shell(file: Path, cwd: Path) -> dict[str, str]:
    """``set -a; . FILE`` in an empty environment, as cron and the README do it."""
    result = subprocess.run(
        ["env", "-i", "PATH=/usr/bin:/bin", "/bin/sh", "-c", 'set -a; . "$1"; env -0', "sh",
         str(file)], cwd=cwd, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0 and result.stderr == "", (result.returncode, result.stderr)
    pairs = (item.split("=", 1) for item in result.stdout.split("\0") if "=" in item)
    return {k: v for k, v in pairs if k.startswith("PONTE_")}


def read_with_dotenv(file: Path) -> dict[str, str]:
    return {k: v or "" for k, v in dotenv_values(file).items()}


def read_like_systemd(text: str) -> dict[str, str]:
    """``EnvironmentFile=`` as systemd.exec(5) and systemd's env-file parser define it: lines
    starting with ``#`` or ``;`` and lines without ``=`` are ignored; whitespace around the key
    and around an unquoted value is dropped; quotes count only where a value (or the text after
    a closing quote) starts: single quotes keep everything literally, in double quotes a
    backslash escapes ``"``, ``\\``, `` ` `` and ``$``; unquoted, a backslash escapes the next
    character; a backslash at the end of a line continues the value on the next line."""
    values: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        end = text.find("\n", i)
        end = n if end < 0 else end
        line = text[i:end].lstrip()
        if not line or line[0] in "#;" or "=" not in line:
            i = end + 1
            continue
        key = line.split("=", 1)[0].strip()
        i = text.index("=", i) + 1
        value, state, trailing = "", "pre", ""
        while i < n:
            ch = text[i]
            if state == "pre":
                if ch == "\n":
                    break
                if ch in "'\"":
                    state = ch
                elif not ch.isspace():
                    state = "value"
                    continue
            elif state == "value":
                if ch == "\n":
                    break
                if ch == "\\" and i + 1 < n:
                    if text[i + 1] != "\n":  # an escaped newline joins the next line
                        value += trailing + text[i + 1]
                        trailing = ""
                    i += 1
                elif ch.isspace():
                    trailing += ch  # kept only if more text follows
                else:
                    value += trailing + ch
                    trailing = ""
            elif state == "'":
                if ch == "'":
                    state = "pre"
                else:
                    value += ch
            else:  # inside double quotes
                if ch == '"':
                    state = "pre"
                elif ch == "\\" and i + 1 < n:
                    nxt = text[i + 1]
                    if nxt != "\n":
                        value += nxt if nxt in '"\\`$' else ch + nxt
                    i += 1
                else:
                    value += ch
            i += 1
        values[key] = value
        i += 1
    return values


def systemd_generator() -> str | None:
    for folder in ("/usr/lib/systemd/user-environment-generators",
                   "/lib/systemd/user-environment-generators"):
        path = Path(folder) / GENERATOR
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return None


def read_with_systemd(text: str, tmp_path: Path) -> tuple[dict[str, str], str]:
    """systemd's own env-file parser: its environment.d generator shares the EnvironmentFile=
    parser (and adds ``$VAR`` expansion, unused by these files). It ignores empty values."""
    tool = systemd_generator()
    if tool is None:
        pytest.skip(f"systemd's {GENERATOR} is missing (Debian package `systemd`)")
    conf = tmp_path / "cfg" / "environment.d"
    conf.mkdir(parents=True)
    (conf / "50-ponte.conf").write_text(text)
    result = subprocess.run(
        ["env", "-i", f"HOME={tmp_path}", f"XDG_CONFIG_HOME={tmp_path / 'cfg'}",
         "XDG_CONFIG_DIRS=/nonexistent", "PATH=/usr/bin:/bin", tool],
        capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    found = {}
    for line in result.stdout.splitlines():
        key, _, value = shlex.split(line)[0].partition("=")  # it prints shell-quoted values
        if key.startswith(("PONTE_", "T_")):
            found[key] = value
    return found, result.stderr


@pytest.mark.parametrize("file", FILES, ids=IDS)
def test_shell_systemd_and_dotenv_read_the_same_values(file: Path, tmp_path: Path) -> None:
    shell = read_with_shell(file, tmp_path)  # empty folder: an unquoted * would run a command
    dotenv = read_with_dotenv(file)
    systemd = read_like_systemd(file.read_text())
    assert shell and set(shell) == set(dotenv) == set(systemd)
    for key in shell:
        assert shell[key] == dotenv[key] == systemd[key], (key, shell[key], dotenv[key],
                                                           systemd[key])
    assert shell["PONTE_SCHEDULE__CUSTOMERS"] == "*/5 * * * *"


@pytest.mark.parametrize("file", FILES, ids=IDS)
def test_systemd_itself_reads_the_same_values(file: Path, tmp_path: Path) -> None:
    found, stderr = read_with_systemd(file.read_text(), tmp_path)
    expected = read_with_dotenv(file)
    empty = {k for k, v in expected.items() if v == ""}
    assert found == {k: v for k, v in expected.items() if k not in empty}
    for line in stderr.splitlines():  # its only complaints: the empty values it skips
        assert any(f'"{k}"' in line for k in empty), line


@pytest.mark.parametrize("file", FILES, ids=IDS)
def test_pydantic_settings_reads_the_file_as_the_shell_does(
        file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("PONTE_"):
            monkeypatch.delenv(key)
    from_file = Settings(_env_file=file)  # type: ignore[call-arg]
    for key, value in read_with_shell(file, tmp_path).items():
        monkeypatch.setenv(key, value)
    assert from_file.model_dump() == Settings(_env_file=None).model_dump()  # type: ignore[call-arg]


SAMPLES = [
    "T_A='*/5 * * * *'",
    'T_B="x y"',
    "T_C=plain",
    "  T_D =  spaced out  ",
    "T_E='a#b'",
    'T_F="a\\"b\\\\c"',
    "T_G=un'quoted 'mix\"ed \"",
    "T_I='a' b\"c\"",
    "T_M=a\\ b  ",
    "T_N=a\\",
    "T_O=continued",
    "; T_H=ignored",
    "no equals sign here",
]


def test_the_systemd_reader_above_agrees_with_systemd(tmp_path: Path) -> None:
    text = "\n".join(SAMPLES) + "\n"
    found, _ = read_with_systemd(text, tmp_path)
    assert found == read_like_systemd(text)
    assert found["T_A"] == "*/5 * * * *" and found["T_D"] == "spaced out"


# The crontab line and the README's install step, run as written with stand-ins for the paths.

def _stub(tmp_path: Path, exit_code: int) -> tuple[Path, Path]:
    """A ``ponte`` that records its arguments and PONTE_* environment, then exits."""
    out = tmp_path / "stub.out"
    stub = tmp_path / "bin" / "ponte"
    stub.parent.mkdir(exist_ok=True)
    stub.write_text(f'#!/bin/sh\n{{ echo "ARGS=$*"; env | grep "^PONTE_"; }} > "{out}"\n'
                    f"echo 'a log line'\nexit {exit_code}\n")
    stub.chmod(0o755)
    return stub, out


def _crontab() -> tuple[dict[str, str], str]:
    env, commands = {}, []
    for line in (ROOT / "cron" / "crontab.example").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if re.match(r"^[A-Z_]+=", line):
            key, _, value = line.partition("=")
            env[key] = value
        else:
            commands.append(line.split(None, 5)[5])
    assert len(commands) == 1
    return env, commands[0]


def _stand_ins(command: str, tmp_path: Path, stub: Path) -> str:
    state, etc, log = tmp_path / "state", tmp_path / "etc_ponte", tmp_path / "logs"
    for d in (state, etc, log):
        d.mkdir(exist_ok=True)
    shutil.copy(ROOT / "cron" / "ponte.env.example", etc / "ponte.env")
    for real, fake in ((SHIPPED_BIN, str(stub)), ("/etc/ponte", str(etc)),
                       ("/var/lib/ponte", str(state)), ("/var/log/ponte", str(log))):
        command = command.replace(real, fake)
    assert "/etc/" not in command and "/var/" not in command and "/opt/" not in command
    return command


@pytest.mark.parametrize("exit_code,mailed", [(0, False), (1, False), (3, True), (4, True)])
def test_crontab_line_sourced_as_written_reaches_ponte(
        exit_code: int, mailed: bool, tmp_path: Path) -> None:
    cron_env, command = _crontab()
    stub, out = _stub(tmp_path, exit_code)
    command = _stand_ins(command, tmp_path, stub)
    result = subprocess.run(["env", "-i", *(f"{k}={v}" for k, v in cron_env.items()),
                             cron_env["SHELL"], "-c", command], cwd=tmp_path,
                            capture_output=True, text=True, timeout=30, check=False)
    seen = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert seen.pop("ARGS") == "sync"
    expected = read_with_dotenv(ROOT / "cron" / "ponte.env.example")
    expected["PONTE_LOG_FORMAT"] = "json"
    assert seen == {k: v for k, v in expected.items()}
    assert (tmp_path / "logs" / "sync.log").read_text() == "a log line\n"
    # cron mails whatever the line prints: nothing for 0/1, one line naming the code otherwise
    assert result.stderr == ""
    assert result.stdout == (f"ponte sync exited {exit_code}: see {tmp_path}/logs/sync.log\n"
                             if mailed else "")


def _readme_install_block() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("### Install (Debian/Ubuntu)", 1)[1].split("```sh\n", 1)[1]
    return block.split("```", 1)[0].splitlines()


def test_readme_install_step_sourced_as_written_reaches_ponte(tmp_path: Path) -> None:
    (line,) = [ln for ln in _readme_install_block() if ". /etc/ponte/ponte.env" in ln]
    prefix = "sudo -u ponte "
    assert line.startswith(prefix)
    stub, out = _stub(tmp_path, 0)
    command = _stand_ins(line[len(prefix):], tmp_path, stub)
    result = subprocess.run(["env", "-i", "PATH=/usr/bin:/bin", "/bin/sh", "-c", command],
                            cwd=tmp_path, capture_output=True, text=True, timeout=30,
                            check=False)
    assert result.returncode == 0, result.stderr
    seen = dict(ln.split("=", 1) for ln in out.read_text().splitlines())
    assert seen.pop("ARGS") == "db upgrade"
    assert seen == read_with_dotenv(ROOT / "cron" / "ponte.env.example")


def test_the_crontab_log_folder_is_made_by_the_install_steps_for_ponte() -> None:
    _, command = _crontab()
    logs = re.findall(r">>\s*(\S+)", command)
    assert logs, "the crontab line logs nowhere"
    made_for_ponte: set[str] = set()
    for line in _readme_install_block():
        words = shlex.split(line.split("#", 1)[0])
        if words[:2] == ["sudo", "install"] and "-d" in words and "ponte" in words:
            owner = words[words.index("-o") + 1]
            if owner == "ponte":
                made_for_ponte |= {w for w in words if w.startswith("/")}
    for log in logs:
        assert str(Path(log).parent) in made_for_ponte, (log, made_for_ponte)
