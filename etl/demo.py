"""``ponte demo``: the sandbox in-process, three syncs, and what users do between them.

1. seed both simulators with overlapping data (the same CNPJs on both sides, slightly
   different), sync everything;
2. edit both sides as users would (a CRM e-mail, an ERP phone, an ERP price, a new CRM customer,
   an ERP order moving to the next stage, a customer's credit limit, an order invoiced), sync
   again, and show the ERP's facts as the CRM's custom fields now hold them, field by field;
3. sync once more: nothing changed, so nothing is written.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from rich.console import Console

from etl.clock import OffsetClock
from etl.engine.report import RunReport
from etl.errors import EtlError
from etl.ponte import Ponte
from etl.render import print_json, print_report
from etl.sandbox.server import running_sandbox
from etl.settings import CrmSettings, ErpSettings, Settings
from etl.shipped import shipped_mappings_dir

#: The CRM custom fields the shipped mapping fills from the ERP (labels, as Ploomes shows them).
FACTS = ("Limite de crédito", "Desconto especial (%)", "Volume de vendas 12m", "Última compra")


def _edits(sb: object, touched: list[int]) -> list[str]:
    """Change a few records as people in each system's UI would; say what was done. The ERP
    customers whose facts change are appended to ``touched``."""
    crm, erp = sb.crm, sb.erp  # type: ignore[attr-defined]
    done = []
    contacts = sorted(crm.db["Contacts"], key=lambda r: r.id)
    if contacts:
        row = contacts[0]
        new = f"comercial+{row.id}@exemplo.com.br"
        crm.ui_update("Contacts", row.id, {"Email": new})
        done.append(f"CRM user changed contact {row.id}'s e-mail to {new}")
    clientes = sorted(erp.db["clientes"], key=lambda r: r.id)
    if clientes:
        row = clientes[-1]
        erp.ui_update("clientes", row.id, {"telefone1_ddd": "11", "telefone1_numero": "3333-4444"})
        done.append(f"ERP user changed cliente {row.id}'s phone to (11) 3333-4444")
    produtos = sorted(erp.db["produtos"], key=lambda r: r.id)
    if produtos:
        row = produtos[0]
        price = round(float(row.data.get("valor_unitario", 10)) * 1.1, 2)
        erp.ui_update("produtos", row.id, {"valor_unitario": price})
        done.append(f"ERP user raised product {row.data.get('codigo')}'s price to {price}")
    crm.ui_create("Contacts", {
        "TypeId": 1, "Name": "Padaria Pão Dourado", "LegalName": "Pão Dourado Panificadora Ltda",
        "Register": "11444777000161", "CNPJ": "11444777000161", "Email": "contato@paodourado.com.br",
        "Phones": [{"PhoneNumber": "(11) 3456-7890", "TypeId": 1, "CountryId": 76}],
        "StreetAddress": "Rua Augusta", "StreetAddressNumber": "1500", "Neighborhood": "Consolação",
        "ZipCode": 1304001, "CityId": 1, "StateId": 25, "CountryId": 76, "StatusId": 1,
        "OwnerId": 1, "Key": "", "Tags": [], "OtherProperties": [],
    })
    done.append("CRM user created customer 'Padaria Pão Dourado' (CNPJ 11.444.777/0001-61)")
    pedidos = sorted(erp.db["pedidos"], key=lambda r: r.id)
    if pedidos:
        row = pedidos[0]
        cab = copy.deepcopy(row.data.get("cabecalho", {}))
        cab["etapa"] = "20"
        erp.ui_update("pedidos", row.id, {"cabecalho": cab})
        done.append(f"ERP user moved pedido {row.id} to etapa 20")
    if len(clientes) > 1:
        row = clientes[0]
        erp.ui_update("clientes", row.id, {"valor_limite_credito": 25000.0})
        done.append(f"ERP user set cliente {row.id}'s credit limit to 25000.00")
        touched.append(row.id)
    open_orders = [r for r in pedidos[1:]
                   if str(r.data.get("cabecalho", {}).get("etapa")) not in ("60", "70")]
    if open_orders:
        row = open_orders[0]
        cab = copy.deepcopy(row.data.get("cabecalho", {}))
        cab["etapa"] = "60"
        erp.ui_update("pedidos", row.id, {"cabecalho": cab})
        done.append(f"ERP user invoiced pedido {row.id} (etapa 60) of cliente "
                    f"{cab.get('codigo_cliente')}")
        touched.append(int(cab.get("codigo_cliente") or 0))
    return done


def _crm_facts(sb: object, clientes: list[int]) -> list[str]:
    """The ERP's facts as the CRM now holds them: each touched customer's Ploomes contact (found
    by its CNPJ/CPF), its custom fields by label."""
    from etl.sandbox.ploomes.custom import FIELDS

    crm, erp = sb.crm, sb.erp  # type: ignore[attr-defined]
    keys = {f["Name"]: f["Key"] for f in FIELDS}
    out = []
    for cid in dict.fromkeys(clientes):
        doc = "".join(ch for ch in str(erp.db["clientes"].get(cid).data.get("cnpj_cpf", ""))
                      if ch.isdigit())
        contact = next((r for r in crm.db["Contacts"]
                        if doc and doc in (str(r.data.get("Register") or ""),
                                           str(r.data.get("CNPJ") or ""),
                                           str(r.data.get("CPF") or ""))), None)
        if contact is None:
            continue
        held = {i.get("FieldKey"): next((v for k, v in i.items() if k.endswith("Value")
                                         and v not in (None, "")), None)
                for i in contact.data.get("OtherProperties") or []}
        out.append(f"CRM contact {contact.id} (cliente {cid}):")
        out += [f"    {label}: {held.get(keys[label]) if held.get(keys[label]) is not None else '-'}"
                for label in FACTS]
    return out


def run_demo(*, customers: int, products: int, orders: int, state_path: str,
             console: Console, as_json: bool = False) -> list[RunReport]:
    """Run the demo, printing each step as it happens, or (``as_json``) one JSON object at the
    end: ``{"status", "state", "steps": [{"title", "edits", "report"}]}`` — also when a step
    fails, before the error is raised."""
    for suffix in ("", "-wal", "-shm"):
        Path(state_path + suffix).unlink(missing_ok=True)
    reports: list[RunReport] = []
    steps_out: list[dict[str, Any]] = []
    try:
        _run_steps(customers=customers, products=products, orders=orders,
                   state_path=state_path, console=console, as_json=as_json, reports=reports,
                   steps_out=steps_out)
    finally:
        if as_json:
            print_json(_summary(state_path, steps_out), console)
    failed = next((r for r in reports if r.status == "failed"), None)
    if failed is not None:
        raise EtlError(f"demo sync failed: {failed.error}")
    return reports


def _summary(state_path: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    statuses = [s["report"]["status"] for s in steps]
    status = ("failed" if "failed" in statuses or len(steps) < STEPS else
              "partial" if "partial" in statuses else "ok")
    return {"status": status, "state": state_path, "steps": steps}


STEPS = 3


def _run_steps(*, customers: int, products: int, orders: int, state_path: str,
               console: Console, as_json: bool, reports: list[RunReport],
               steps_out: list[dict[str, Any]]) -> None:
    with running_sandbox(customers=customers, products=products, orders=orders,
                         ploomes_rpm=100_000, omie_rpm=100_000) as sb:
        settings = Settings(
            state_url=f"sqlite:///{state_path}",
            mappings_dir=shipped_mappings_dir(),
            crm=CrmSettings(base_url=sb.crm_url, requests_per_minute=100_000),
            erp=ErpSettings(base_url=sb.erp_url, requests_per_minute=100_000),
        )
        if not as_json:
            console.print(f"sandbox: Ploomes at {sb.crm_url}, Omie at {sb.erp_url}; "
                          f"state in {state_path}", highlight=False)
        steps = [
            ("1. first sync: match existing customers by CNPJ/CPF, create the rest", None),
            ("2. after users edited both sides", _edits),
            ("3. nothing changed since: a sync that writes nothing", None),
        ]
        clock = OffsetClock()  # ponte's clock moves with the simulators' clocks
        ponte = Ponte(settings, clock=clock)
        for title, before in steps:
            # time passes between runs: move both sandbox clocks and ponte's together
            clock.advance(30)
            sb.crm.clock.advance(30)
            sb.erp.clock.advance(30)
            touched: list[int] = []
            edits = before(sb, touched) if before is not None else []
            if not as_json:
                for line in edits:
                    console.print(f"  - {line}", highlight=False)
            clock.advance(30)
            sb.crm.clock.advance(30)
            sb.erp.clock.advance(30)
            report = ponte.sync()
            reports.append(report)
            facts = _crm_facts(sb, touched) if touched else []
            steps_out.append({"title": title, "edits": edits,
                              "report": report.as_dict(with_changes=bool(before)),
                              **({"crm_custom_fields": facts} if facts else {})})
            if not as_json:
                print_report(report, console, show_changes=bool(before), title=title)
                for line in facts:
                    console.print(line, highlight=False, markup=False)
            if report.status == "failed":
                return
