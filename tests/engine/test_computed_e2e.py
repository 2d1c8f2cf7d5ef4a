"""End-to-end: computed fields and ERP facts in CRM custom fields, through both simulators and a
real state database. An invoiced ERP order moves its customer's sales volume and last purchase
in the same sync; an order outside the 12-month window does not count; a second run writes
nothing; a run 13 months later sees the window move; a credit limit changed in the ERP arrives
in the CRM."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from etl.sandbox.ploomes.custom import FIELDS as FIELDS_SEEDED
from tests.engine.conftest import MAPPINGS, World, make_world

# the CRM custom fields these tests write, as the simulated Ploomes account configures them
# (named by label in the mapping; the keys are what the simulator stores)
LABELS = {f["Name"]: f["Key"] for f in FIELDS_SEEDED}
SALES = LABELS["Volume de vendas 12m"]
LAST = LABELS["Última compra"]
COUNT = LABELS["Pedidos faturados 12m"]
CREDIT = LABELS["Limite de crédito"]
DISCOUNT = LABELS["Desconto especial (%)"]
YEAR_S = 365 * 86400.0


COMPUTED = {
    "invoiced_orders": {
        "entity": "orders", "side": "erp", "link": "cabecalho.codigo_cliente",
        "amount": "total_pedido.valor_total_pedido",
        "date": {"path": "infoCadastro.dFat", "format": "%d/%m/%Y"},
        "where": {"infoCadastro.faturado": ["S"], "infoCadastro.cancelado": ["N", ""]},
        "window": {"months": 12},
    },
}
FIELDS: dict[str, Any] = {
    "sales_12m": {"owner": "erp",
                  "crm": {"custom": "Volume de vendas 12m"},
                  "erp": {"computed": {"source": "invoiced_orders", "agg": "sum"},
                          "transform": "decimal"}},
    "orders_12m": {"owner": "erp",
                   "crm": {"custom": "Pedidos faturados 12m"},
                   "erp": {"computed": {"source": "invoiced_orders", "agg": "count"},
                           "transform": "int"}},
    "last_purchase": {"owner": "erp",
                      "crm": {"custom": "Última compra"},
                      "erp": {"computed": {"source": "invoiced_orders", "agg": "max"},
                              "transform": "date"}},
    "credit_limit": {"owner": "erp",
                     "crm": {"custom": "Limite de crédito"},
                     "erp": {"path": "valor_limite_credito", "transform": "decimal"}},
    "special_discount": {"owner": "erp",
                         "crm": {"custom": "Desconto especial (%)"},
                         "erp": {"path": "caracteristicas[campo=DESCONTO_ESPECIAL].conteudo",
                                 "transform": "decimal"}},
}


def mappings_with_computed(tmp_path: Path, **fields: Any) -> Path:
    folder = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, folder)
    file = folder / "customers.yaml"
    data = yaml.safe_load(file.read_text())
    data["computed"] = COMPUTED
    data["fields"].update(fields or FIELDS)
    file.write_text(yaml.safe_dump(data, allow_unicode=True))
    return folder


@pytest.fixture
def w(tmp_path: Path) -> World:
    world = make_world(f"sqlite:///{tmp_path / 'state.db'}", customers=12, products=6, orders=6,
                       overlap=1.0)
    world.settings.mappings_dir = mappings_with_computed(tmp_path)
    first = world.sync()
    assert first.status == "ok", first.as_dict()
    return world


def prop(w: World, contact_id: int, key: str) -> Any:
    for item in w.crm.db["Contacts"].get(contact_id).data.get("OtherProperties") or []:
        if item.get("FieldKey") == key:
            return next((v for k, v in item.items() if k.endswith("Value")), None)
    return None


def contact_of(w: World, cliente_id: int) -> int:
    with w.store() as store:
        pairs = store.links("customers", erp_keys=[str(cliente_id)])
    assert pairs, f"cliente {cliente_id} is not linked"
    return int(pairs[0][0])


def invoice(w: World, pedido_id: int) -> None:
    """An ERP user invoices the order (etapa 60: faturado)."""
    cab = dict(w.erp.db["pedidos"].get(pedido_id).data["cabecalho"])
    cab["etapa"] = "60"
    w.erp.ui_update("pedidos", pedido_id, {"cabecalho": cab})


def pedidos(w: World) -> list[Any]:
    return list(w.erp.db["pedidos"])


def total(w: World, pedido_id: int) -> float:
    det = w.erp.db["pedidos"].get(pedido_id).data.get("det", [])
    return round(sum(float(i["produto"]["quantidade"]) * float(i["produto"]["valor_unitario"])
                     - float(i["produto"].get("valor_desconto") or 0) for i in det), 2)


def order_requests(w: World) -> int:
    """Requests the ERP received for its orders (service produtos/pedido)."""
    return sum(n for (endpoint, _status), n in w.erp.requests.counts.items()
               if "/pedido/" in f"/{endpoint}")


def brt_date(w: World) -> str:
    """Today in the ERP's clock (Brasília), as ponte stores it."""
    return (w.erp.clock.now() - timedelta(hours=3)).date().isoformat()


def test_an_invoiced_order_reaches_its_customer_in_the_same_sync(w: World) -> None:
    order = pedidos(w)[0]
    cliente = int(order.data["cabecalho"]["codigo_cliente"])
    contact = contact_of(w, cliente)
    assert prop(w, contact, SALES) is None
    invoice(w, order.id)
    day = brt_date(w)
    report = w.sync()
    assert report.status == "ok", report.as_dict()
    assert prop(w, contact, SALES) == pytest.approx(total(w, order.id))
    assert prop(w, contact, COUNT) == 1
    assert str(prop(w, contact, LAST)).startswith(day)
    assert report.entities["customers"].crm.updated == 1
    # the second run writes nothing
    before = w.write_requests()
    again = w.sync()
    assert again.writes == 0, again.as_dict(with_changes=True)
    assert w.write_requests() == before


def test_an_order_outside_the_window_does_not_count_and_the_window_moves(w: World) -> None:
    old, new = pedidos(w)[0], None
    cliente = int(old.data["cabecalho"]["codigo_cliente"])
    new = next((p for p in pedidos(w)[1:]
                if int(p.data["cabecalho"]["codigo_cliente"]) == cliente), None)
    if new is None:  # give the same customer a second order, entered in the ERP
        data = {k: v for k, v in old.data.items() if k in ("det", "frete",
                                                           "informacoes_adicionais")}
        cab = {k: v for k, v in old.data["cabecalho"].items()
               if k in ("codigo_cliente", "data_previsao", "codigo_parcela")}
        new = w.erp.ui_create("pedidos", {"cabecalho": {**cab, "etapa": "10"}, **data})
    contact = contact_of(w, cliente)
    invoice(w, old.id)
    w.tick(13 * 30.5 * 86400)  # the old invoice is now 13 months old
    invoice(w, new.id)
    day = brt_date(w)
    report = w.sync()
    assert report.status in ("ok", "partial"), report.as_dict()
    assert prop(w, contact, SALES) == pytest.approx(total(w, new.id))
    assert prop(w, contact, COUNT) == 1
    assert str(prop(w, contact, LAST)).startswith(day)
    assert w.sync().writes == 0
    # 13 months later, with nothing changed in either system, the window has moved past both
    w.tick(13 * 30.5 * 86400)
    moved = w.sync()
    assert moved.entities["customers"].crm.updated == 1, moved.as_dict(with_changes=True)
    assert prop(w, contact, SALES) == 0
    assert prop(w, contact, COUNT) == 0
    assert not prop(w, contact, LAST)
    assert w.sync().writes == 0


def test_credit_limit_and_special_discount_changed_in_the_erp_arrive_in_the_crm(w: World
                                                                                  ) -> None:
    cliente = next(iter(w.erp.db["clientes"]))
    contact = contact_of(w, cliente.id)
    w.erp.ui_update("clientes", cliente.id, {
        "valor_limite_credito": 25000.5,
        "caracteristicas": [{"campo": "DESCONTO_ESPECIAL", "conteudo": "7,5"}]})
    report = w.sync("customers")
    assert report.status == "ok", report.as_dict()
    assert report.entities["customers"].crm.updated == 1
    assert prop(w, contact, CREDIT) == pytest.approx(25000.5)
    assert prop(w, contact, DISCOUNT) == pytest.approx(7.5)
    assert w.sync().writes == 0
    # owned by the ERP: a CRM user's edit is put back, never sent to the ERP
    w.crm.ui_update("Contacts", contact, {"OtherProperties": [
        {"FieldKey": CREDIT, "DecimalValue": 1.0},
        {"FieldKey": DISCOUNT, "DecimalValue": 7.5}]})
    w.sync("customers")
    assert prop(w, contact, CREDIT) == pytest.approx(25000.5)
    assert w.erp.db["clientes"].get(cliente.id).data["valor_limite_credito"] == 25000.5


def test_one_changed_custom_field_keeps_the_others(w: World) -> None:
    cliente = next(iter(w.erp.db["clientes"]))
    contact = contact_of(w, cliente.id)
    w.erp.ui_update("clientes", cliente.id, {
        "valor_limite_credito": 1000.0,
        "caracteristicas": [{"campo": "DESCONTO_ESPECIAL", "conteudo": "5"}]})
    w.sync("customers")
    w.erp.ui_update("clientes", cliente.id, {"valor_limite_credito": 2000.0})
    w.sync("customers")
    assert prop(w, contact, CREDIT) == pytest.approx(2000.0)
    assert prop(w, contact, DISCOUNT) == pytest.approx(5.0)
    assert w.sync().writes == 0


def test_marks_left_by_an_orders_run_are_computed_by_the_next_customers_run(w: World) -> None:
    """Orders synced on their own (another schedule, or a run killed before the customers
    were computed): the facts and marks are in the state, and the next customers run computes
    the marked customers without reading any order."""
    order = pedidos(w)[0]
    contact = contact_of(w, int(order.data["cabecalho"]["codigo_cliente"]))
    invoice(w, order.id)
    assert w.sync("orders").status == "ok"
    assert prop(w, contact, SALES) is None
    with w.store() as store:
        assert store.computed_marks("customers")
    order_calls = order_requests(w)
    assert order_calls > 0
    report = w.sync("customers")
    assert report.entities["customers"].crm.updated == 1
    assert prop(w, contact, SALES) == pytest.approx(total(w, order.id))
    assert order_requests(w) == order_calls  # no order was read again
    with w.store() as store:
        assert store.computed_marks("customers") == {}
    assert w.sync().writes == 0


def test_a_sales_volume_typed_in_the_crm_is_cleared_when_the_contact_is_created_in_the_erp(
        tmp_path: Path) -> None:
    """The new ERP customer has no invoiced order, so its computed sales volume is blank; a
    value a CRM user typed before the first sync must not stay (the ERP owns the field, and
    the create cannot carry a computed value)."""
    world = make_world(f"sqlite:///{tmp_path / 'state.db'}", customers=6, overlap=0.0)
    world.settings.mappings_dir = mappings_with_computed(tmp_path)
    with world.store() as store:
        assert not store.links("customers")
    contact = next(r.id for r in world.crm.db["Contacts"])
    world.crm.ui_update("Contacts", contact, {"OtherProperties": [
        {"FieldKey": SALES, "DecimalValue": 3050.0}]})
    report = world.sync("customers")
    assert report.status == "ok", report.as_dict()
    with world.store() as store:
        assert dict(store.links("customers")).get(str(contact)), "not created in the ERP"
    assert prop(world, contact, SALES) is None
    assert world.sync("customers").writes == 0
    # typed again later: put back like any ERP-owned field
    world.crm.ui_update("Contacts", contact, {"OtherProperties": [
        {"FieldKey": SALES, "DecimalValue": 10.0}]})
    world.sync("customers")
    assert prop(world, contact, SALES) is None


@pytest.mark.parametrize("seed", [True, False])
def test_a_credit_limit_typed_in_the_crm_seeds_a_new_erp_customer_only_without_seed_false(
        tmp_path: Path, seed: bool) -> None:
    """`seed: false` (the shipped mapping's credit limit and discount): a value a salesperson
    typed in the CRM never becomes a new ERP customer's credit limit, and is put back to blank
    in the CRM, the ERP being the owner; by default an owned field still seeds a create."""
    world = make_world(f"sqlite:///{tmp_path / 'state.db'}", customers=6, overlap=0.0)
    fields = {**FIELDS, "credit_limit": {**FIELDS["credit_limit"], "seed": seed}}
    world.settings.mappings_dir = mappings_with_computed(tmp_path, **fields)
    contact = next(r.id for r in world.crm.db["Contacts"])
    world.crm.ui_update("Contacts", contact, {"OtherProperties": [
        {"FieldKey": CREDIT, "DecimalValue": 90000.0}]})
    assert world.sync("customers").status == "ok"
    with world.store() as store:
        erp_key = dict(store.links("customers"))[str(contact)]
    limit = world.erp.db["clientes"].get(int(erp_key)).data.get("valor_limite_credito")
    if seed:
        assert limit == 90000.0 and prop(world, contact, CREDIT) == 90000.0
    else:
        assert not limit and prop(world, contact, CREDIT) is None
    assert world.sync("customers").writes == 0
