"""Seed both simulators with realistic Brazilian data, as a company migrating to ponte has it.

Faker (pt_BR) builds small *pools* once (names, streets, bairros); records are then combined
from the pools with ``random.Random(seed)``, which keeps 100,000 customers within seconds and
makes every run with the same seed (and ``now``) produce identical records.

Customers: ``overlap`` of them exist on both sides with the same CNPJ/CPF and slightly different
fields (capitalization, phone format, e-mail case); the rest are split ~60/40 between ERP-only
and CRM-only. Products all live in Omie; ``overlap`` of them also in Ploomes with the same code.
Orders live in Ploomes only. Tables are appended to; callers seed empty simulators.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

from stdnum.br import cnpj as stdnum_cnpj
from stdnum.br import cpf as stdnum_cpf

from etl.sandbox.core import BRT
from etl.sandbox.geo import CITIES, STATES, City
from etl.sandbox.tables import Database

if TYPE_CHECKING:
    from etl.sandbox.omie import OmieSim
    from etl.sandbox.ploomes import PloomesSim

WINDOW = timedelta(days=90)
ERP_ONLY_SHARE = 0.6  # of the customers that are not on both sides
COMPANY_SHARE = 0.7
UPDATED_SHARE = 0.35  # records edited some time after creation
STATE_ID = {uf: i + 1 for i, (uf, _) in enumerate(STATES)}

# (razão social activity, short word for a nome fantasia)
SECTORS = [
    ("Comércio de Alimentos", "Alimentos"), ("Materiais de Construção", "Materiais"),
    ("Tecnologia da Informação", "Tech"), ("Transportes e Logística", "Transportes"),
    ("Distribuidora de Bebidas", "Bebidas"), ("Indústria Metalúrgica", "Metais"),
    ("Serviços Médicos", "Saúde"), ("Confecções", "Modas"), ("Agropecuária", "Agro"),
    ("Móveis e Decoração", "Móveis"), ("Autopeças", "Autopeças"), ("Engenharia", "Engenharia"),
    ("Papelaria", "Papelaria"), ("Produtos Químicos", "Química"), ("Cosméticos", "Beleza"),
    ("Equipamentos Hospitalares", "Hospitalar"), ("Plásticos", "Plásticos"),
    ("Calçados", "Calçados"), ("Informática", "Informática"), ("Padaria e Confeitaria", "Pães"),
]
FANTASIA_WORDS = ["Casa", "Mundo", "Grupo", "Center", "Express", "Prime", "Nova", "Real",
                  "Atacadão", "Ponto", "Império", "Estrela", "União", "Brasil", "Sul"]
SUFFIXES = ["Ltda", "Ltda", "Ltda", "EIRELI", "S.A.", "ME", "EPP"]
COMPLEMENTS = ["Sala {n}", "Apto {n}", "Bloco {l}", "Loja {n}", "Galpão {n}", "Conjunto {n}",
               "Fundos", "Andar {n}"]
MAIL_USERS = ["contato", "financeiro", "compras", "comercial", "vendas", "adm"]
MAIL_DOMAINS = ["gmail.com", "hotmail.com", "outlook.com", "uol.com.br", "yahoo.com.br",
                "terra.com.br", "bol.com.br"]
# (product, unit, NCM, price range in BRL, variants)
PRODUCT_KINDS = [
    ("Cadeira de Escritório", "UN", "9401.30.90", (250, 1800), "Giratória|Fixa|Presidente"),
    ("Mesa de Reunião", "UN", "9403.30.00", (600, 4500), "Redonda|Retangular 2,0 m|Oval"),
    ("Parafuso Sextavado", "CX", "7318.15.00", (18, 120), '1/4"|3/8"|1/2"|Inox 5/16"'),
    ("Café Torrado e Moído", "KG", "0901.21.00", (28, 75), "Tradicional|Extraforte|Gourmet"),
    ("Cabo Elétrico Flexível", "M", "8544.49.00", (2.5, 19), "2,5 mm²|4 mm²|6 mm²|10 mm²"),
    ("Tinta Acrílica", "L", "3209.10.10", (22, 95), "Branco Neve|Fosca Cinza|Semibrilho Azul"),
    ("Papel Sulfite A4", "CX", "4802.56.10", (90, 260), "75 g/m²|90 g/m²|Reciclado"),
    ("Notebook", "UN", "8471.30.12", (2800, 9800), "14 pol. i5|15,6 pol. i7|Ryzen 5 8 GB"),
    ("Monitor LED", "UN", "8528.52.20", (650, 2900), "21,5 pol.|24 pol.|27 pol. 4K"),
    ("Detergente Neutro", "L", "3402.20.00", (4, 18), "Galão 5 L|Concentrado|Limão"),
    ("Luva de Proteção", "PAR", "6116.10.00", (6, 45), "Nitrílica|Vaqueta|Látex P|Látex G"),
    ("Açúcar Cristal", "KG", "1701.99.00", (3.5, 8), "Fardo|Saco 50 kg|Orgânico"),
    ("Tubo de PVC", "M", "3917.23.00", (7, 40), "Soldável 25 mm|Esgoto 100 mm|Água 50 mm"),
    ("Óleo Lubrificante", "L", "2710.19.32", (25, 85), "15W40|5W30 Sintético|Hidráulico 68"),
    ("Cimento Portland", "SC", "2523.29.10", (32, 48), "CP II 50 kg|CP V ARI 40 kg"),
    ("Teclado USB", "UN", "8471.60.52", (45, 380), "ABNT2|Sem Fio|Mecânico"),
]
UNIT_WISE = {"UN", "CX", "PAR", "SC"}  # sold in whole units


@dataclass(frozen=True)
class SeedSummary:
    """What :func:`seed` put on each side; ``shared_*`` exist on both."""

    crm_customers: int
    erp_customers: int
    shared_customers: int
    crm_products: int
    erp_products: int
    shared_products: int
    crm_orders: int


@dataclass(frozen=True)
class _Pools:
    first_names: list[str]
    last_names: list[str]
    streets: list[str]
    bairros: list[str]


@cache
def _pools() -> _Pools:
    """Faker runs here only, with a fixed seed: the pools are the same in every process."""
    from faker import Faker

    fake = Faker("pt_BR")
    fake.seed_instance(2024)

    def uniq(make: Any, n: int) -> list[str]:
        return sorted({make() for _ in range(n)})

    return _Pools(uniq(fake.first_name, 4000), uniq(fake.last_name, 2000),
                  uniq(fake.street_name, 4000), uniq(fake.bairro, 3000))


@cache
def _ascii(text: str) -> str:
    """Lowercase letters and digits only, for e-mail addresses."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in plain.lower() if ch.isalnum())


def _cpf_check(base: str) -> str:
    """The two check digits of a 9-digit CPF base (python-stdnum has no public function)."""
    d1 = (11 - sum((10 - i) * int(base[i]) for i in range(9))) % 11 % 10
    d2 = (11 - sum((11 - i) * int(base[i]) for i in range(9)) - 2 * d1) % 11 % 10
    return f"{d1}{d2}"


def _tax_id(rng: random.Random, company: bool, used: set[str]) -> str:
    while True:
        if company:
            base = f"{rng.randrange(10**8):08d}0001"
            number = base + stdnum_cnpj.calc_check_digits(base)
        else:
            base = f"{rng.randrange(10**9):09d}"
            number = base + _cpf_check(base)
        if number not in used and len(set(number)) > 1:
            used.add(number)
            return number


def _punctuate(tax: str) -> str:
    return stdnum_cnpj.format(tax) if len(tax) == 14 else stdnum_cpf.format(tax)


def _instants(rng: random.Random, now: datetime, window: timedelta = WINDOW
              ) -> tuple[datetime, datetime]:
    """(created, updated) within ``window`` before ``now``, millisecond precision."""
    span_ms = int(window.total_seconds() * 1000)
    created = now - timedelta(milliseconds=rng.randrange(60_000, span_ms))
    updated = created
    if rng.random() < UPDATED_SHARE:
        gap = int((now - created).total_seconds() * 1000) - 1000
        updated = created + timedelta(milliseconds=rng.randrange(1000, max(gap, 1001)))
    return created, updated


def _customer(rng: random.Random, p: _Pools, used: set[str]) -> dict[str, Any]:
    """One real-world customer, side-neutral."""
    company = rng.random() < COMPANY_SHARE
    city: City = rng.choice(CITIES)
    last, last2 = rng.choice(p.last_names), rng.choice(p.last_names)
    if company:
        sector, short = rng.choice(SECTORS)
        legal = f"{last} {'& ' + last2 + ' ' if rng.random() < 0.4 else ''}{sector} "
        legal += rng.choice(SUFFIXES)
        fantasia = (f"{rng.choice(FANTASIA_WORDS)} {last}" if rng.random() < 0.5
                    else f"{short} {last}")
        email = f"{rng.choice(MAIL_USERS)}@{_ascii(fantasia)}.com.br"
        phone = f"{rng.randint(2, 5)}{rng.randrange(10**6, 10**7):07d}"
    else:
        first = rng.choice(p.first_names)
        legal = fantasia = f"{first} {last}" + (f" {last2}" if rng.random() < 0.5 else "")
        email = f"{_ascii(first)}.{_ascii(last)}{rng.randrange(100)}@{rng.choice(MAIL_DOMAINS)}"
        phone = f"9{rng.randrange(10**7, 10**8):08d}"
    comp = rng.choice(COMPLEMENTS) if rng.random() < 0.3 else ""
    return {
        "company": company, "tax": _tax_id(rng, company, used), "legal": legal,
        "fantasia": fantasia, "email": email, "ddd": city.ddd, "phone": phone,
        "phone2": f"{rng.randint(2, 5)}{rng.randrange(10**6, 10**7):07d}"
        if company and rng.random() < 0.3 else "",
        "street": rng.choice(p.streets),
        "number": str(rng.randint(1, 3999)) if rng.random() < 0.97 else "S/N",
        "complement": comp.format(n=rng.randint(1, 120), l=rng.choice("ABCD")),
        "bairro": rng.choice(p.bairros), "city": city,
        "cep": f"{city.cep_prefix}{rng.randrange(1000):03d}",
        "inactive": rng.random() < 0.03,
        "ie": f"{rng.randrange(10**8, 10**12)}" if company and rng.random() < 0.7 else "ISENTO",
        "simples": "S" if company and rng.random() < 0.5 else "N",
    }


def _fmt_phone(ddd: str, number: str, *, spaced: bool = True) -> str:
    body = f"{number[:-4]}-{number[-4:]}"
    return f"({ddd}) {body}" if spaced else f"{ddd} {number}"


def _ploomes_contact(c: dict[str, Any], rng: random.Random, owners: list[int], *, shared: bool
                     ) -> dict[str, Any]:
    email, name = c["email"], c["fantasia"]
    if shared and rng.random() < 0.5:  # the CRM copy was typed by someone else
        email = email[0].upper() + email[1:]
    if shared and c["company"] and rng.random() < 0.5:
        name = name.upper() if rng.random() < 0.5 else name.title()
    spaced = not (shared and rng.random() < 0.3)
    phones = [{"PhoneNumber": _fmt_phone(c["ddd"], c["phone"], spaced=spaced), "TypeId": 1,
               "CountryId": 76}]
    if c["phone2"]:
        phones.append({"PhoneNumber": _fmt_phone(c["ddd"], c["phone2"]), "TypeId": 1,
                       "CountryId": 76})
    city: City = c["city"]
    data: dict[str, Any] = {"TypeId": 1 if c["company"] else 2, "Name": name}
    if c["company"]:
        data["LegalName"] = c["legal"]
    data.update({
        "Register": c["tax"], ("CNPJ" if c["company"] else "CPF"): c["tax"], "Email": email,
        "Phones": phones, "StreetAddress": c["street"], "StreetAddressNumber": c["number"],
        "StreetAddressLine2": c["complement"], "Neighborhood": c["bairro"],
        "ZipCode": int(c["cep"]), "CityId": CITIES.index(city) + 1,
        "StateId": STATE_ID[city.uf], "CountryId": 76, "StatusId": 2 if c["inactive"] else 1,
        "OwnerId": rng.choice(owners), "Key": "", "Tags": [], "OtherProperties": [],
    })
    return data


def _omie_cliente(c: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    upper = rng.random() < 0.6  # many ERP users type in capitals
    city: City = c["city"]

    def cap(s: str) -> str:
        return s.upper() if upper else s

    hyphen = rng.random() < 0.5
    return {
        "codigo_cliente_integracao": "", "razao_social": cap(c["legal"])[:60],
        "nome_fantasia": c["fantasia"], "cnpj_cpf": _punctuate(c["tax"]),
        "pessoa_fisica": "N" if c["company"] else "S", "inativo": "S" if c["inactive"] else "N",
        "email": c["email"].lower(), "telefone1_ddd": c["ddd"],
        "telefone1_numero": f"{c['phone'][:-4]}-{c['phone'][-4:]}" if hyphen else c["phone"],
        "telefone2_ddd": c["ddd"] if c["phone2"] else "", "telefone2_numero": c["phone2"],
        "endereco": cap(c["street"]), "endereco_numero": c["number"],
        "complemento": cap(c["complement"]), "bairro": cap(c["bairro"]),
        "cidade": f"{city.name.upper()} ({city.uf})", "cidade_ibge": city.ibge,
        "estado": city.uf, "cep": c["cep"], "codigo_pais": "1058", "exterior": "N",
        "inscricao_estadual": c["ie"], "optante_simples_nacional": c["simples"],
        "tags": [{"tag": "Cliente"}], "recomendacoes": {"codigo_vendedor": 0},
    }


def _product(rng: random.Random, i: int) -> dict[str, Any]:
    name, unit, ncm, (lo, hi), variants = rng.choice(PRODUCT_KINDS)
    return {"code": f"PRD-{i:05d}", "name": f"{name} {rng.choice(variants.split('|'))}",
            "unit": unit, "ncm": ncm, "price": round(rng.uniform(lo, hi), 2)}


def _in_code_order(items: list[tuple[datetime, datetime, dict[str, Any]]]
                   ) -> list[tuple[datetime, datetime, dict[str, Any]]]:
    """Hand out the drawn instants in list order, so PRD-00001 is the oldest product."""
    stamps = sorted((c, u) for c, u, _ in items)
    return [(c, u, d) for (c, u), (_, _, d) in zip(stamps, items, strict=True)]


def _insert(db: Database, table: str, items: list[tuple[datetime, datetime, dict[str, Any]]]
            ) -> list[int]:
    """Insert in creation order (ids grow with time, as in the real systems)."""
    items.sort(key=lambda t: t[0])
    ids = []
    with db.lock:
        for created, updated, data in items:
            row = db[table].insert(data, created)
            row.updated = updated
            ids.append(row.id)
    return ids


def seed(crm: PloomesSim, erp: OmieSim, *, customers: int, products: int, orders: int,
         seed: int = 42, overlap: float = 0.3, now: datetime | None = None) -> SeedSummary:
    """Fill both simulators; same ``seed`` and ``now`` → identical records and timestamps."""
    if not 0 <= overlap <= 1:
        raise ValueError(f"overlap must be within [0, 1], got {overlap}")
    now = (now or crm.clock.now()).astimezone(UTC)
    rng, pools = random.Random(seed), _pools()
    owners = sorted(r.id for r in crm.db["Users"]) or [1]

    n_shared = round(customers * overlap)
    n_erp = round((customers - n_shared) * ERP_ONLY_SHARE)
    sides = ["both"] * n_shared + ["erp"] * n_erp + ["crm"] * (customers - n_shared - n_erp)
    rng.shuffle(sides)
    used: set[str] = set()
    crm_items, erp_items = [], []
    for side in sides:
        c = _customer(rng, pools, used)
        if side != "crm":
            erp_items.append((*_instants(rng, now), _omie_cliente(c, rng)))
        if side != "erp":
            crm_items.append((*_instants(rng, now), _ploomes_contact(c, rng, owners,
                                                                      shared=side == "both")))
    contact_ids = _insert(crm.db, "Contacts", crm_items)
    _insert(erp.db, "clientes", erp_items)

    n_crm_products = round(products * overlap) or (1 if orders and products else 0)
    crm_prod, erp_prod = [], []
    for i in range(1, products + 1):
        p = _product(rng, i)
        erp_prod.append((*_instants(rng, now), {
            "codigo_produto_integracao": "", "codigo": p["code"], "descricao": p["name"].upper(),
            "unidade": p["unit"], "ncm": p["ncm"], "valor_unitario": p["price"],
            "inativo": "N", "bloqueado": "N", "tipoItem": "00", "descr_detalhada": ""}))
        if i <= n_crm_products:
            crm_prod.append((*_instants(rng, now), {
                "Name": p["name"], "Code": p["code"], "MeasurementUnit": p["unit"],
                "UnitPrice": p["price"], "CurrencyId": 1, "FamilyId": 1, "GroupId": 1,
                "Suspended": False, "OtherProperties": []}))
    _insert(erp.db, "produtos", _in_code_order(erp_prod))
    product_ids = _insert(crm.db, "Products", _in_code_order(crm_prod))

    if orders and not (contact_ids and product_ids):
        raise ValueError("orders need Ploomes contacts and products: seed some customers on "
                         "the CRM side and at least one product")
    order_items = []
    for _ in range(orders):
        contact = crm.db["Contacts"].rows[rng.choice(contact_ids)]
        lines = []
        for pid in rng.sample(product_ids, min(len(product_ids), rng.randint(1, 4))):
            prod = crm.db["Products"].rows[pid].data
            top = 5 if prod["UnitPrice"] > 1000 else 50
            qty: float = (rng.randint(1, top) if prod["MeasurementUnit"] in UNIT_WISE
                          else round(rng.uniform(0.5, top), 2))
            lines.append({"ProductId": pid, "ProductName": prod["Name"], "Quantity": qty,
                          "UnitPrice": prod["UnitPrice"], "Discount": 0,
                          "Total": round(qty * prod["UnitPrice"], 2)})
        created, updated = _instants(rng, now, timedelta(days=30))
        order_items.append((created, updated, {
            "Date": created.astimezone(BRT).strftime("%Y-%m-%dT%H:%M:%S-03:00"),
            "ContactId": contact.id, "ContactName": contact.data["Name"], "StageId": 1,
            "Amount": round(sum(line["Total"] for line in lines), 2), "Discount": 0,
            "OwnerId": contact.data["OwnerId"],
            "Description": f"Pedido de venda — {len(lines)} item(ns)", "Key": "",
            "Products": lines, "OtherProperties": []}))
    order_items.sort(key=lambda t: t[0])
    order_items = [(c, u, {"OrderNumber": n, **d}) for n, (c, u, d) in enumerate(order_items, 1)]
    _insert(crm.db, "Orders", order_items)

    return SeedSummary(len(crm_items), len(erp_items), n_shared, len(crm_prod), len(erp_prod),
                       len(crm_prod), len(order_items))
