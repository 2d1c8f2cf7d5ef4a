"""Convergence: random user edits on both simulators interleaved with syncs end with both
systems agreeing on every mapped field of every linked record, no duplicate tax ids or product
codes, and one more sync writing nothing. CRM users also give contacts more phones than the ERP
has slots: none of those is ever lost.

Users also move customers between owners (the same people are Ploomes users and Omie sellers),
add and remove tags on either side (some names Ploomes does not have yet), change the ERP's
credit limit and DESCONTO_ESPECIAL characteristic, type over those ERP-owned custom fields in the
CRM, fill custom fields the mapping does not own, and invoice ERP orders. At the end the CRM's
sales volume equals the sum of each customer's invoiced orders, computed here from the Omie
simulator's own orders, and no custom field the mapping does not own was lost."""

from __future__ import annotations

import copy
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from stdnum.br import cnpj as std_cnpj

from etl.api import check_mappings
from etl.connectors.factory import build_connectors
from etl.engine.references import RunReferences
from etl.mapping import MapContext, read_record
from etl.sandbox.ploomes.custom import FIELDS as CRM_FIELDS
from etl.state import Store
from tests.engine.conftest import make_world

NAMES = st.sampled_from(["Padaria Central", "Café São João", "Mercado Bom Preço",
                         "Ótica Visão", "Açougue do Zé", "Farmácia Saúde"])
EMAILS = st.sampled_from(["vendas@a.com.br", "financeiro@b.com.br", "contato@c.com.br"])
# "Cliente" is on every seeded Omie customer; none of these is a Ploomes tag at the start
TAGS = st.sampled_from(["Cliente", "VIP", "Atacado", "Inadimplente"])
KEYS = {f["Name"]: f["Key"] for f in CRM_FIELDS if f["Dynamic"]}
# custom fields the mapping owns (ERP facts) and two it does not own (CRM users' own)
ERP_OWNED = [KEYS["Limite de crédito"], KEYS["Desconto especial (%)"],
             KEYS["Volume de vendas 12m"]]
SALES = KEYS["Volume de vendas 12m"]
CRM_ONLY = {KEYS["Segmento"]: "StringValue", KEYS["Número de filiais"]: "IntegerValue"}


def new_cnpj(n: int) -> str:
    base = f"{n:08d}0001"
    return base + std_cnpj.calc_check_digits(base)


def digits(value: str) -> str:
    return re.sub(r"\D", "", value or "")


def custom_value(contact: dict[str, Any], key: str) -> Any:
    for item in contact.get("OtherProperties") or []:
        if item.get("FieldKey") == key:
            return next((v for k, v in item.items() if k.endswith("Value") and v is not None),
                        None)
    return None


def order_total(order: dict[str, Any]) -> float:
    """What the ERP totals an order to: quantity x unit price less discount, line by line."""
    total = 0.0
    for item in order.get("det", []):
        prod = item.get("produto", {})
        total += float(prod.get("quantidade") or 0) * float(prod.get("valor_unitario") or 0)
        total -= float(prod.get("valor_desconto") or 0)
    return round(total, 2)


class Convergence(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.w = make_world(f"sqlite:///{Path(self.tmp.name) / 's.db'}", customers=8,
                            products=4, orders=2, overlap=0.5)
        self.counter = 100
        self.syncs = 0
        self.extra_phones: dict[int, set[str]] = {}  # contact id -> CRM-only numbers (digits)
        self.crm_only: dict[tuple[int, str], Any] = {}  # (contact id, field key) -> value

    def teardown(self) -> None:
        self.tmp.cleanup()

    # --- users on the CRM ----------------------------------------------------------------------

    @rule(name=NAMES)
    def crm_creates_customer(self, name: str) -> None:
        self.counter += 1
        tax = new_cnpj(self.counter)
        self.w.crm.ui_create("Contacts", {
            "TypeId": 1, "Name": name, "LegalName": f"{name} Ltda", "Register": tax, "CNPJ": tax,
            "Email": f"c{self.counter}@exemplo.com.br", "Phones": [], "StreetAddress": "Rua A",
            "StreetAddressNumber": str(self.counter), "Neighborhood": "Centro",
            "ZipCode": 1310100, "CityId": 1, "StateId": 25, "CountryId": 76, "StatusId": 1,
            "OwnerId": 1, "Key": "", "Tags": [], "OtherProperties": []})

    @rule(data=st.data(), email=EMAILS, name=NAMES)
    def crm_edits_customer(self, data: st.DataObject, email: str, name: str) -> None:
        rows = sorted(self.w.crm.db["Contacts"], key=lambda r: r.id)
        row = data.draw(st.sampled_from(rows))
        self.w.crm.ui_update("Contacts", row.id, {"Email": email, "Name": name})

    @rule(data=st.data())
    def crm_adds_phone(self, data: st.DataObject) -> None:
        """A phone beyond the two the ERP has slots for (the first two filled first)."""
        rows = sorted(self.w.crm.db["Contacts"], key=lambda r: r.id)
        row = data.draw(st.sampled_from(rows))
        phones = list(row.data.get("Phones") or [])
        have = len([p for p in phones if digits(p.get("PhoneNumber", ""))])
        for _ in range(have, 3):
            self.counter += 1
            number = f"31 3{self.counter % 1000:03d}-{data.draw(st.integers(1000, 9999))}"
            phones.append({"PhoneNumber": f"+55 {number}", "TypeId": 3, "CountryId": 76})
        self.w.crm.ui_update("Contacts", row.id, {"Phones": phones})
        extra = digits(phones[-1]["PhoneNumber"])[-10:]
        self.extra_phones.setdefault(row.id, set()).add(extra)

    @precondition(lambda self: bool(self.extra_phones))
    @rule(data=st.data())
    def erp_edits_phone_of_contact_with_more_phones(self, data: st.DataObject) -> None:
        """The ERP changes telefone1 of a customer whose CRM contact has phones it has no slot
        for."""
        cid = str(data.draw(st.sampled_from(sorted(self.extra_phones))))
        with Store.open(self.w.settings.state_url) as store:
            erp_key = dict(store.links("customers")).get(cid)
        if erp_key is None:
            return
        self.counter += 1
        self.w.erp.ui_update("clientes", int(erp_key), {
            "telefone1_ddd": "41", "telefone1_numero": f"3{self.counter % 1000:03d}-1234"})

    @precondition(lambda self: self.syncs > 0)
    @rule(data=st.data())
    def crm_creates_order(self, data: st.DataObject) -> None:
        with Store.open(self.w.settings.state_url) as store:
            customers = [c for c, _ in store.links("customers")]
            products = [c for c, _ in store.links("products")]
        if not customers or not products:
            return
        contact = int(data.draw(st.sampled_from(sorted(customers))))
        product = int(data.draw(st.sampled_from(sorted(products))))
        qty = data.draw(st.integers(1, 5))
        self.w.crm.ui_create("Orders", {
            "Date": "2026-11-20T10:00:00-03:00", "ContactId": contact, "StageId": 1,
            "Amount": qty * 10.0, "Discount": 0, "OwnerId": 1, "Key": "",
            "Products": [{"ProductId": product, "Quantity": qty, "UnitPrice": 10.0,
                          "Discount": 0, "Total": qty * 10.0}], "OtherProperties": []})

    @rule(data=st.data())
    def crm_changes_owner(self, data: st.DataObject) -> None:
        """To another Ploomes user; the sandbox has the same people as Omie sellers."""
        rows = sorted(self.w.crm.db["Contacts"], key=lambda r: r.id)
        row = data.draw(st.sampled_from(rows))
        users = sorted(r.id for r in self.w.crm.db["Users"])
        self.w.crm.ui_update("Contacts", row.id, {"OwnerId": data.draw(st.sampled_from(users))})

    @rule(data=st.data(), tag=TAGS)
    def crm_toggles_tag(self, data: st.DataObject, tag: str) -> None:
        """Adds the tag (creating it in Ploomes first when it is new there) or removes it."""
        rows = sorted(self.w.crm.db["Contacts"], key=lambda r: r.id)
        row = data.draw(st.sampled_from(rows))
        tag_id = next((t.id for t in self.w.crm.db["Tags"] if t.data.get("Name") == tag), None)
        if tag_id is None:
            tag_id = self.w.crm.ui_create("Tags", {"Name": tag, "EntityId": 1, "Color": ""}).id
        tags = [dict(t) for t in row.data.get("Tags") or []]
        kept = [t for t in tags if t.get("TagId") != tag_id]
        if len(kept) == len(tags):
            kept.append({"TagId": tag_id})
        self.w.crm.ui_update("Contacts", row.id, {"Tags": kept})

    @rule(data=st.data(), value=st.integers(1, 99_999))
    def crm_overwrites_erp_fact(self, data: st.DataObject, value: int) -> None:
        """A CRM user types over a custom field the ERP owns: the next sync puts it back."""
        rows = sorted(self.w.crm.db["Contacts"], key=lambda r: r.id)
        row = data.draw(st.sampled_from(rows))
        key = data.draw(st.sampled_from(ERP_OWNED))
        self.w.crm.ui_update("Contacts", row.id, {"OtherProperties": [
            {"FieldKey": key, "DecimalValue": float(value)}]})

    @rule(data=st.data(), value=st.integers(1, 500))
    def crm_fills_own_custom_field(self, data: st.DataObject, value: int) -> None:
        """A custom field the mapping does not own: no sync may lose it."""
        rows = sorted(self.w.crm.db["Contacts"], key=lambda r: r.id)
        row = data.draw(st.sampled_from(rows))
        key = data.draw(st.sampled_from(sorted(CRM_ONLY)))
        prop = CRM_ONLY[key]
        typed: Any = value if prop == "IntegerValue" else f"Segmento {value}"
        self.w.crm.ui_update("Contacts", row.id, {"OtherProperties": [
            {"FieldKey": key, prop: typed}]})
        self.crm_only[(row.id, key)] = typed

    # --- users on the ERP ----------------------------------------------------------------------

    @rule(data=st.data(), name=NAMES)
    def erp_edits_customer(self, data: st.DataObject, name: str) -> None:
        rows = sorted(self.w.erp.db["clientes"], key=lambda r: r.id)
        row = data.draw(st.sampled_from(rows))
        self.w.erp.ui_update("clientes", row.id, {"nome_fantasia": name,
                                                  "telefone1_ddd": "11",
                                                  "telefone1_numero": f"3{row.id:03d}-0000"})

    @rule(data=st.data())
    def erp_inactivates_customer(self, data: st.DataObject) -> None:
        rows = sorted(self.w.erp.db["clientes"], key=lambda r: r.id)
        row = data.draw(st.sampled_from(rows))
        self.w.erp.ui_update("clientes", row.id, {"inativo": "S"})

    @rule(name=NAMES, price=st.integers(1, 999))
    def erp_creates_product(self, name: str, price: int) -> None:
        self.counter += 1
        self.w.erp.ui_create("produtos", {
            "codigo_produto_integracao": "", "codigo": f"NEW-{self.counter}", "descricao": name,
            "unidade": "UN", "ncm": "9403.30.00", "valor_unitario": float(price),
            "inativo": "N", "bloqueado": "N", "tipoItem": "00", "descr_detalhada": ""})

    @rule(data=st.data(), price=st.integers(1, 999))
    def erp_edits_product(self, data: st.DataObject, price: int) -> None:
        rows = sorted(self.w.erp.db["produtos"], key=lambda r: r.id)
        row = data.draw(st.sampled_from(rows))
        self.w.erp.ui_update("produtos", row.id, {"valor_unitario": float(price)})

    @rule(data=st.data())
    def erp_moves_order(self, data: st.DataObject) -> None:
        rows = sorted(self.w.erp.db["pedidos"], key=lambda r: r.id)
        rows = [r for r in rows if str(r.data["cabecalho"].get("etapa")) not in ("60", "70")]
        if not rows:  # an invoiced order cannot be changed in the ERP any more
            return
        row = data.draw(st.sampled_from(rows))
        cab = copy.deepcopy(row.data["cabecalho"])
        cab["etapa"] = data.draw(st.sampled_from(["10", "20", "50"]))
        self.w.erp.ui_update("pedidos", row.id, {"cabecalho": cab})

    @rule(data=st.data())
    def erp_changes_seller(self, data: st.DataObject) -> None:
        rows = sorted(self.w.erp.db["clientes"], key=lambda r: r.id)
        row = data.draw(st.sampled_from(rows))
        sellers = sorted(r.id for r in self.w.erp.db["vendedores"])
        recs = {**(row.data.get("recomendacoes") or {}),
                "codigo_vendedor": data.draw(st.sampled_from(sellers))}
        self.w.erp.ui_update("clientes", row.id, {"recomendacoes": recs})

    @rule(data=st.data(), tag=TAGS)
    def erp_toggles_tag(self, data: st.DataObject, tag: str) -> None:
        rows = sorted(self.w.erp.db["clientes"], key=lambda r: r.id)
        row = data.draw(st.sampled_from(rows))
        tags = [dict(t) for t in row.data.get("tags") or []]
        kept = [t for t in tags if t.get("tag") != tag]
        if len(kept) == len(tags):
            kept.append({"tag": tag})
        self.w.erp.ui_update("clientes", row.id, {"tags": kept})

    @rule(data=st.data(), limit=st.integers(0, 200_000), cents=st.sampled_from([0, 50, 99]),
          discount=st.sampled_from(["", "5", "7,5", "12,25"]))
    def erp_changes_credit_and_discount(self, data: st.DataObject, limit: int, cents: int,
                                        discount: str) -> None:
        """The credit limit and the DESCONTO_ESPECIAL characteristic (the customer's other
        characteristics stay)."""
        rows = sorted(self.w.erp.db["clientes"], key=lambda r: r.id)
        row = data.draw(st.sampled_from(rows))
        chars = [dict(c) for c in row.data.get("caracteristicas") or []
                 if c.get("campo") != "DESCONTO_ESPECIAL"]
        if discount:
            chars.append({"campo": "DESCONTO_ESPECIAL", "conteudo": discount})
        self.w.erp.ui_update("clientes", row.id, {
            "valor_limite_credito": limit + cents / 100, "caracteristicas": chars})

    @rule(data=st.data())
    def erp_invoices_order(self, data: st.DataObject) -> None:
        """Etapa 60: faturado, which counts in the customer's sales volume."""
        rows = sorted(self.w.erp.db["pedidos"], key=lambda r: r.id)
        rows = [r for r in rows if str(r.data["cabecalho"].get("etapa")) not in ("60", "70")]
        if not rows:
            return
        row = data.draw(st.sampled_from(rows))
        cab = {**copy.deepcopy(row.data["cabecalho"]), "etapa": "60"}
        self.w.erp.ui_update("pedidos", row.id, {"cabecalho": cab})

    # --- ponte ---------------------------------------------------------------------------------

    @rule()
    def sync(self) -> None:
        report = self.w.sync()
        assert report.status in ("ok", "partial"), report.error
        self.syncs += 1

    @invariant()
    def no_duplicates(self) -> None:
        if not hasattr(self, "w"):
            return
        crm_tax = [r.data.get("Register") for r in self.w.crm.db["Contacts"]]
        erp_tax = [digits(r.data.get("cnpj_cpf", "")) for r in self.w.erp.db["clientes"]]
        assert len(crm_tax) == len(set(crm_tax)), "duplicate tax id in the CRM"
        assert len(erp_tax) == len(set(erp_tax)), "duplicate tax id in the ERP"
        codes = [r.data.get("Code") for r in self.w.crm.db["Products"]]
        assert len(codes) == len(set(codes)), "duplicate product code in the CRM"

    @invariant()
    def no_crm_phone_lost(self) -> None:
        if not hasattr(self, "w"):
            return
        for cid, extra in self.extra_phones.items():
            kept = {digits(p.get("PhoneNumber", ""))[-10:]
                    for p in self.w.crm.db["Contacts"].get(cid).data.get("Phones") or []}
            assert extra <= kept, f"contact {cid} lost {sorted(extra - kept)}"

    @invariant()
    def no_crm_custom_field_lost(self) -> None:
        if not hasattr(self, "w"):
            return
        for (cid, key), value in self.crm_only.items():
            got = custom_value(self.w.crm.db["Contacts"].get(cid).data, key)
            assert got == value, f"contact {cid} custom field {key}: {got!r}, typed {value!r}"

    def expected_sales(self) -> dict[str, float]:
        """Omie customer id -> the sum of its invoiced orders (all of them lie inside the
        12-month window: the test's clock moves seconds), from the simulator's own orders."""
        out: dict[str, float] = {}
        for row in self.w.erp.db["pedidos"]:
            cab = row.data["cabecalho"]
            if str(cab.get("etapa")) in ("60", "70"):
                key = str(cab["codigo_cliente"])
                out[key] = out.get(key, 0.0) + order_total(row.data)
        return out

    def check_converged(self) -> None:
        self.w.sync()
        final = self.w.sync()
        assert final.writes == 0, final.as_dict(with_changes=True)
        assert final.quarantined == 0, final.as_dict()
        with Store.open(self.w.settings.state_url) as store:
            crm_c, erp_c = self.w.clients()
            conns = build_connectors(self.w.settings, crm_client=crm_c, erp_client=erp_c)
            # custom fields named by label are resolved through the CRM's field list, as a run
            # does; owners and tags are read through each side's users / sellers / tags lists
            maps = check_mappings(self.w.settings, connectors=conns).mappings
            ctx = MapContext(refs=RunReferences(conns))
            for entity in maps:
                for crm_key, erp_key in store.links(entity):
                    ctx.add_link(entity, crm_key, erp_key)
            tables = {"customers": ("Contacts", "clientes"), "products": ("Products", "produtos"),
                      "orders": ("Orders", "pedidos")}
            for entity, mapping in maps.items():
                crm_t, erp_t = tables[entity]
                for crm_key, erp_key in store.links(entity):
                    crm_rec = crm_c.get(f"/_sandbox/{crm_t}/{crm_key}").json()
                    erp_rec = erp_c.get(f"http://omie.test/_sandbox/{erp_t}/{erp_key}").json()
                    if entity == "customers":
                        crm_rec = crm_c.get(f"/Contacts({crm_key})?$expand=City,State",
                                            headers={"User-Key": self.w.crm.user_key}
                                            ).json()["value"][0]
                    a = read_record(mapping, "crm", crm_rec, ctx)
                    b = read_record(mapping, "erp", erp_rec, ctx)
                    shared = [f for f, s in mapping.fields.items()
                              if s.crm and s.erp and s.erp.computed is None]
                    assert {f: a[f] for f in shared} == {f: b[f] for f in shared}, (entity, crm_key)
            sales = self.expected_sales()
            for crm_key, erp_key in store.links("customers"):
                contact = self.w.crm.db["Contacts"].get(int(crm_key)).data
                got = custom_value(contact, SALES)
                want = sales.get(erp_key)
                if want is None:
                    assert got is None, (crm_key, erp_key, got)
                else:
                    assert got == pytest.approx(want), (crm_key, erp_key, got, want)
        self.no_duplicates()
        self.no_crm_phone_lost()
        self.no_crm_custom_field_lost()


def test_convergence() -> None:
    class Machine(Convergence):
        def teardown(self) -> None:
            try:
                self.check_converged()
            finally:
                super().teardown()

    Machine.TestCase.settings = settings(
        max_examples=12, stateful_step_count=25, deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    Machine.TestCase().runTest()
