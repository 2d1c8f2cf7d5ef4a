"""Smoke tests against the real Tryton and BottleCRM servers that ``make realsys`` starts: each
answers with the seeded credentials, refuses bad ones, creates and reads back a record; the
reset really empties what a test created."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid
from urllib.parse import urlsplit

import httpx
import pytest
from realsys_servers import SETUP_SCRIPT, BottleCrm, Tryton, b64, realsys_dir

SEEDED_COMPANY = "My Company"


def unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:10]}"


def test_the_env_file_with_the_secrets_is_private(realsys_env: dict[str, str]) -> None:
    mode = stat.S_IMODE((realsys_dir() / "realsys.env").stat().st_mode)
    assert mode == 0o600, oct(mode)


# --------------------------------------------------------------------------- Tryton

@pytest.mark.parametrize(("key", "status"), [
    (None, 200),           # the seeded REST key
    ("0" * 128, 401),      # a wrong key
    ("", 401),             # no Authorization header
], ids=["seeded-key", "wrong-key", "no-key"])
def test_tryton_rest_answers_only_with_the_key(tryton: Tryton, key: str | None,
                                               status: int) -> None:
    with tryton.client(key=key) as client:
        response = client.get("/model/party.party", params={"f": "name"})
    assert response.status_code == status, response.text[:300]


def test_tryton_lists_the_seeded_company_party(tryton_client: httpx.Client) -> None:
    response = tryton_client.get("/model/party.party",
                                 params={"f": ["name"], "o": b64([["id", "ASC"]])})
    response.raise_for_status()
    assert SEEDED_COMPANY in [party["name"] for party in response.json()]


def test_tryton_creates_a_party_and_reads_it_back(tryton_client: httpx.Client) -> None:
    name = unique("Acme BVBA")
    created = tryton_client.post("/model/party.party", params={"f": "name"}, json={
        "name": name,
        "identifiers": [["create", [{"type": "eu_vat", "code": "BE0897290877"}]]],
        "contact_mechanisms": [["create", [{"type": "email", "value": "info@acme.example"}]]],
    })
    assert created.status_code == 200, created.text[:300]
    party_id = created.json()["id"]

    read = tryton_client.get(f"/model/party.party/{party_id}",
                             params={"f": ["name", "tax_identifier.code", "email", "create_date"]})
    assert read.status_code == 200, read.text[:300]
    record = read.json()
    assert (record["name"], record["tax_identifier"]["code"], record["email"]) == (
        name, "BE0897290877", "info@acme.example")
    assert record["create_date"]["__class__"] == "datetime"


# --------------------------------------------------------------------------- BottleCRM

@pytest.mark.parametrize(("token", "status"), [
    (None, 200),                                # the seeded personal access token
    ("bcrm_pat_" + "0" * 40, 403),              # a wrong token: 403, not 401
    ("", 403),                                  # no Authorization header
], ids=["seeded-token", "wrong-token", "no-token"])
def test_bottlecrm_answers_only_with_the_token(bottlecrm: BottleCrm, token: str | None,
                                               status: int) -> None:
    with bottlecrm.client(token=token) as client:
        response = client.get("/accounts/", params={"limit": 10, "offset": 0})
    assert response.status_code == status, response.text[:300]


def test_bottlecrm_creates_an_account_and_reads_it_back(bottlecrm_client: httpx.Client) -> None:
    name = unique("Acme Corp")
    created = bottlecrm_client.post("/accounts/", json={
        "name": name, "email": "info@acme.example", "city": "Brussels", "country": "BE",
        "currency": "EUR", "custom_fields": {"tax_id": "BE0897290877"}})
    assert created.status_code == 200, created.text[:300]
    body = created.json()
    assert body["error"] is False and set(body) >= {"id"}, body
    account_id = body["id"]

    read = bottlecrm_client.get(f"/accounts/{account_id}/")
    assert read.status_code == 200, read.text[:300]
    account = read.json()["account_obj"]
    assert (account["name"], account["city"], account["custom_fields"]) == (
        name, "Brussels", {"tax_id": "BE0897290877"})

    listed = bottlecrm_client.get("/accounts/", params={"limit": 500, "offset": 0})
    listed.raise_for_status()
    names = [a["name"] for a in listed.json()["active_accounts"]["open_accounts"]]
    assert name in names


# --------------------------------------------------------------------------- reset

def run_setup(command: str, tryton: Tryton, bottlecrm: BottleCrm) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PONTE_TEST_REALSYS_DIR": str(realsys_dir()),
           "PONTE_TEST_REALSYS_TRYTON_PORT": str(urlsplit(tryton.url).port),
           "PONTE_TEST_REALSYS_BOTTLECRM_PORT": str(urlsplit(bottlecrm.url).port)}
    return subprocess.run([sys.executable, str(SETUP_SCRIPT), command], env=env,
                          capture_output=True, text=True, timeout=180, check=False)


def test_reset_empties_what_was_created_and_keeps_the_seed(tryton: Tryton,
                                                           bottlecrm: BottleCrm) -> None:
    with tryton.client() as erp, bottlecrm.client() as crm:
        party = erp.post("/model/party.party", params={"f": "name"}, json={"name": unique("Gone")})
        account = crm.post("/accounts/", json={"name": unique("Gone Corp")})
        assert party.status_code == 200 and account.status_code == 200
        party_id, account_id = party.json()["id"], account.json()["id"]
        assert erp.get(f"/model/party.party/{party_id}").status_code == 200
        assert crm.get(f"/accounts/{account_id}/").status_code == 200

    done = run_setup("reset", tryton, bottlecrm)
    assert done.returncode == 0, done.stdout + done.stderr

    with tryton.client() as erp, bottlecrm.client() as crm:
        assert erp.get(f"/model/party.party/{party_id}").status_code == 404
        assert crm.get(f"/accounts/{account_id}/").status_code == 404
        # the seed survives, and the same credentials still work
        parties = erp.get("/model/party.party", params={"f": "name"})
        assert [p["name"] for p in parties.json()] == [SEEDED_COMPANY]
        accounts = crm.get("/accounts/", params={"limit": 10, "offset": 0})
        assert accounts.status_code == 200
        assert accounts.json()["active_accounts"]["open_accounts"] == []


def test_no_setup_or_server_log_holds_the_key_or_the_token(realsys_env: dict[str, str]) -> None:
    secrets = [realsys_env[name] for name in ("TRYTON_KEY", "BOTTLECRM_TOKEN")
               if name in realsys_env]
    logs = sorted(realsys_dir().rglob("*.log"))
    assert secrets and logs
    for log in logs:
        text = log.read_text(encoding="utf-8", errors="replace")
        assert not [s for s in secrets if s in text], f"a secret is written in {log}"
