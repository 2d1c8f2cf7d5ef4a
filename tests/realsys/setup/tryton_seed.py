"""Seed a freshly activated Tryton database offline: currencies, countries, a company, and a
validated REST key for the admin user.

Run by realsys.py inside Tryton's own virtualenv: ``python tryton_seed.py CONFIG DATABASE``.
Prints one JSON object on its last line: ``{"key", "company", "currencies", "countries"}``.
"""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from typing import Any

CURRENCIES = [
    {"name": "Euro", "code": "EUR", "symbol": "€", "rounding": Decimal("0.01"), "digits": 2},
    {"name": "US Dollar", "code": "USD", "symbol": "$", "rounding": Decimal("0.01"), "digits": 2},
]
COUNTRIES = [
    {"name": "Belgium", "code": "BE"},
    {"name": "Germany", "code": "DE"},
    {"name": "France", "code": "FR"},
    {"name": "United States", "code": "US"},
]
COMPANY_NAME = "My Company"


def seed(config_path: str, database: str) -> dict[str, Any]:
    from trytond import config  # type: ignore[import-not-found]

    config.update_etc(config_path)
    from trytond.pool import Pool  # type: ignore[import-not-found]
    from trytond.transaction import Transaction  # type: ignore[import-not-found]

    Pool.start()
    pool = Pool(database)
    pool.init()
    with Transaction().start(database, 0):
        currency_model = pool.get("currency.currency")
        country_model = pool.get("country.country")
        party_model = pool.get("party.party")
        company_model = pool.get("company.company")
        user_model = pool.get("res.user")
        application_model = pool.get("res.user.application")

        euro, _ = currency_model.create(CURRENCIES)
        country_model.create(COUNTRIES)
        party, = party_model.create([{"name": COMPANY_NAME}])
        company, = company_model.create([{"party": party.id, "currency": euro.id}])
        admin, = user_model.search([("login", "=", "admin")])
        user_model.write([admin], {"companies": [("add", [company.id])], "company": company.id})
        application, = application_model.create([{"user": admin.id, "application": "rest"}])
        if application.state != "validated":
            application_model.validate_([application])
        return {"key": application.key, "company": company.id,
                "currencies": [c["code"] for c in CURRENCIES],
                "countries": [c["code"] for c in COUNTRIES]}


if __name__ == "__main__":
    print(json.dumps(seed(sys.argv[1], sys.argv[2])))
