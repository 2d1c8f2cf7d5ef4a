"""Fault drills: ponte against the sandbox simulators run as real servers in their own process,
with ponte itself run as ``ponte sync`` child processes (so a drill can kill it).

    .venv/bin/python bench/drills.py [--drill crash|storm|bad_input|overlap|clocks|all] [--small]

Each drill prints its figures as one JSON line (``{"drill": ..., ...}``) and a summary table
at the end. ``--small`` uses the sizes the test suite uses (tests/drills/). Drills:

* ``crash``: SIGKILL ponte at random instants of an initial sync, restart it each time; then one
  clean sync and ``ponte verify``: nothing missing, nothing duplicated.
* ``storm``: 5xx, timeouts, dropped connections and 429 bursts on both simulators; every valid
  record synced, nothing duplicated; retries and 429s counted, wall time against a clean run.
* ``bad_input``: malformed records (check digits, missing required fields, overlong strings,
  wrong types, control characters) among valid ones with emoji and accents: each malformed one
  quarantined with a reason naming the field and the problem; every valid one synced.
* ``overlap``: two syncs started together, cron runs overlapping a slow run, and a run outliving
  a short lock lease: never two writers (losers exit 4 and write nothing), no duplicates.
* ``clocks``: simulator clocks skewed +-5 min, records sharing one timestamp across page
  boundaries, edits landing during runs: no change missed (verify = 0 drift after the next runs).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
MAPPINGS = ROOT / "mappings" / "ploomes_omie"
FAST_RPM = 100_000

# --------------------------------------------------------------------------------- the sandbox

_LAUNCH = r"""
import json, sys
from etl.sandbox.omie import OmieSim
from etl.sandbox.ploomes import PloomesSim
from etl.sandbox.seed import seed
from etl.sandbox.server import _bind, _servers, run_servers

cfg = json.loads(sys.argv[1])
crm = PloomesSim(user_key=cfg["user_key"], rpm=cfg["rpm"], seed=cfg["seed"])
erp = OmieSim(app_key=cfg["app_key"], app_secret=cfg["app_secret"], rpm=cfg["rpm"],
              seed=cfg["seed"])
if cfg["customers"] or cfg["products"] or cfg["orders"]:
    seed(crm, erp, customers=cfg["customers"], products=cfg["products"], orders=cfg["orders"],
         seed=cfg["seed"])
socks = (_bind("127.0.0.1", 0), _bind("127.0.0.1", 0))
print(json.dumps({"crm_port": socks[0].getsockname()[1],
                  "erp_port": socks[1].getsockname()[1]}), flush=True)
run_servers(_servers(crm, erp), socks, handle_signals=True)
"""

DEFAULT_CREDS = {"user_key": "sandbox-ploomes-user-key", "app_key": "1000000000001",
                 "app_secret": "sandbox-omie-app-secret"}


class SandboxProcess:
    """Both simulators in a child process of their own (killing ponte leaves them running),
    driven through their ``/_sandbox/`` admin API."""

    def __init__(self, workdir: Path, *, customers: int = 0, products: int = 0, orders: int = 0,
                 seed: int = 42, creds: dict[str, str] | None = None,
                 rpm: int = FAST_RPM) -> None:
        self.creds = dict(creds or DEFAULT_CREDS)
        cfg = {**self.creds, "customers": customers, "products": products, "orders": orders,
               "seed": seed, "rpm": rpm}
        self.log = open(workdir / "sandbox.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _LAUNCH, json.dumps(cfg)], cwd=ROOT, text=True,
            stdout=subprocess.PIPE, stderr=self.log)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(5)
            raise RuntimeError(f"sandbox did not start; see {workdir / 'sandbox.log'}")
        ports = json.loads(line)
        self.crm_url = f"http://127.0.0.1:{ports['crm_port']}"
        self.erp_root = f"http://127.0.0.1:{ports['erp_port']}"
        self.erp_url = self.erp_root + "/api/v1"
        self.http = httpx.Client(timeout=60)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.faults(redundant_rule=False)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _root(self, side: str) -> str:
        return self.crm_url if side == "crm" else self.erp_root

    def admin(self, side: str, method: str, path: str, body: Any = None) -> Any:
        r = self.http.request(method, f"{self._root(side)}/_sandbox/{path}",
                              json=body if body is not None else None)
        r.raise_for_status()
        return r.json()

    def faults(self, side: str = "both", **knobs: Any) -> None:
        """Set fault knobs; the Omie redundant-call rule stays off unless named."""
        for s in ("crm", "erp") if side == "both" else (side,):
            self.admin(s, "POST", "faults", knobs)

    def clear_faults(self) -> None:
        self.faults(latency_ms=0, error_rate=0, timeout_rate=0, drop_rate=0, burst_429=0,
                    page_cap=None, same_timestamp=False, redundant_rule=False)

    def dump(self, side: str, table: str) -> list[dict[str, Any]]:
        return list(self.admin(side, "GET", table)["records"])

    def clock(self, side: str, advance_s: float) -> None:
        self.admin(side, "POST", "clock", {"advance_s": advance_s})

    def requests(self, side: str) -> list[dict[str, Any]]:
        return list(self.admin(side, "GET", "requests")["requests"])

    def env(self, state: Path, **extra: Any) -> dict[str, str]:
        """The environment of a ``ponte`` child process pointed at this sandbox."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PONTE_")}
        env.update({
            "PONTE_CRM__BASE_URL": self.crm_url, "PONTE_ERP__BASE_URL": self.erp_url,
            "PONTE_STATE_URL": f"sqlite:///{state}", "PONTE_MAPPINGS_DIR": str(MAPPINGS),
            "PONTE_CRM__REQUESTS_PER_MINUTE": str(FAST_RPM),
            "PONTE_ERP__REQUESTS_PER_MINUTE": str(FAST_RPM),
            "PONTE_CRM__CREDENTIALS__USER_KEY": self.creds["user_key"],
            "PONTE_ERP__CREDENTIALS__APP_KEY": self.creds["app_key"],
            "PONTE_ERP__CREDENTIALS__APP_SECRET": self.creds["app_secret"],
            "PONTE_SAFETY_LAG_S": "1", "PONTE_LOG_LEVEL": "INFO",
            # `--json` goes through rich, which wraps at the terminal width (80 when piped)
            # and so can break long strings across lines: a wide "terminal" keeps JSON whole
            "COLUMNS": "100000",
        })
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


@contextmanager
def sandbox(workdir: Path, **kwargs: Any) -> Iterator[SandboxProcess]:
    sb = SandboxProcess(workdir, **kwargs)
    try:
        yield sb
    finally:
        sb.stop()


# ----------------------------------------------------------------------------- ponte processes


def ponte_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("ponte")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "etl"]


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str
    seconds: float

    def json(self) -> Any:
        return json.loads(self.stdout) if self.stdout.strip() else None


def ponte(args: list[str], env: dict[str, str], cwd: Path, *, timeout: float = 1800) -> Result:
    t0 = time.monotonic()
    p = subprocess.run([*ponte_cmd(), *args], env=env, cwd=cwd, capture_output=True, text=True,
                       timeout=timeout, check=False)
    return Result(p.returncode, p.stdout, p.stderr, time.monotonic() - t0)


def start_ponte(args: list[str], env: dict[str, str], cwd: Path,
                log: Path | None = None) -> subprocess.Popen[str]:
    out = open(log, "a") if log else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen([*ponte_cmd(), *args], env=env, cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=out)


def verify(env: dict[str, str], cwd: Path) -> dict[str, Any]:
    r = ponte(["verify", "--json"], env, cwd)
    data = r.json()
    if data is None:
        raise RuntimeError(f"verify printed nothing (rc {r.rc}): {r.stderr[-2000:]}")
    return {name: {k: v for k, v in e.items() if k != "items"}
            for name, e in data["entities"].items()} | {"_items": {
                name: e.get("items", [])[:5] for name, e in data["entities"].items()}}


def verify_totals(v: dict[str, Any]) -> dict[str, int]:
    keys = ("drift", "duplicates", "missing_in_crm", "missing_in_erp", "mismatched", "unlinked")
    return {k: sum(e.get(k, 0) for n, e in v.items() if not n.startswith("_")) for k in keys}


def sync_until_clean(env: dict[str, str], cwd: Path, *, max_runs: int = 8) -> list[int]:
    """Sync until a run ends ok (0) or with quarantined records only (1); the exit codes."""
    codes = []
    for _ in range(max_runs):
        r = ponte(["sync", "--json"], env, cwd)
        codes.append(r.rc)
        if r.rc in (0, 1):
            break
    return codes


# --------------------------------------------------------------------------- duplicate counts


def _digits(value: Any) -> str:
    return "".join(ch for ch in str(value or "") if ch.isdigit())


def duplicates(sb: SandboxProcess) -> dict[str, int]:
    """Records sharing a natural key on one side, counted from the admin dumps (extra copies)."""
    def extra(values: list[str]) -> int:
        c = Counter(v for v in values if v)
        return sum(n - 1 for n in c.values() if n > 1)

    contacts = sb.dump("crm", "Contacts")
    clientes = sb.dump("erp", "clientes")
    pedidos = sb.dump("erp", "pedidos")
    return {
        "crm_customers_by_tax_id": extra([_digits(r.get("Register")) for r in contacts]),
        "erp_customers_by_tax_id": extra([_digits(r.get("cnpj_cpf")) for r in clientes]),
        "crm_customers_by_key": extra([str(r.get("Key") or "") for r in contacts]),
        "erp_customers_by_integration_code": extra(
            [str(r.get("codigo_cliente_integracao") or "") for r in clientes]),
        "crm_products_by_code": extra([str(r.get("Code") or "") for r in sb.dump("crm",
                                                                              "Products")]),
        "erp_products_by_code": extra([str(r.get("codigo") or "") for r in sb.dump("erp",
                                                                                "produtos")]),
        "erp_orders_by_integration_code": extra(
            [str(r.get("cabecalho", {}).get("codigo_pedido_integracao") or "") for r in pedidos]),
    }


def state_rows(state: Path, sql: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(state)
    try:
        return list(con.execute(sql))
    finally:
        con.close()


# ------------------------------------------------------------------------------------- sizes

SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "crash": {"full": {"customers": 2000, "products": 500, "orders": 300, "kills": 20,
                       "span_s": 15.0},  # ~ one uninterrupted initial sync on this machine
              "small": {"customers": 120, "products": 30, "orders": 20, "kills": 4,
                        "span_s": 8.0}},
    "storm": {"full": {"customers": 600, "products": 150, "orders": 100},
              "small": {"customers": 20, "products": 6, "orders": 4, "burst_every_s": 20.0,
                        "burst_n": 2}},
    "bad_input": {"full": {"customers": 600, "products": 150, "orders": 100, "scale": 1.0},
                  "small": {"customers": 30, "products": 10, "orders": 8, "scale": 0.1}},
    "overlap": {"full": {"customers": 600, "products": 150, "orders": 100, "latency_ms": 20,
                         "cron_every_s": 3.0, "lease_latency_ms": 80},
                "small": {"customers": 60, "products": 15, "orders": 10, "latency_ms": 20,
                          "cron_every_s": 1.5, "lease_latency_ms": 250}},
    "clocks": {"full": {"customers": 400, "products": 100, "orders": 60, "skew_s": 300,
                        "edits": 200, "runs": 4, "lookback_s": 600},
               "small": {"customers": 30, "products": 8, "orders": 4, "skew_s": 6,
                         "edits": 24, "runs": 2, "lookback_s": 12}},
}


# -------------------------------------------------------------------------------------- crash


def drill_crash(workdir: Path, *, customers: int, products: int, orders: int, kills: int,
                span_s: float, seed: int = 1) -> dict[str, Any]:
    """SIGKILL an initial sync at ``kills`` random instants spread over ``span_s`` seconds of
    ponte run time; restart after each kill; then one clean sync and verify."""
    rng = random.Random(seed)
    instants = sorted(rng.uniform(0, span_s) for _ in range(kills))
    gaps = [max(0.2, b - a) for a, b in zip([0.0, *instants], instants, strict=False)]
    state = workdir / "state.db"
    t0 = time.monotonic()
    with sandbox(workdir, customers=customers, products=products, orders=orders) as sb:
        env = sb.env(state, PONTE_LOCK_LEASE_S=900)
        done = runs = finished_early = locked = 0
        for gap in gaps:
            proc = start_ponte(["sync", "--json"], env, workdir, workdir / "ponte.log")
            runs += 1
            try:
                rc = proc.wait(gap)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                done += 1
            else:
                finished_early += 1
                locked += rc == 4
        clean = ponte(["sync", "--json"], env, workdir)
        runs += 1
        v = verify(env, workdir)
        dups = duplicates(sb)
        intents_left = state_rows(state, "SELECT count(*) FROM intents")[0][0]
    return {
        "drill": "crash", "customers": customers, "products": products, "orders": orders,
        "kills_planned": kills, "kills_done": done, "runs": runs,
        "runs_finished_before_kill": finished_early, "runs_refused_locked": locked,
        "final_sync_rc": clean.rc, "verify": verify_totals(v), "duplicates": dups,
        "duplicates_total": sum(dups.values()), "intents_left": intents_left,
        "wall_s": round(time.monotonic() - t0, 1),
        "ok": clean.rc == 0 and verify_totals(v)["drift"] == 0 and sum(dups.values()) == 0,
    }


# -------------------------------------------------------------------------------------- storm

STORM = {"error_rate": 0.2, "timeout_rate": 0.05, "timeout_s": 4.0, "drop_rate": 0.05}


def _bursts(sb: SandboxProcess, stop: threading.Event, every_s: float, n: int) -> None:
    while not stop.wait(every_s):
        try:
            sb.faults(burst_429=n)
        except httpx.HTTPError:
            pass


def _status_counts(sb: SandboxProcess) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for side in ("crm", "erp"):
        c: Counter[str] = Counter()
        for row in sb.requests(side):
            c[str(row["status"])] += row["count"]
        out[side] = dict(c)
    return out


def drill_storm(workdir: Path, *, customers: int, products: int, orders: int,
                burst_every_s: float = 10.0, burst_n: int = 3, max_runs: int = 10,
                seed: int = 2) -> dict[str, Any]:
    """The same data synced twice: once clean, once through a storm of faults."""
    sizes = {"customers": customers, "products": products, "orders": orders, "seed": seed}
    (workdir / "clean").mkdir()
    (workdir / "storm").mkdir()
    with sandbox(workdir / "clean", **sizes) as sb:
        clean = ponte(["sync", "--json"], sb.env(workdir / "clean" / "state.db"), workdir)
    env_extra = {"PONTE_CRM__TIMEOUT_S": 1.5, "PONTE_ERP__TIMEOUT_S": 1.5}
    state = workdir / "storm" / "state.db"
    with sandbox(workdir / "storm", **sizes) as sb:
        env = sb.env(state, **env_extra)
        sb.faults(**STORM)
        stop = threading.Event()
        bursts = threading.Thread(target=_bursts, args=(sb, stop, burst_every_s, burst_n),
                                  daemon=True)
        bursts.start()
        t0 = time.monotonic()
        reports = []
        codes = []
        for _ in range(max_runs):
            r = ponte(["sync", "--json"], env, workdir)
            codes.append(r.rc)
            if r.json():
                reports.append(r.json())
            if r.rc in (0, 1):
                break
        storm_s = time.monotonic() - t0
        stop.set()
        bursts.join()
        statuses = _status_counts(sb)
        sb.clear_faults()
        v = verify(env, workdir)
        dups = duplicates(sb)
    retries: dict[str, Counter[str]] = {"crm": Counter(), "erp": Counter()}
    for rep in reports:
        for side, stats in rep.get("retries", {}).items():
            retries[side].update(stats)
    clean_s = clean.json()["duration_s"] if clean.json() else clean.seconds
    return {
        "drill": "storm", **sizes, "faults": STORM, "burst_429": f"{burst_n} every {burst_every_s:g} s",
        "ponte_timeout_s": 1.5, "runs": len(codes), "exit_codes": codes,
        "retries": {s: dict(c) for s, c in retries.items()},
        "sandbox_status_counts": statuses,
        "wall_s_storm": round(storm_s, 1), "wall_s_clean": round(clean_s, 1),
        "slowdown": round(storm_s / max(clean_s, 0.001), 2),
        "verify": verify_totals(v), "duplicates": dups,
        "duplicates_total": sum(dups.values()),
        "ok": codes[-1] in (0, 1) and verify_totals(v)["drift"] == 0 and sum(dups.values()) == 0,
    }


# ---------------------------------------------------------------------------------- bad input


def _check_digits(base: list[int], weights: list[int]) -> int:
    r = sum(d * w for d, w in zip(base, weights, strict=True)) % 11
    return 0 if r < 2 else 11 - r


def make_cnpj(rng: random.Random, *, valid: bool = True) -> str:
    base = [rng.randrange(10) for _ in range(8)] + [0, 0, 0, 1]
    d1 = _check_digits(base, [5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2])
    d2 = _check_digits([*base, d1], [6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2])
    if not valid:
        d2 = (d2 + 1) % 10
    return "".join(map(str, [*base, d1, d2]))


def make_cpf(rng: random.Random, *, valid: bool = True) -> str:
    base = [rng.randrange(10) for _ in range(9)]
    if len(set(base)) == 1:
        base[0] = (base[0] + 1) % 10
    d1 = _check_digits(base, list(range(10, 1, -1)))
    d2 = _check_digits([*base, d1], list(range(11, 1, -1)))
    if not valid:
        d2 = (d2 + 1) % 10
    return "".join(map(str, [*base, d1, d2]))


def _crm_contact(rng: random.Random, tax: str, **over: Any) -> dict[str, Any]:
    n = rng.randrange(10_000, 99_999)
    rec = {"TypeId": 1 if len(tax) == 14 else 2, "Name": f"Cliente Teste {n}",
           "LegalName": f"Cliente Teste {n} Ltda", "Register": tax,
           "CNPJ": tax if len(tax) == 14 else None, "CPF": tax if len(tax) == 11 else None,
           "Email": f"teste{n}@exemplo.com.br", "StreetAddress": "Rua das Flores",
           "StreetAddressNumber": str(rng.randrange(1, 999)), "Neighborhood": "Centro",
           "ZipCode": 1310100, "CityId": 1, "StateId": 25, "CountryId": 76, "StatusId": 1,
           "Key": "", "Phones": []}
    rec.update(over)
    return rec


def _erp_cliente(rng: random.Random, tax: str, **over: Any) -> dict[str, Any]:
    n = rng.randrange(10_000, 99_999)
    rec = {"codigo_cliente_integracao": "", "razao_social": f"EMPRESA TESTE {n} LTDA",
           "nome_fantasia": f"Teste {n}", "cnpj_cpf": tax, "email": f"erp{n}@exemplo.com.br",
           "endereco": "RUA DAS FLORES", "endereco_numero": "10", "bairro": "CENTRO",
           "cidade": "SAO PAULO (SP)", "cidade_ibge": "3550308", "estado": "SP",
           "cep": "01310100", "codigo_pais": "1058"}
    rec.update(over)
    return rec


def _erp_produto(rng: random.Random, code: str, **over: Any) -> dict[str, Any]:
    rec = {"codigo_produto_integracao": "", "codigo": code,
           "descricao": f"PRODUTO TESTE {code}", "unidade": "UN", "ncm": "9401.30.90",
           "valor_unitario": round(rng.uniform(5, 500), 2), "inativo": "N"}
    rec.update(over)
    return rec


@dataclass
class Case:
    name: str
    side: str  # where the record is created
    table: str
    entity: str
    field: str  # the canonical field the reason must name
    words: tuple[str, ...]  # one of these must appear in the reason
    make: Callable[[random.Random, int], dict[str, Any]]
    count: int
    valid: bool = False
    keys: list[str] = field(default_factory=list)


def bad_input_cases() -> list[Case]:
    long = "Razão Social Excessivamente Longa " * 6
    return [
        Case("crm_cnpj_check_digits", "crm", "Contacts", "customers", "tax_id",
             ("check digits",), lambda r, i: _crm_contact(r, make_cnpj(r, valid=False)), 60),
        Case("crm_cpf_check_digits", "crm", "Contacts", "customers", "tax_id",
             ("check digits",), lambda r, i: _crm_contact(r, make_cpf(r, valid=False)), 40),
        Case("erp_cnpj_check_digits", "erp", "clientes", "customers", "tax_id",
             ("check digits",), lambda r, i: _erp_cliente(r, make_cnpj(r, valid=False)), 50),
        Case("crm_missing_tax_id", "crm", "Contacts", "customers", "tax_id",
             ("required",), lambda r, i: _crm_contact(r, "", CNPJ=None, CPF=None), 40),
        Case("erp_missing_legal_name", "erp", "clientes", "customers", "legal_name",
             ("required",), lambda r, i: _erp_cliente(r, make_cnpj(r), razao_social=""), 40),
        Case("erp_product_missing_code", "erp", "produtos", "products", "code",
             ("required",), lambda r, i: _erp_produto(r, ""), 30),
        Case("crm_order_missing_lines", "crm", "Orders", "orders", "lines",
             ("required", "lines"), None, 20),  # type: ignore[arg-type] - built per sandbox
        Case("crm_overlong_legal_name", "crm", "Contacts", "customers", "legal_name",
             ("characters",), lambda r, i: _crm_contact(r, make_cnpj(r), LegalName=long), 50),
        Case("crm_wrong_type_kind", "crm", "Contacts", "customers", "kind",
             ("not one of",), lambda r, i: _crm_contact(r, make_cnpj(r), TypeId="empresa"), 30),
        Case("erp_wrong_type_price", "erp", "produtos", "products", "price",
             ("number",), lambda r, i: _erp_produto(r, f"BAD-P{i:05d}",
                                                     valor_unitario="doze reais"), 30),
        Case("erp_wrong_type_state", "erp", "clientes", "customers", "state",
             ("expected text",), lambda r, i: _erp_cliente(r, make_cnpj(r), estado=35), 20),
        Case("crm_control_chars", "crm", "Contacts", "customers", "name",
             ("control characters",),
             lambda r, i: _crm_contact(r, make_cnpj(r), Name=f"Loja\x07 Sino {i}"), 40),
        Case("erp_control_chars", "erp", "clientes", "customers", "legal_name",
             ("control characters",),
             lambda r, i: _erp_cliente(r, make_cnpj(r), razao_social=f"EMPRESA\x1b[31m {i}"), 30),
        Case("crm_bad_email", "crm", "Contacts", "customers", "email", ("e-mail",),
             lambda r, i: _crm_contact(r, make_cnpj(r), Email=f"sem-arroba-{i}.com.br"), 20),
        # valid: emoji and accents must sync
        Case("crm_emoji_accents", "crm", "Contacts", "customers", "", (),
             lambda r, i: _crm_contact(r, make_cnpj(r), Name=f"Café São João 🎉 {i}",
                                       LegalName=f"Açaí & Pão de Queijo ☕ {i} Ltda"), 50,
             valid=True),
        Case("erp_emoji_accents", "erp", "clientes", "customers", "", (),
             lambda r, i: _erp_cliente(r, make_cpf(r), razao_social=f"JOÃO ÇÉLIO 🚀 {i}",
                                       nome_fantasia=f"Ótica Ímpar 👓 {i}"), 50, valid=True),
        Case("erp_product_emoji", "erp", "produtos", "products", "", (),
             lambda r, i: _erp_produto(r, f"EMO-{i:05d}", descricao=f"CAFÉ ☕ ESPECIAL {i}"),
             20, valid=True),
    ]


def drill_bad_input(workdir: Path, *, customers: int, products: int, orders: int,
                    scale: float = 1.0, seed: int = 3) -> dict[str, Any]:
    rng = random.Random(seed)
    state = workdir / "state.db"
    cases = bad_input_cases()
    with sandbox(workdir, customers=customers, products=products, orders=orders,
                 seed=seed) as sb:
        env = sb.env(state)
        some_contact = sb.dump("crm", "Contacts")[0]["Id"]
        for case in cases:
            case.count = max(1, round(case.count * scale))
            for i in range(case.count):
                if case.name == "crm_order_missing_lines":
                    body = {"ContactId": some_contact, "Date": "2026-10-01T10:00:00-03:00",
                            "StageId": 1, "Products": [], "Key": "", "Amount": 0}
                else:
                    body = case.make(rng, i)
                rec = sb.admin(case.side, "POST", case.table, body)
                key = rec.get("Id") or rec.get("codigo_cliente_omie") or rec.get(
                    "codigo_produto")
                case.keys.append(str(key))
        time.sleep(2.0)  # past the safety lag: the records are inside the first run's window
        runs = sync_until_clean(env, workdir)
        q = ponte(["quarantine", "list", "--json"], env, workdir).json() or []
        by_key = {(e["entity"], e["system"], str(e["key"])): e for e in q}
        contacts = {_digits(r.get("Register")) for r in sb.dump("crm", "Contacts")}
        clientes = {_digits(r.get("cnpj_cpf")) for r in sb.dump("erp", "clientes")}
        crm_codes = {str(r.get("Code")) for r in sb.dump("crm", "Products")}
        erp_dump = {"clientes": {str(r["codigo_cliente_omie"]): r
                                 for r in sb.dump("erp", "clientes")},
                    "produtos": {str(r["codigo_produto"]): r for r in sb.dump("erp", "produtos")}}
        crm_dump = {str(r["Id"]): r for r in sb.dump("crm", "Contacts")}
        v = verify(env, workdir)
    figures: dict[str, Any] = {}
    bad_total = caught_total = valid_total = synced_total = 0
    reasons: dict[str, str] = {}
    for case in cases:
        if case.valid:
            synced = 0
            for k in case.keys:
                if case.table == "Contacts":
                    synced += _digits(crm_dump[k]["Register"]) in clientes
                elif case.table == "clientes":
                    synced += _digits(erp_dump["clientes"][k]["cnpj_cpf"]) in contacts
                else:
                    synced += str(erp_dump["produtos"][k]["codigo"]) in crm_codes
            figures[case.name] = {"valid": case.count, "synced": synced}
            valid_total += case.count
            synced_total += synced
            continue
        good = 0
        for k in case.keys:
            e = by_key.get((case.entity, case.side, k))
            if e is None:
                continue
            reason = e["reason"]
            reasons.setdefault(case.name, reason)
            if f"'{case.field}'" in reason and any(w in reason for w in case.words):
                good += 1
        figures[case.name] = {"expected": case.count, "quarantined_with_reason": good}
        bad_total += case.count
        caught_total += good
    return {
        "drill": "bad_input", "customers": customers, "products": products, "orders": orders,
        "malformed": bad_total, "quarantined_with_reason": caught_total,
        "valid_special": valid_total, "valid_special_synced": synced_total,
        "sync_exit_codes": runs, "quarantine_entries": len(q), "cases": figures,
        "sample_reasons": reasons, "verify": verify_totals(v),
        "ok": caught_total == bad_total and synced_total == valid_total and runs[-1] in (0, 1),
    }


# ------------------------------------------------------------------------------------ overlap


def _run_reports(state: Path) -> list[dict[str, Any]]:
    rows = state_rows(state, "SELECT id, kind, status, report FROM runs ORDER BY started_at")
    return [{"id": r[0], "kind": r[1], "status": r[2],
             "report": json.loads(r[3]) if r[3] else {}} for r in rows]


def overlapping_writers(state: Path) -> int:
    """Pairs of runs that both wrote to a system while their lifetimes overlapped."""
    rows = state_rows(state, "SELECT started_at, finished_at, report FROM runs "
                             "WHERE kind = 'sync' ORDER BY started_at")
    spans = []
    for started, finished, report in rows:
        rep = json.loads(report) if report else {}
        writes = sum(rep.get("api_calls", {}).get(s, {}).get("write", 0) for s in ("crm", "erp"))
        if writes:
            spans.append((started, finished or "9999"))
    return sum(1 for (_, f1), (s2, _) in itertools.pairwise(spans) if s2 < f1)


def _loser_writes(state: Path) -> int:
    """Write calls made by runs that found the lock held (must be 0)."""
    losers = [r for r in _run_reports(state) if r["report"].get("error") == "lock held"]
    return sum(r["report"].get("api_calls", {}).get(s, {}).get("write", 0)
               for r in losers for s in ("crm", "erp"))


def drill_overlap(workdir: Path, *, customers: int, products: int, orders: int,
                  latency_ms: int, cron_every_s: float, lease_latency_ms: int,
                  seed: int = 4) -> dict[str, Any]:
    out: dict[str, Any] = {"drill": "overlap", "customers": customers, "products": products,
                           "orders": orders, "latency_ms": latency_ms}
    sizes = {"customers": customers, "products": products, "orders": orders, "seed": seed}
    ok = True
    # a) two syncs started together
    (workdir / "a").mkdir()
    state = workdir / "a" / "state.db"
    with sandbox(workdir / "a", **sizes) as sb:
        env = sb.env(state)
        ponte(["db", "upgrade"], env, workdir)  # both racers find the schema in place
        # slow answers make the first run outlast the second's start-up, so they do overlap
        sb.faults(latency_ms=latency_ms)
        procs = [start_ponte(["sync", "--json"], env, workdir) for _ in range(2)]
        codes = sorted(p.wait() for p in procs)
        sb.faults(latency_ms=0)
        for p in procs:
            assert p.stdout is not None
            p.stdout.close()
        loser_writes = _loser_writes(state)
        dups = duplicates(sb)
        v = verify_totals(verify(env, workdir))
    out["together"] = {"exit_codes": codes, "loser_writes": loser_writes,
                       "duplicates": sum(dups.values()), "verify_drift": v["drift"]}
    ok &= codes == [0, 4] and loser_writes == 0 and sum(dups.values()) == 0 and v["drift"] == 0
    # b) cron runs every few seconds while a slow run goes on
    (workdir / "b").mkdir()
    state = workdir / "b" / "state.db"
    with sandbox(workdir / "b", **sizes) as sb:
        env = sb.env(state)
        ponte(["db", "upgrade"], env, workdir)
        sb.faults(latency_ms=latency_ms)
        slow = start_ponte(["sync", "--json"], env, workdir)
        cron: list[int] = []
        while slow.poll() is None:
            time.sleep(cron_every_s)
            if slow.poll() is not None:
                break
            cron.append(ponte(["sync", "--json"], env, workdir).rc)
        slow_rc = slow.wait()
        assert slow.stdout is not None
        slow.stdout.close()
        sb.faults(latency_ms=0)
        after = ponte(["sync", "--json"], env, workdir)
        loser_writes = _loser_writes(state)
        after_writes = sum(after.json()["api_calls"][s]["write"] for s in ("crm", "erp")) \
            if after.json() else -1
        dups = duplicates(sb)
        v = verify_totals(verify(env, workdir))
    overlaps = overlapping_writers(state)
    out["cron_over_slow"] = {"slow_exit": slow_rc, "cron_exit_codes": dict(Counter(cron)),
                             "loser_writes": loser_writes, "overlapping_writers": overlaps, "next_run_exit": after.rc,
                             "next_run_writes": after_writes,
                             "duplicates": sum(dups.values()), "verify_drift": v["drift"]}
    ok &= slow_rc == 0 and set(cron) <= {0, 4} and 4 in cron and loser_writes == 0 \
        and overlaps == 0 and after.rc == 0 and sum(dups.values()) == 0 and v["drift"] == 0
    # c) a run that outlives a short lease: a cron run after the lease must not become a
    #    second writer while the first still writes
    (workdir / "c").mkdir()
    state = workdir / "c" / "state.db"
    with sandbox(workdir / "c", **sizes) as sb:
        env = sb.env(state, PONTE_LOCK_LEASE_S=10)
        ponte(["db", "upgrade"], env, workdir)
        sb.faults(latency_ms=lease_latency_ms)
        slow = start_ponte(["sync", "--json"], env, workdir)
        cron = []
        t0 = time.monotonic()
        while slow.poll() is None:
            time.sleep(cron_every_s)
            if slow.poll() is not None:
                break
            cron.append(ponte(["sync", "--json"], env, workdir).rc)
        slow_rc = slow.wait()
        slow_s = time.monotonic() - t0
        assert slow.stdout is not None
        slow.stdout.close()
        sb.faults(latency_ms=0)
        writers = [r for r in _run_reports(state) if r["kind"] == "sync" and sum(
            r["report"].get("api_calls", {}).get(s, {}).get("write", 0) for s in ("crm", "erp"))]
        overlaps = overlapping_writers(state)
        after = ponte(["sync", "--json"], env, workdir)
        dups = duplicates(sb)
        v = verify_totals(verify(env, workdir))
    out["lease_expiry"] = {"lease_s": 10, "latency_ms": lease_latency_ms, "slow_run_s": round(slow_s, 1), "slow_exit": slow_rc,
                           "cron_exit_codes": dict(Counter(cron)),
                           "runs_that_wrote": len(writers), "overlapping_writers": overlaps,
                           "next_run_exit": after.rc,
                           "duplicates": sum(dups.values()), "verify_drift": v["drift"]}
    ok &= overlaps == 0 and sum(dups.values()) == 0 and v["drift"] == 0 and after.rc == 0
    out["ok"] = bool(ok)
    return out


# ------------------------------------------------------------------------------------- clocks


def _editor(sb: SandboxProcess, stop: threading.Event, ids: dict[str, list[int]],
            budget: int, rng: random.Random, made: list[tuple[str, str, int, str]]) -> None:
    """Edit records through the admin API (as users in the UIs would) until stopped."""
    # fields that flow both ways (a CRM person's Name also stands for its ERP-owned legal
    # name, so the drill edits fields without an owner)
    tables = [("crm", "Contacts", "Neighborhood"), ("erp", "clientes", "bairro"),
              ("erp", "produtos", "descricao"), ("crm", "Contacts", "Email")]
    i = 0
    while not stop.is_set() and i < budget:
        side, table, fld = tables[i % len(tables)]
        rid = rng.choice(ids[table])
        value = (f"editado{i}@exemplo.com.br" if fld == "Email"
                 else f"Editado Durante a Execução {i}")
        try:
            sb.admin(side, "PATCH", f"{table}/{rid}", {fld: value})
            made.append((side, table, rid, value))
        except httpx.HTTPError:
            pass
        i += 1
        time.sleep(rng.uniform(0.01, 0.08))


def drill_clocks(workdir: Path, *, customers: int, products: int, orders: int, skew_s: int,
                 edits: int, runs: int, lookback_s: int, seed: int = 5) -> dict[str, Any]:
    """CRM clock ``skew_s`` behind ponte, ERP clock ``skew_s`` ahead; identical timestamps and
    7-record pages; users editing both sides while ponte syncs.

    The shared timestamp is frozen at the first write of a run's edits, so later edits carry
    an instant from before they became visible, as late-committing writes do. A lookback equal
    to the skew leaves no room for that: use ``lookback_s`` > skew (see the report)."""
    rng = random.Random(seed)
    state = workdir / "state.db"
    out: dict[str, Any] = {"drill": "clocks", "customers": customers, "products": products,
                           "orders": orders, "skew_s": skew_s, "lookback_s": lookback_s}
    with sandbox(workdir, customers=customers, products=products, orders=orders,
                 seed=seed) as sb:
        env = sb.env(state, PONTE_LOOKBACK_S=lookback_s)
        sb.clock("crm", -skew_s)
        sb.clock("erp", +skew_s)
        sb.faults(same_timestamp=True, page_cap=7)
        ids = {"Contacts": [r["Id"] for r in sb.dump("crm", "Contacts")],
               "clientes": [r["codigo_cliente_omie"] for r in sb.dump("erp", "clientes")],
               "produtos": [r["codigo_produto"] for r in sb.dump("erp", "produtos")]}
        made: list[tuple[str, str, int, str]] = []
        codes = []
        t_first = time.monotonic()
        for n in range(runs):
            stop = threading.Event()
            editor = threading.Thread(target=_editor, args=(sb, stop, ids, edits, rng, made),
                                      daemon=True)
            editor.start()
            codes.append(ponte(["sync", "--json"], env, workdir).rc)
            stop.set()
            editor.join()
            if n == 0:
                # new timestamps from here on (each run's edits share one instant again)
                sb.faults(same_timestamp=False)
                sb.faults(same_timestamp=True)
        last_edit = time.monotonic()
        sb.faults(same_timestamp=False)
        # the ERP stamped its edits up to skew_s in ponte's future: they are read once
        # ponte's signpost passes them (lessons #2). Sync until verify is clean.
        converge: list[dict[str, Any]] = []
        waited = 0.0
        while True:
            codes.append(ponte(["sync", "--json"], env, workdir).rc)
            full = verify(env, workdir)
            totals = verify_totals(full)
            converge.append({"after_s": round(time.monotonic() - last_edit, 1), **totals})
            # records held back by a dependency (an order whose product is still in the
            # future) wait in quarantine for their retry time: allow for that as well
            if totals["drift"] == 0 or time.monotonic() - last_edit > 2 * skew_s + 150:
                break
            pause = min(30.0, max(2.0, skew_s / 6))
            time.sleep(pause)
            waited += pause
        # every edit that users made is on the other side now
        latest: dict[tuple[str, str, int], str] = {}
        for side, table, rid, value in made:
            latest[(side, table, rid)] = value
        missed = _missed_edits(sb, latest)
        dups = duplicates(sb)
    out.update({
        "edits": len(made), "sync_exit_codes": codes, "converge": converge,
        "seconds_from_last_edit_to_zero_drift": converge[-1]["after_s"],
        "edits_missing_on_other_side": missed, "duplicates": sum(dups.values()),
        "drift_items": {k: v for k, v in full["_items"].items() if v},
        "wall_s": round(time.monotonic() - t_first, 1),
        "ok": converge[-1]["drift"] == 0 and missed == 0 and sum(dups.values()) == 0,
    })
    return out


def _missed_edits(sb: SandboxProcess, latest: dict[tuple[str, str, int], str]) -> int:
    contacts = {r["Id"]: r for r in sb.dump("crm", "Contacts")}
    clientes = {r["codigo_cliente_omie"]: r for r in sb.dump("erp", "clientes")}
    products = {str(r.get("Code")): r for r in sb.dump("crm", "Products")}
    by_tax_crm = {_digits(r.get("Register")): r for r in contacts.values()}
    by_tax_erp = {_digits(r.get("cnpj_cpf")): r for r in clientes.values()}
    erp_prod = {r["codigo_produto"]: r for r in sb.dump("erp", "produtos")}
    missed = 0
    for (side, table, rid), value in latest.items():
        if table == "Contacts":
            src = contacts[rid]
            other = by_tax_erp.get(_digits(src.get("Register")))
            if other is None:
                missed += 1
            elif "@" in value:
                missed += src.get("Email") == value and str(other.get("email")).lower() != value
            else:
                missed += src.get("Neighborhood") == value and other.get("bairro") != value
        elif table == "clientes":
            src = clientes[rid]
            other = by_tax_crm.get(_digits(src.get("cnpj_cpf")))
            missed += other is None or (src.get("bairro") == value
                                        and other.get("Neighborhood") != value)
        else:
            src = erp_prod[rid]
            other = products.get(str(src.get("codigo")))
            missed += other is None or (src.get("descricao") == value
                                        and other.get("Name") != value)
    return int(missed)


# --------------------------------------------------------------------------------------- main

DRILLS: dict[str, Callable[..., dict[str, Any]]] = {
    "crash": drill_crash, "storm": drill_storm, "bad_input": drill_bad_input,
    "overlap": drill_overlap, "clocks": drill_clocks,
}


def run_drill(name: str, *, small: bool, workdir: Path | None = None,
              **override: Any) -> dict[str, Any]:
    sizes = {**SIZES[name]["small" if small else "full"], **override}
    if workdir is not None:
        return DRILLS[name](workdir, **sizes)
    with tempfile.TemporaryDirectory(prefix=f"ponte-drill-{name}-") as tmp:
        return DRILLS[name](Path(tmp), **sizes)


def _summary(results: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="ponte drills")
    table.add_column("drill")
    table.add_column("ok")
    table.add_column("figures")
    for r in results:
        figures = {k: v for k, v in r.items() if k not in ("drill", "ok", "sample_reasons",
                                                           "cases", "converge")}
        table.add_row(r["drill"], "yes" if r.get("ok") else "NO",
                      json.dumps(figures, ensure_ascii=False)[:600])
    Console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drill", default="all", choices=[*DRILLS, "all"])
    parser.add_argument("--small", action="store_true", help="the test suite's sizes")
    parser.add_argument("--lookback", type=int, default=None,
                        help="clocks: PONTE_LOOKBACK_S of the drill (default: twice the skew)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="work in this folder (kept: logs, state, sandbox log)")
    args = parser.parse_args()
    names = list(DRILLS) if args.drill == "all" else [args.drill]
    results = []
    for name in names:
        workdir = None
        if args.keep is not None:
            workdir = args.keep / name
            workdir.mkdir(parents=True, exist_ok=True)
        extra = {"lookback_s": args.lookback} if name == "clocks" and args.lookback else {}
        result = run_drill(name, small=args.small, workdir=workdir, **extra)
        print(json.dumps(result, ensure_ascii=False), flush=True)
        results.append(result)
    _summary(results)
    sys.exit(0 if all(r.get("ok") for r in results) else 1)


if __name__ == "__main__":
    main()
