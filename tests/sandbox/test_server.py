"""Both simulators over real HTTP: in a background thread (``running_sandbox``) and as the
``ponte sandbox`` command, including ``--db`` persistence across a restart."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from etl.errors import ConfigError
from etl.sandbox.keys import SANDBOX_APP_KEY, SANDBOX_APP_SECRET, SANDBOX_USER_KEY
from etl.sandbox.server import check_loopback, db_paths, running_sandbox

ROOT = Path(__file__).resolve().parents[2]
# ``python -m etl.cli`` is what the ``ponte`` console script runs (``etl.cli:main``); started
# from the checkout it does not depend on how the package was installed into the venv.
PONTE = [sys.executable, "-m", "etl"]


def listar_clientes(erp_url: str, app_key: str, app_secret: str) -> dict[str, Any]:
    body = {"call": "ListarClientes", "app_key": app_key, "app_secret": app_secret,
            "param": [{"pagina": 1, "registros_por_pagina": 100, "apenas_importado_api": "N"}]}
    response = httpx.post(f"{erp_url.rstrip('/')}/geral/clientes/", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def contacts(crm_url: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{crm_url}/Contacts", headers={"User-Key": SANDBOX_USER_KEY},
                         timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["value"]


def test_running_sandbox_serves_both_apis() -> None:
    with running_sandbox(customers=20, products=5, orders=3) as sb:
        assert sb.erp_url.endswith("/api/v1") and sb.crm_url.startswith("http://127.0.0.1:")
        served = contacts(sb.crm_url)
        assert {c["Register"] for c in served} == {r.data["Register"] for r in sb.crm.db["Contacts"]}
        assert served and all(c["CreateDate"].endswith("-03:00") for c in served)
        page = listar_clientes(sb.erp_url, sb.app_key, sb.app_secret)
        assert page["total_de_registros"] == len(sb.erp.db["clientes"]) > 0
        assert {c["cnpj_cpf"] for c in page["clientes_cadastro"]} == {
            r.data["cnpj_cpf"] for r in sb.erp.db["clientes"]}
        refused = httpx.get(f"{sb.crm_url}/Contacts", headers={"User-Key": "wrong"})
        assert refused.status_code == 401
        url = sb.crm_url
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/Contacts", headers={"User-Key": SANDBOX_USER_KEY}, timeout=2)


def test_running_sandboxes_do_not_share_state() -> None:
    with running_sandbox(customers=4) as a, running_sandbox() as b:
        assert a.crm_url != b.crm_url
        assert len(contacts(a.crm_url)) == len(a.crm.db["Contacts"]) and contacts(b.crm_url) == []


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.0.10", "example.com", "::"])
def test_only_loopback_hosts(host: str) -> None:
    with pytest.raises(ConfigError, match="loopback only"):
        check_loopback(host)
    for ok in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        check_loopback(ok)


def test_db_paths() -> None:
    assert db_paths("data/sandbox.db") == ("data/sandbox.crm.db", "data/sandbox.erp.db")
    assert db_paths("sandbox") == ("sandbox.crm.db", "sandbox.erp.db")


# --- the ``ponte sandbox`` command --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(*args: str) -> tuple[subprocess.Popen[str], str, str]:
    crm_port, erp_port = free_port(), free_port()
    proc = subprocess.Popen(
        [*PONTE, "sandbox", "--crm-port", str(crm_port), "--erp-port", str(erp_port), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    crm_url = f"http://127.0.0.1:{crm_port}"
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, proc.communicate()
        try:
            if httpx.get(f"{crm_url}/_sandbox/clock", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "ponte sandbox did not answer"
        time.sleep(0.1)
    return proc, crm_url, f"http://127.0.0.1:{erp_port}/api/v1/"


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    return out


def test_ponte_sandbox_command_and_db_persistence(tmp_path: Path) -> None:
    db = tmp_path / "sandbox.db"
    proc, crm_url, erp_url = start("--customers", "20", "--db", str(db))
    try:
        first = contacts(crm_url)
        assert first
        clientes = listar_clientes(erp_url, SANDBOX_APP_KEY, SANDBOX_APP_SECRET)
        created = httpx.post(f"{crm_url}/_sandbox/Contacts", json={"Name": "Conceição Ltda",
                                                                   "TypeId": 1}, timeout=10)
        assert created.status_code == 201
    finally:
        out = stop(proc)
    assert crm_url in out and erp_url in out and SANDBOX_USER_KEY in out
    assert SANDBOX_APP_SECRET in out and "cp .env.example .env" in out and "seeded" in out
    assert all(Path(p).exists() for p in db_paths(str(db)))

    proc, crm_url, erp_url = start("--customers", "5", "--db", str(db))
    try:
        again = contacts(crm_url)
        assert [c["Id"] for c in again] == [c["Id"] for c in first] + [created.json()["Id"]]
        assert again[-1]["Name"] == "Conceição Ltda"
        same = listar_clientes(erp_url, SANDBOX_APP_KEY, SANDBOX_APP_SECRET)
        assert same["clientes_cadastro"] == clientes["clientes_cadastro"]
    finally:
        out = stop(proc)
    assert "kept" in out and "seeded" not in out


def test_ponte_sandbox_refuses_a_public_host() -> None:
    done = subprocess.run([*PONTE, "sandbox", "--host", "0.0.0.0", "--crm-port",
                           str(free_port()), "--erp-port", str(free_port())],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert done.returncode != 0 and "loopback only" in done.stdout + done.stderr
