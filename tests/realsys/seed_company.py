"""A seeded company on both real servers, through their own REST APIs, for the end-to-end tests.

Tryton holds the parties (each with a Belgian VAT number as its tax identifier, an address, an
e-mail and a phone) and the products; BottleCRM holds accounts (the VAT number in the org's
``tax_id`` custom field), a few of the products (same SKU as the Tryton code) and the deals, won
ones with line items on those products. ``overlap`` customers exist on both sides with the same
tax id and small differences, as in a company adopting ponte: the first sync must match them,
not duplicate them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

T = TypeVar("T")
R = TypeVar("R")

CITIES = [("Brussels", "1000"), ("Gent", "9000"), ("Antwerpen", "2000"), ("Leuven", "3000"),
          ("Liège", "4000"), ("Namur", "5000"), ("Brugge", "8000"), ("Mons", "7000")]
STREETS = ["Rue de la Loi", "Kerkstraat", "Meir", "Grote Markt", "Avenue Louise", "Stationsstraat"]


def be_vat(number: int) -> str:
    """A valid Belgian VAT number (``BE0`` + 7 digits + mod-97 check digits)."""
    base = f"0{number % 10_000_000:07d}"
    return f"BE{base}{97 - int(base) % 97:02d}"


def _parallel(fn: Callable[[T], R], items: Iterable[T], workers: int = 4) -> list[R]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


def _ok(response: httpx.Response, what: str) -> Any:
    if response.status_code >= 400:
        raise AssertionError(f"seeding {what}: {response.status_code} {response.text[:300]}")
    return response.json()


@dataclass
class Party:
    tax_id: str
    name: str
    email: str
    phone: str
    street: str
    city: str
    postal_code: str


@dataclass
class Seeded:
    """What was seeded, by natural key (tax ids, product codes) and by native id."""

    run: str
    tryton_parties: dict[str, int] = field(default_factory=dict)  # tax id -> party id
    crm_accounts: dict[str, str] = field(default_factory=dict)  # tax id -> account uuid
    shared_tax_ids: list[str] = field(default_factory=list)
    tryton_products: dict[str, int] = field(default_factory=dict)  # code -> product.product id
    crm_products: dict[str, str] = field(default_factory=dict)  # sku -> product uuid
    won_deals: list[str] = field(default_factory=list)
    open_deals: list[str] = field(default_factory=list)

    @property
    def customers(self) -> int:
        return len(set(self.tryton_parties) | set(self.crm_accounts))


def _party(run: str, n: int, rng: random.Random) -> Party:
    city, postal = rng.choice(CITIES)
    return Party(tax_id=be_vat(int(run, 16) * 1000 + n), name=f"Company {run}-{n:04d} BV",
                 email=f"info{n}@company-{run}.example", phone=f"+32 2 555 {n // 100:02d} {n % 100:02d}",
                 street=f"{rng.choice(STREETS)} {rng.randint(1, 200)}", city=city,
                 postal_code=postal)


def tryton_country(tryton: httpx.Client, code: str = "BE") -> int:
    found = _ok(tryton.get("/model/country.country", params={"f": ["code"]}), "countries")
    return int(next(c["id"] for c in found if c["code"] == code))


def create_tryton_party(tryton: httpx.Client, p: Party, country: int) -> int:
    body = {"name": p.name,
            "identifiers": [["create", [{"type": "eu_vat", "code": p.tax_id}]]],
            "addresses": [["create", [{"street": p.street, "postal_code": p.postal_code,
                                       "city": p.city, "country": country}]]],
            "contact_mechanisms": [["create", [{"type": "email", "value": p.email},
                                               {"type": "phone", "value": p.phone}]]]}
    return int(_ok(tryton.post("/model/party.party", json=body), f"party {p.tax_id}")["id"])


def create_tryton_product(tryton: httpx.Client, code: str, name: str, price: str) -> int:
    body = {"name": name, "code": code, "type": "goods", "default_uom": 1, "salable": True,
            "sale_uom": 1, "list_price": price, "products": [["create", [{}]]]}
    made = _ok(tryton.post("/model/product.template", params={"f": ["products.id"]}, json=body),
               f"product {code}")
    return int(made["products"][0]["id"])


def create_crm_account(crm: httpx.Client, p: Party, tax_field: str) -> str:
    body = {"name": p.name, "email": p.email, "phone": p.phone, "address_line": p.street,
            "city": p.city, "postcode": p.postal_code, "country": "BE", "currency": "EUR",
            "custom_fields": {tax_field: p.tax_id}}
    return str(_ok(crm.post("/accounts/", json=body), f"account {p.tax_id}")["id"])


def create_crm_product(crm: httpx.Client, sku: str, name: str, price: str) -> str:
    body = {"name": name, "sku": sku, "price": price, "currency": "EUR"}
    return str(_ok(crm.post("/invoices/products/", json=body), f"product {sku}")["product"]["id"])


def create_crm_deal(crm: httpx.Client, name: str, account: str, stage: str,
                    lines: Sequence[tuple[str, int, str]]) -> str:
    deal = _ok(crm.post("/opportunities/", json={
        "name": name, "account": account, "stage": stage, "amount": "1.00", "currency": "EUR",
        "probability": 100 if stage == "CLOSED_WON" else 20, "closed_on": "2026-12-01"}),
        f"deal {name}")
    for product, quantity, price in lines:
        _ok(crm.post(f"/opportunities/{deal['id']}/line-items/", json={
            "product_id": product, "name": "line", "quantity": str(quantity),
            "unit_price": price}), f"line of deal {name}")
    return str(deal["id"])


def seed_company(tryton: httpx.Client, crm: httpx.Client, *, tax_field: str, run: str,
                 tryton_only: int, crm_only: int, shared: int, products: int,
                 crm_products: int, won_deals: int, open_deals: int = 0,
                 seed: int = 7) -> Seeded:
    """Seed both servers; ``run`` (hex) makes every name, code and tax id unique to this call.
    Shared customers differ a little (the CRM has another phone); shared products are the
    first ``crm_products`` Tryton codes, with another price in the CRM."""
    rng = random.Random(seed)
    out = Seeded(run)
    total = tryton_only + shared + crm_only
    parties = [_party(run, n, rng) for n in range(total)]
    in_tryton = parties[:tryton_only + shared]
    in_crm = parties[tryton_only:]
    out.shared_tax_ids = [p.tax_id for p in parties[tryton_only:tryton_only + shared]]
    country = tryton_country(tryton)
    ids = _parallel(lambda p: create_tryton_party(tryton, p, country), in_tryton)
    out.tryton_parties = {p.tax_id: i for p, i in zip(in_tryton, ids, strict=True)}
    crm_side = [Party(**{**p.__dict__, "phone": p.phone.replace("555", "556")})
                if p.tax_id in out.shared_tax_ids else p for p in in_crm]
    ids_crm = _parallel(lambda p: create_crm_account(crm, p, tax_field), crm_side)
    out.crm_accounts = {p.tax_id: i for p, i in zip(crm_side, ids_crm, strict=True)}

    catalogue = [(f"P{run}-{n:03d}".upper(), f"Product {run} {n:03d}",
                  f"{rng.randint(100, 9999) / 100:.2f}") for n in range(products)]
    pids = _parallel(lambda c: create_tryton_product(tryton, *c), catalogue)
    out.tryton_products = {c[0]: i for c, i in zip(catalogue, pids, strict=True)}
    in_crm_catalogue = [(code, name, f"{float(price) + 1:.2f}")
                        for code, name, price in catalogue[:crm_products]]
    cids = _parallel(lambda c: create_crm_product(crm, *c), in_crm_catalogue)
    out.crm_products = {c[0]: i for c, i in zip(in_crm_catalogue, cids, strict=True)}

    accounts = list(out.crm_accounts.values())
    skus = list(out.crm_products.values())

    chosen = [rng.sample(skus, k=min(len(skus), 1 + n % 3))
              for n in range(won_deals + open_deals)]

    def deal(n: int) -> str:
        stage = "CLOSED_WON" if n < won_deals else "PROSPECTING"
        lines = [(sku, 1 + (n + i) % 4, f"{10 + (n * 7 + i) % 90}.50")
                 for i, sku in enumerate(chosen[n])]
        return create_crm_deal(crm, f"Deal {run}-{n:03d}", accounts[n % len(accounts)],
                               stage, lines)

    made_deals = _parallel(deal, range(won_deals + open_deals))
    out.won_deals, out.open_deals = made_deals[:won_deals], made_deals[won_deals:]
    return out
