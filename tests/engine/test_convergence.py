"""Convergence: random user edits on both simulators interleaved with syncs end with both
systems agreeing on every mapped field of every linked record, no duplicate tax ids or product
codes, and one more sync writing nothing. CRM users also give contacts more phones than the ERP
has slots: none of those is ever lost."""

from __future__ import annotations

import copy
import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from stdnum.br import cnpj as std_cnpj

from etl.api import check_mappings
from etl.connectors.factory import build_connectors
from etl.engine.references import RunReferences
from etl.mapping import MapContext, read_record
from etl.state import Store
from tests.engine.conftest import make_world

NAMES = st.sampled_from(["Padaria Central", "Café São João", "Mercado Bom Preço",
                         "Ótica Visão", "Açougue do Zé", "Farmácia Saúde"])
EMAILS = st.sampled_from(["vendas@a.com.br", "financeiro@b.com.br", "contato@c.com.br"])


def new_cnpj(n: int) -> str:
    base = f"{n:08d}0001"
    return base + std_cnpj.calc_check_digits(base)


def digits(value: str) -> str:
    return re.sub(r"\D", "", value or "")


class Convergence(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.w = make_world(f"sqlite:///{Path(self.tmp.name) / 's.db'}", customers=8,
                            products=4, orders=2, overlap=0.5)
        self.counter = 100
        self.syncs = 0
        self.extra_phones: dict[int, set[str]] = {}  # contact id -> CRM-only numbers (digits)

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
        if not rows:
            return
        row = data.draw(st.sampled_from(rows))
        cab = copy.deepcopy(row.data["cabecalho"])
        cab["etapa"] = data.draw(st.sampled_from(["10", "20", "50"]))
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
        self.no_duplicates()
        self.no_crm_phone_lost()


def test_convergence() -> None:
    class Machine(Convergence):
        def teardown(self) -> None:
            try:
                self.check_converged()
            finally:
                super().teardown()

    Machine.TestCase.settings = settings(
        max_examples=15, stateful_step_count=12, deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    Machine.TestCase().runTest()
