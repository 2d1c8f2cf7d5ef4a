"""The shipped cron/ files: systemd units pass `systemd-analyze verify`, the crontab line is five
valid fields plus a `ponte sync` command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from apscheduler.triggers.cron import CronTrigger

CRON = Path(__file__).resolve().parents[2] / "cron"
UNITS = ["ponte-sync.service", "ponte-sync.timer", "ponte.service", "ponte-serve.service",
         "ponte-schedule.service", "ponte-worker@.service"]
SHIPPED_BIN = "/opt/ponte/.venv/bin/ponte"


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt and os.geteuid() == 0:
        try:
            subprocess.run([apt, "install", "-y", "-q", "systemd"], check=True, timeout=300,
                           capture_output=True, env={**os.environ,
                                                     "DEBIAN_FRONTEND": "noninteractive"})
        except (subprocess.SubprocessError, OSError) as exc:
            pytest.skip(f"systemd-analyze is missing and `apt-get install systemd` failed "
                        f"({exc}); install Debian's systemd package to run this test")
        found = shutil.which("systemd-analyze")
        if found:
            return found
    pytest.skip("systemd-analyze is missing (Debian package `systemd`); it could not be "
                "installed here (needs root, apt-get and the package mirror)")


def unit_settings(name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (CRON / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            k, v = line.split("=", 1)
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def test_systemd_units_verify(tmp_path: Path) -> None:
    tool = systemd_analyze()
    ponte = Path(sys.executable).parent / "ponte"
    names = []
    for name in UNITS:  # point ExecStart at this checkout's ponte: verify checks it exists
        text = (CRON / name).read_text()
        name = name.replace("@.", "@1.")  # a template is verified as one of its instances
        (tmp_path / name).write_text(text.replace(SHIPPED_BIN, str(ponte)))
        names.append(name)
    result = subprocess.run([tool, "verify", "--man=no", *(str(tmp_path / n) for n in names)],
                            check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.strip() == "", result.stderr  # no warnings either


@pytest.mark.parametrize("name", ["ponte-sync.service", "ponte.service", "ponte-serve.service",
                                  "ponte-schedule.service", "ponte-worker@.service"])
def test_services_run_as_ponte_sandboxed(name: str) -> None:
    s = unit_settings(name)
    assert s["User"] == ["ponte"] and s["EnvironmentFile"] == ["/etc/ponte/ponte.env"]
    assert s["WorkingDirectory"] == ["/var/lib/ponte"]
    assert s["ReadWritePaths"] == ["/var/lib/ponte"]  # the state dir only
    for key, value in {"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
                       "NoNewPrivileges": "yes"}.items():
        assert s[key] == [value], key
    assert s["ExecStart"][0].startswith(SHIPPED_BIN)


def test_oneshot_sync_and_daemon_and_timer() -> None:
    assert unit_settings("ponte-sync.service")["Type"] == ["oneshot"]
    assert unit_settings("ponte-sync.service")["ExecStart"] == [f"{SHIPPED_BIN} sync"]
    assert unit_settings("ponte.service")["ExecStart"] == [f"{SHIPPED_BIN} run"]
    assert unit_settings("ponte-serve.service")["ExecStart"] == [f"{SHIPPED_BIN} serve --poll"]
    assert unit_settings("ponte-sync.timer")["Unit"] == ["ponte-sync.service"]
    assert unit_settings("ponte-schedule.service")["ExecStart"] == [f"{SHIPPED_BIN} schedule"]
    assert unit_settings("ponte-worker@.service")["ExecStart"] == [
        f"{SHIPPED_BIN} worker --concurrency 5"]


def test_crontab_line_is_five_valid_fields_and_ponte_sync() -> None:
    lines = [line for line in (CRON / "crontab.example").read_text().splitlines()
             if line.strip() and not line.startswith("#") and "=" not in line.split()[0]]
    assert len(lines) == 1
    fields = lines[0].split(None, 5)
    assert len(fields) == 6
    schedule, command = " ".join(fields[:5]), fields[5]
    CronTrigger.from_crontab(schedule)  # raises on an invalid schedule
    assert "ponte sync" in command and "flock" not in command
    assert "/etc/ponte/ponte.env" in command


@pytest.mark.parametrize("name", ["ponte-sync.service", "ponte.service", "ponte-serve.service"])
def test_only_success_exit_codes_count_as_success(name: str) -> None:
    from etl.exitcodes import Exit

    extra = {int(code) for value in unit_settings(name).get("SuccessExitStatus", [])
             for code in value.split()}
    assert extra <= {Exit.OK, Exit.QUARANTINED}  # 2, 3, 4 and 5 (internal error) are failures
    assert not extra & {Exit.CONFIG, Exit.FAILED, Exit.LOCKED, Exit.INTERNAL}
