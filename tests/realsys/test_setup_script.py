"""The setup script's checks that need no server: finding a Python >= 3.12 for BottleCRM, and
the clear errors when there is none or a named one is too old; bad settings named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from realsys_servers import SETUP_SCRIPT

# a stand-in interpreter: prints a version the way the script asks for it, or fails like an
# unselected pyenv shim does
FAKE = {
    "3.13": "#!/bin/sh\necho 3 13\n",
    "3.12": "#!/bin/sh\necho 3 12\n",
    "3.11": "#!/bin/sh\necho 3 11\n",
    "shim": "#!/bin/sh\necho 'pyenv: python3.13: command not found' >&2\nexit 127\n",
}


def fake_python(folder: Path, name: str, kind: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(FAKE[kind], encoding="ascii")
    path.chmod(0o755)
    return path


def run_script(command: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PONTE_TEST_REALSYS")}
    base.update({"PATH": str(tmp_path / "bin"), "HOME": str(tmp_path / "home"),
                 "PYENV_ROOT": str(tmp_path / "pyenv"),
                 "PONTE_TEST_REALSYS_DIR": str(tmp_path / "cache")})
    base.update(env)
    return subprocess.run([sys.executable, str(SETUP_SCRIPT), command], env=base,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(("on_path", "in_pyenv", "chosen"), [
    ({"python3.13": "3.13"}, [], "bin/python3.13"),
    ({"python3.13": "shim", "python3.12": "3.12"}, [], "bin/python3.12"),
    ({"python3.13": "shim", "python3": "3.11"}, ["3.12.1"], "pyenv/versions/3.12.1/bin/python3"),
    ({"python3": "3.11"}, ["3.11.7", "3.13.0"], "pyenv/versions/3.13.0/bin/python3"),
], ids=["on-path", "skips-a-failing-shim", "pyenv-version-not-selected", "newest-pyenv"])
def test_finds_a_python_312_or_newer(tmp_path: Path, on_path: dict[str, str],
                                     in_pyenv: list[str], chosen: str) -> None:
    for name, kind in on_path.items():
        fake_python(tmp_path / "bin", name, kind)
    for version in in_pyenv:
        fake_python(tmp_path / "pyenv" / "versions" / version / "bin", "python3",
                    version.rsplit(".", 1)[0])
    done = run_script("python", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(str(tmp_path / chosen)), done.stdout


def test_no_python_312_is_a_clear_error_naming_what_was_tried_and_the_fix(tmp_path: Path) -> None:
    shim = fake_python(tmp_path / "bin", "python3.13", "shim")
    old = fake_python(tmp_path / "bin", "python3", "3.11")
    done = run_script("python", tmp_path)
    assert done.returncode == 1
    assert "BottleCRM (django-crm 1.35.0) needs Python >= 3.12 and none was found" in done.stderr
    assert f"tried: {shim}, {old}" in done.stderr
    assert "PONTE_TEST_REALSYS_PYTHON=" in done.stderr and "make realsys" in done.stderr


@pytest.mark.parametrize(("kind", "message"), [
    ("3.11", "is Python 3.11; BottleCRM needs Python >= 3.12"),
    ("shim", "does not run as a Python with venv"),
], ids=["too-old", "does-not-run"])
def test_a_named_python_that_will_not_do_is_refused(tmp_path: Path, kind: str,
                                                    message: str) -> None:
    named = fake_python(tmp_path / "elsewhere", "python", kind)
    fake_python(tmp_path / "bin", "python3.13", "3.13")  # would be found, but the name wins
    done = run_script("python", tmp_path, PONTE_TEST_REALSYS_PYTHON=str(named))
    assert done.returncode == 1
    assert f"PONTE_TEST_REALSYS_PYTHON='{named}'" in done.stderr and message in done.stderr


@pytest.mark.parametrize(("name", "value", "message"), [
    ("PONTE_TEST_REALSYS_TRYTON_PORT", "eight", "'eight': not a port number"),
    ("PONTE_TEST_REALSYS_BOTTLECRM_PORT", "80", "'80': must be between 1024 and 65535"),
])
def test_a_bad_port_setting_is_named(tmp_path: Path, name: str, value: str, message: str) -> None:
    done = run_script("status", tmp_path, **{name: value})
    assert done.returncode == 1
    assert f"{name}={message}" in done.stderr


def test_reset_before_setup_says_to_run_make_realsys(tmp_path: Path) -> None:
    done = run_script("reset", tmp_path)
    assert done.returncode == 1
    assert "nothing is set up in" in done.stderr and "make realsys" in done.stderr


def test_status_and_stop_on_an_empty_cache_report_nothing_running(tmp_path: Path) -> None:
    status = run_script("status", tmp_path)
    stop = run_script("stop", tmp_path)
    assert status.returncode == 0 and stop.returncode == 0
    assert "tryton: not set up" in status.stdout and "bottlecrm: not set up" in status.stdout
    assert "tryton: was not running" in stop.stdout
