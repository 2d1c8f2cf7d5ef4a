"""ponte as a real process against the real Tryton and BottleCRM servers: the environment that
points it at both (credentials from realsys.env, state in a temporary SQLite file), runs of
``ponte sync``/``verify`` with their JSON reports, resets of both servers, and reads of what
each server holds (by natural key) to check for duplicates and drift by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from realsys_servers import ROOT, SETUP_SCRIPT, BottleCrm, Tryton, b64

PONTE = Path(sys.executable).parent / "ponte"  # the installed console script
MAPPINGS = ROOT / "mappings" / "bottlecrm_tryton"


def reset_servers() -> None:
    """Both servers back to their pristine databases (seconds), so a scenario starts clean."""
    done = subprocess.run([sys.executable, str(SETUP_SCRIPT), "reset"], capture_output=True,
                          text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


def ponte_env(tryton: Tryton, crm: BottleCrm, tmp: Path) -> dict[str, str]:
    """The settings of a ponte syncing BottleCRM (CRM) and Tryton (ERP); secrets only here."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PONTE_")}
    env.update({
        "PONTE_CRM__KIND": "bottlecrm",
        "PONTE_CRM__BASE_URL": crm.url,
        "PONTE_CRM__CREDENTIALS__TOKEN": crm.token,
        "PONTE_ERP__KIND": "tryton",
        "PONTE_ERP__BASE_URL": tryton.url,
        "PONTE_ERP__CREDENTIALS__KEY": tryton.key,
        "PONTE_ERP__CREDENTIALS__DATABASE": tryton.database,
        "PONTE_ERP__CREDENTIALS__COMPANY": str(tryton.company),
        "PONTE_STATE_URL": f"sqlite:///{tmp / 'state.db'}",
        "PONTE_MAPPINGS_DIR": str(MAPPINGS),
        # one single-threaded Tryton on loopback: a write commits before the next listing is
        # served, so no lookback is needed; the default 600 s would re-read the last ten
        # minutes each run and hide what the domain filter saves
        "PONTE_LOOKBACK_S": "0",
        "PONTE_SAFETY_LAG_S": "0",
    })
    return env


@dataclass
class Run:
    code: int
    out: str
    err: str
    seconds: float

    @property
    def report(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.out))
        except json.JSONDecodeError:
            raise AssertionError(f"not one JSON object (exit {self.code}):\n{self.out[-2000:]}\n"
                                 f"{self.err[-3000:]}") from None


@dataclass
class PonteProcess:
    env: dict[str, str]
    cwd: Path
    runs: list[Run] = field(default_factory=list)

    def run(self, *args: str, timeout: float = 900) -> Run:
        started = time.monotonic()
        done = subprocess.run([str(PONTE), *args], cwd=self.cwd, env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=False)
        run = Run(done.returncode, done.stdout, done.stderr, time.monotonic() - started)
        self.runs.append(run)
        return run

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = self.cwd / "background.err"
        with log.open("wb") as err:
            return subprocess.Popen([str(PONTE), *args], cwd=self.cwd, env=self.env,
                                    stdout=subprocess.DEVNULL, stderr=err)

    def sync(self, *entities: str) -> dict[str, Any]:
        run = self.run("sync", *entities, "--json")
        report = run.report
        assert run.code == 0 and report["status"] == "ok", (run.out[-3000:], run.err[-3000:])
        return report

    def verify(self, *args: str) -> dict[str, Any]:
        return self.run("verify", *args, "--json").report


def writes(report: dict[str, Any]) -> int:
    """Records created or updated on either side, and write calls made, in one run."""
    records = sum(e[side][kind] for e in report["entities"].values()
                  for side in ("crm", "erp") for kind in ("created", "updated"))
    calls = sum(report["api_calls"][side]["write"] for side in ("crm", "erp"))
    return records + calls


# --- what the servers hold ---------------------------------------------------------------------

def tryton_all(client: httpx.Client, model: str, fields: list[str], *,
               archived: bool = False) -> list[dict[str, Any]]:
    headers = {}
    if archived:
        headers["X-Tryton-Context"] = b64({"company": 1, "active_test": False})
    out: list[dict[str, Any]] = []
    while True:
        page = client.get(f"/model/{model}", headers=headers, params={
            "f": fields, "s": 500, "p": len(out), "o": b64([["id", "ASC"]])})
        page.raise_for_status()
        got = page.json()
        out += got
        if len(got) < 500:
            return out


def crm_accounts(client: httpx.Client) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for state, key in (("active_accounts", "open_accounts"),
                       ("closed_accounts", "close_accounts")):
        offset = 0
        while True:
            page = client.get("/accounts/", params={"limit": 200, "offset": offset})
            page.raise_for_status()
            got = page.json()[state][key]
            out += got
            offset += 200
            if len(got) < 200:
                break
    return list({a["id"]: a for a in out}.values())


def crm_list(client: httpx.Client, path: str, records: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        page = client.get(path, params={"limit": 200, "offset": len(out)})
        page.raise_for_status()
        got = page.json()[records]
        out += got
        if len(got) < 200:
            return out


def duplicates(values: list[Any]) -> dict[Any, int]:
    return {v: n for v, n in Counter(values).items() if n > 1}
