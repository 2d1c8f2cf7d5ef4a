"""Seed a fresh BottleCRM database: an admin user, an org, its profile, an account custom field
for the tax id, and a personal access token.

Run by realsys.py inside BottleCRM's own virtualenv with ``DJANGO_SETTINGS_MODULE`` set. There
is no password login in BottleCRM (Google OAuth or an e-mailed code), so the seed goes through
the ORM. Prints one JSON object on its last line: ``{"token", "org", "user", "tax_id_field"}``
(the raw token is shown once; BottleCRM stores only its SHA-256).
"""

from __future__ import annotations

import json
from typing import Any

import django  # type: ignore[import-not-found]

ADMIN_EMAIL = "admin@example.com"
ORG_NAME = "Ponte Test Org"
TAX_ID_FIELD = "tax_id"


def seed() -> dict[str, Any]:
    django.setup()
    from common.models import (  # type: ignore[import-not-found]
        CustomFieldDefinition,
        Org,
        PersonalAccessToken,
        Profile,
        User,
    )

    user = User.objects.create(email=ADMIN_EMAIL, is_staff=True, is_superuser=True)
    org = Org.objects.create(name=ORG_NAME, default_currency="EUR")
    profile = Profile.objects.create(user=user, org=org, role="ADMIN",
                                     is_organization_admin=True, has_sales_access=True)
    CustomFieldDefinition.objects.create(org=org, target_model="Account", key=TAX_ID_FIELD,
                                         label="Tax ID", field_type="text", is_filterable=True)
    raw, _ = PersonalAccessToken.generate(profile, "ponte-realsys")
    return {"token": raw, "org": str(org.id), "user": ADMIN_EMAIL, "tax_id_field": TAX_ID_FIELD}


if __name__ == "__main__":
    print(json.dumps(seed()))
