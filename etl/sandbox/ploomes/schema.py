"""What the simulated Ploomes account holds: native fields per table and their types, the
writable and required fields, the fixed lookup lists, the navigation properties, the users."""

from __future__ import annotations

from typing import Any

from etl.sandbox.ploomes.custom import FIELD_TYPES, FIELDS, OPTIONS

MAX_TOP = 300  # largest page served; larger $top is silently capped [U]
DEFAULT_TOP = 300  # page size when $top is omitted [U]

S, I, N, B, L, D = "string", "integer", "number", "boolean", "list", "datetime"

#: Native fields per table and their types (reference A6).
SCHEMA: dict[str, dict[str, str]] = {
    "Contacts": {
        "TypeId": I, "Name": S, "LegalName": S, "Register": S, "CNPJ": S, "CPF": S,
        "IdentityDocument": S, "Email": S, "Website": S, "Phones": L, "StreetAddress": S,
        "StreetAddressNumber": S, "StreetAddressLine2": S, "Neighborhood": S, "ZipCode": I,
        "ForeignZipCode": S, "CityId": I, "StateId": I, "CountryId": I, "CompanyId": I,
        "OwnerId": I, "StatusId": I, "OriginId": I, "LineOfBusinessId": I, "CNAECode": S,
        "CNAEName": S, "Note": S, "Birthday": S, "Key": S, "Tags": L, "OtherProperties": L,
    },
    "Products": {
        "Name": S, "Code": S, "MeasurementUnit": S, "UnitPrice": N, "CurrencyId": I,
        "FamilyId": I, "GroupId": I, "ImageUrl": S, "Suspended": B, "OtherProperties": L,
    },
    "Deals": {
        "Title": S, "ContactId": I, "ContactName": S, "PersonId": I, "PipelineId": I,
        "StageId": I, "StatusId": I, "Amount": N, "CurrencyId": I, "OwnerId": I,
        "StartDate": D, "FinishDate": D, "DealNumber": S, "OtherProperties": L,
    },
    "Orders": {
        "OrderNumber": I, "Date": D, "ContactId": I, "ContactName": S, "PersonId": I,
        "DealId": I, "StageId": I, "Amount": N, "Discount": N, "OwnerId": I, "TemplateId": I,
        "Description": S, "Key": S, "OriginQuoteId": I, "Products": L, "OtherProperties": L,
    },
    "Users": {"Name": S, "Email": S},
    # the account's tags (marcadores) [U]; EntityId 1 = contacts; records carry [{TagId}]
    "Tags": {"Name": S, "EntityId": I, "Color": S},
    "Cities": {"Name": S, "IBGECode": I, "StateId": I, "CountryId": I},
    "States": {"Name": S, "Short": S, "CountryId": I},
    # registered webhooks (reference A9; ``etl.sandbox.ploomes.hooks``)
    "Webhooks": {"EntityId": I, "SecondaryEntityId": I, "ActionId": I, "Name": S,
                 "CallbackUrl": S, "ValidationKey": S, "CreatorId": I, "Active": B,
                 "UserWebhook": B},
}
#: The tables whose records carry ``CreatorId``/``UpdaterId`` (who created and last changed them).
AUDITED = {"Contacts", "Products", "Deals", "Orders"}
for _table in AUDITED:
    SCHEMA[_table].update({"CreatorId": I, "UpdaterId": I})
WRITABLE = {"Contacts", "Products", "Deals", "Orders", "Tags"}
REQUIRED = {"Contacts": ("Name",), "Products": ("Name",), "Deals": ("Title",),
            "Orders": ("ContactId",), "Tags": ("Name",)}
# who created and last changed a record (reference A3): set by the simulator, never written
READ_ONLY = {"Id", "CreateDate", "LastUpdateDate", "CreatorId", "UpdaterId"}


#: The webhook action ids (``/Webhooks@Actions``; 1 and 3 unconfirmed [U]).
WEBHOOK_ACTIONS: list[dict[str, Any]] = [
    {"Id": 1, "Name": "Create"}, {"Id": 2, "Name": "Update"}, {"Id": 3, "Name": "Delete"},
    {"Id": 4, "Name": "Win"}, {"Id": 5, "Name": "Lose"}]

#: Small fixed lookup lists served as collections.
LOOKUPS: dict[str, list[dict[str, Any]]] = {
    "Contacts@Status": [{"Id": 1, "Name": "Ativo"}, {"Id": 2, "Name": "Inativo"}],
    "Contacts@Types": [{"Id": 1, "Name": "Empresa"}, {"Id": 2, "Name": "Pessoa"}],
    "Orders@Stages": [
        {"Id": 1, "Name": "Em aberto", "Ordination": 1},
        {"Id": 2, "Name": "Aprovada", "Ordination": 2},
        {"Id": 3, "Name": "Faturada", "Ordination": 3},
        {"Id": 4, "Name": "Cancelada", "Ordination": 4},
    ],
    "Deals@Status": [{"Id": 1, "Name": "Em aberto"}, {"Id": 2, "Name": "Ganho"},
                     {"Id": 3, "Name": "Perdido"}],
    # field metadata (reference A2): standard fields (Dynamic false) and the account's custom
    # fields (Dynamic true), whose values records carry in OtherProperties by FieldKey
    "Fields": FIELDS,
    "Fields@Types": FIELD_TYPES,
    "Fields@OptionsTables@Options": OPTIONS,
    "Webhooks@Actions": WEBHOOK_ACTIONS,
}

#: Contact fields that carry one document, and which of CNPJ / CPF goes with each TypeId [U].
DOCUMENT_FIELDS = ("Register", "CNPJ", "CPF")
DOCUMENT_BY_TYPE: dict[object, str] = {1: "CNPJ", 2: "CPF"}  # looked up by any TypeId

_PERSON = ("Id", "Name", "Email")
#: Navigation properties: name -> (foreign key field, target table or lookup, fields shown).
NAV: dict[str, dict[str, tuple[str, str, tuple[str, ...] | None]]] = {
    "Contacts": {
        "City": ("CityId", "Cities", ("Id", "Name", "IBGECode", "StateId")),
        "State": ("StateId", "States", ("Id", "Name", "Short")),
        "Owner": ("OwnerId", "Users", _PERSON),
        "Status": ("StatusId", "Contacts@Status", None),
        "Type": ("TypeId", "Contacts@Types", None),
        "Company": ("CompanyId", "Contacts", ("Id", "Name", "LegalName", "Register")),
    },
    "Orders": {
        "Contact": ("ContactId", "Contacts", ("Id", "Name", "LegalName", "Register")),
        "Owner": ("OwnerId", "Users", _PERSON),
        "Stage": ("StageId", "Orders@Stages", None),
        "Deal": ("DealId", "Deals", ("Id", "Title")),
    },
    "Deals": {
        "Contact": ("ContactId", "Contacts", ("Id", "Name", "LegalName", "Register")),
        "Owner": ("OwnerId", "Users", _PERSON),
        "Status": ("StatusId", "Deals@Status", None),
    },
    "Products": {},
    "Users": {},
    "Tags": {},
    "Cities": {"State": ("StateId", "States", ("Id", "Name", "Short"))},
    "States": {},
    "Webhooks": {},
}
ALIASES = {"Cities@Countries@States": "States"}

USERS = [
    {"Name": "Ana Souza", "Email": "ana.souza@example.com.br"},
    {"Name": "Integração ponte", "Email": "integracao@example.com.br"},
]
INTEGRATION_USER_ID = 2  # the user the sandbox's User-Key belongs to (``/Self``)
PERSON_USER_ID = 1  # who makes the admin API's edits (a person in the UI), and seeded records
