"""The only vendor-specific part of the connector contract suite: one profile per
(connector kind, simulator) pair.

A profile says which entity the suite exercises, how a person would create a record on the
simulator (its ``/_sandbox/`` admin API), which native fields carry the natural key and ponte's
external id, a valid and a rejected create payload, how to build ``Settings`` that point at the
simulator, and which setting names a bad-credentials error must mention. Everything else in the
suite talks to the connector through ``etl.connectors.base.Connector`` only.

To run the suite over a new connector, add a profile to :data:`PROFILES`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
from starlette.applications import Starlette
from stdnum.br import cnpj as br_cnpj

from etl.connectors.base import WriteOp
from etl.sandbox.core import Simulator
from etl.sandbox.omie import OmieSim
from etl.sandbox.omie import create_app as omie_app
from etl.sandbox.ploomes import PloomesSim
from etl.sandbox.ploomes import create_app as ploomes_app
from etl.settings import CrmSettings, ErpSettings, Settings

FAST = 1_000_000  # requests per minute: the suite never waits on a rate limit
def many_cnpjs(n: int) -> list[str]:
    """``n`` distinct valid CNPJs, digits only."""
    bases = (f"{30_000_000 + i:08d}0001" for i in range(n))
    return [base + br_cnpj.calc_check_digits(base) for base in bases]


@dataclass(frozen=True)
class Credentials:
    """The secrets a profile's settings carry; ``values`` are what must never leak."""

    values: dict[str, str]


@dataclass(frozen=True)
class Profile:
    name: str  # pytest id
    side: str  # "crm" / "erp": which connector build_connectors returns for this pair
    entity: str  # the engine entity the suite exercises
    table: str  # the simulator's table behind it (admin API)
    base_url: str  # where the settings point (the in-process app answers any host)
    admin_key: str  # native key field of a record as the admin API renders it
    natural_field: str  # native field find_by matches a natural key (tax id) on
    #: native field carrying ponte's external id after a create; None where the collection has
    #: none (a create is then known by its natural key, which its payload carries)
    external_field: str | None
    rejected_field: str  # the field the rejected payload gets wrong
    credential_settings: tuple[str, ...]  # setting names a credentials error must mention
    make_sim: Callable[[Credentials, int], Simulator]
    make_app: Callable[[Simulator], Starlette]
    make_settings: Callable[[Credentials], Settings]
    credentials: Credentials
    wrong_credentials: Credentials
    ui_record: Callable[[int, str | None], dict[str, Any]]  # (n, natural key value or None)
    natural_values: Callable[[int], list[str]]  # n distinct natural key values, as find_by gets
    create_payload: Callable[[int], dict[str, Any]]
    rejected_payload: Callable[[int], dict[str, Any]]
    is_write: Callable[[httpx.Request], bool]  # a request that changes data
    is_write_endpoint: Callable[[str], bool]  # the same, for the simulator's request log
    edit: Callable[[int], dict[str, Any]]  # a change a user makes to a record (admin PATCH)
    undated: dict[str, Any] | None  # fields rendered verbatim that leave a record undated
    baseline_faults: dict[str, Any] = field(default_factory=dict)
    #: fault knobs under which a rejected write must still be a RecordError naming the field
    rejection_knobs: tuple[dict[str, Any], ...] = ({},)
    #: knobs of a vendor rule that refuses a repeated read for a while (to be waited out)
    throttle_knobs: dict[str, Any] | None = None

    @property
    def identity_field(self) -> str:
        """The stored field that tells whether a create happened once."""
        return self.external_field or self.natural_field

    def identity(self, op: WriteOp) -> str:
        """What a create's record carries in :attr:`identity_field`."""
        if self.external_field:
            return str(op.external_id)
        return str(op.payload[self.natural_field])


# --- Ploomes (CRM) --------------------------------------------------------------------------

PLOOMES_KEY = "contract-ploomes-user-key"


def _ploomes_settings(creds: Credentials) -> Settings:
    return Settings(crm=CrmSettings(base_url="http://ploomes.test",
                                    credentials={"user_key": creds.values["user_key"]},
                                    requests_per_minute=FAST))


def _ploomes_sim(creds: Credentials, seed: int) -> Simulator:
    return PloomesSim(user_key=creds.values["user_key"], rpm=FAST, seed=seed)


def _ploomes_ui(n: int, cnpj: str | None) -> dict[str, Any]:
    record: dict[str, Any] = {"Name": f"Contract {n}", "TypeId": 1}
    if cnpj:
        record["CNPJ"] = br_cnpj.format(cnpj)  # as a person types it; the CRM keeps digits too
    return record


PLOOMES = Profile(
    name="ploomes-sim",
    side="crm",
    entity="customers",
    table="Contacts",
    base_url="http://ploomes.test",
    admin_key="Id",
    natural_field="Register",
    external_field="Key",
    rejected_field="Name",
    credential_settings=("PONTE_CRM__CREDENTIALS__USER_KEY",),
    make_sim=_ploomes_sim,
    make_app=lambda sim: ploomes_app(sim),  # type: ignore[arg-type]
    make_settings=_ploomes_settings,
    credentials=Credentials({"user_key": PLOOMES_KEY}),
    wrong_credentials=Credentials({"user_key": "wrong-ploomes-key-4f1c9e"}),
    ui_record=_ploomes_ui,
    natural_values=many_cnpjs,
    create_payload=lambda n: {"Name": f"Created {n}", "TypeId": 1},
    rejected_payload=lambda n: {"TypeId": 1, "Email": f"no-name-{n}@example.com"},
    is_write=lambda request: request.method != "GET",
    is_write_endpoint=lambda endpoint: endpoint.split(" ", 1)[0] != "GET",
    edit=lambda n: {"Note": f"edited {n}"},
    undated={"LastUpdateDate": "31/02/2026 25:00"},
)


# --- Omie (ERP) -----------------------------------------------------------------------------

OMIE_KEY, OMIE_SECRET = "3000000000003", "contract-omie-app-secret"


def _omie_settings(creds: Credentials) -> Settings:
    return Settings(erp=ErpSettings(base_url="http://omie.test/api/v1",
                                    credentials={"app_key": creds.values["app_key"],
                                                 "app_secret": creds.values["app_secret"]},
                                    requests_per_minute=FAST))


def _omie_sim(creds: Credentials, seed: int) -> Simulator:
    return OmieSim(app_key=creds.values["app_key"], app_secret=creds.values["app_secret"],
                   rpm=FAST, seed=seed)


def _omie_ui(n: int, cnpj: str | None) -> dict[str, Any]:
    record: dict[str, Any] = {"razao_social": f"CONTRACT {n} LTDA", "nome_fantasia": f"C{n}"}
    if cnpj:
        record["cnpj_cpf"] = br_cnpj.format(cnpj)  # Omie stores it punctuated
    return record


def _omie_call(request: httpx.Request) -> str:
    try:
        return str(json.loads(request.content).get("call") or "")
    except (ValueError, AttributeError):
        return ""


def _omie_reads(call: str) -> bool:
    return call.startswith(("Listar", "Consultar", "Status"))


OMIE = Profile(
    name="omie-sim",
    side="erp",
    entity="customers",
    table="clientes",
    base_url="http://omie.test/api/v1",
    admin_key="codigo_cliente_omie",
    natural_field="cnpj_cpf",
    external_field="codigo_cliente_integracao",
    rejected_field="estado",
    credential_settings=("PONTE_ERP__CREDENTIALS__APP_KEY", "PONTE_ERP__CREDENTIALS__APP_SECRET"),
    make_sim=_omie_sim,
    make_app=lambda sim: omie_app(sim),  # type: ignore[arg-type]
    make_settings=_omie_settings,
    credentials=Credentials({"app_key": OMIE_KEY, "app_secret": OMIE_SECRET}),
    wrong_credentials=Credentials({"app_key": OMIE_KEY,
                                   "app_secret": "wrong-omie-secret-7d2a11"}),
    ui_record=_omie_ui,
    natural_values=many_cnpjs,
    create_payload=lambda n: {"razao_social": f"CREATED {n} LTDA", "nome_fantasia": f"N{n}"},
    rejected_payload=lambda n: {"razao_social": f"REJECTED {n} LTDA", "estado": "ZZ"},
    is_write=lambda request: not _omie_reads(_omie_call(request)),
    is_write_endpoint=lambda endpoint: not _omie_reads(endpoint.rsplit("/", 1)[-1]),
    edit=lambda n: {"email": f"edited{n}@example.com"},
    undated={"info": {"dAlt": "31/02/2026", "hAlt": "25:00:00", "dInc": "", "hInc": ""}},
    # Omie sends some write faults with HTTP 200; they are rejections all the same
    rejection_knobs=({}, {"write_faults_http200": True}),
    throttle_knobs={"redundant_rule": True},  # "Aguarde N segundos" for a repeated list call
    # Omie refuses an identical list call within 60 s; the contract is not about that rule
    # (tests/connectors/test_omie_connector.py is), and honouring it would sleep a minute
    baseline_faults={"redundant_rule": False},
)


def _ploomes_product_ui(n: int, code: str | None) -> dict[str, Any]:
    record: dict[str, Any] = {"Name": f"Product {n}", "UnitPrice": 10.0 + n}
    if code:
        record["Code"] = code
    return record


PLOOMES_PRODUCTS = replace(
    PLOOMES,
    name="ploomes-sim-products",
    entity="products",
    table="Products",
    natural_field="Code",
    external_field=None,  # Ploomes products have no Key field
    ui_record=_ploomes_product_ui,
    natural_values=lambda n: [f"PRD-{i:04d}" for i in range(n)],
    create_payload=lambda n: _ploomes_product_ui(n, f"NEW-{n:04d}"),
    rejected_payload=lambda n: {"Code": f"BAD-{n:04d}", "UnitPrice": 1.0},  # no Name
    edit=lambda n: {"Name": f"Product edited {n}"},
)


def _omie_product_ui(n: int, code: str | None) -> dict[str, Any]:
    record: dict[str, Any] = {"descricao": f"PRODUTO CONTRATO {n}", "unidade": "UN",
                              "ncm": "8471.30.12", "valor_unitario": 10.0 + n}
    if code:
        record["codigo"] = code
    return record


OMIE_PRODUCTS = replace(
    OMIE,
    name="omie-sim-products",
    entity="products",
    table="produtos",
    admin_key="codigo_produto",
    natural_field="codigo",
    external_field="codigo_produto_integracao",
    rejected_field="unidade",
    ui_record=_omie_product_ui,
    natural_values=lambda n: [f"PRD-{i:04d}" for i in range(n)],
    create_payload=lambda n: _omie_product_ui(n, f"NEW-{n:04d}"),
    rejected_payload=lambda n: {**_omie_product_ui(n, f"BAD-{n:04d}"),
                                "unidade": "UNIDADES"},  # longer than Omie's 6
    edit=lambda n: {"descricao": f"PRODUTO EDITADO {n}"},
    undated=None,  # the simulator renders no malformed product dates
)

PROFILES = [PLOOMES, PLOOMES_PRODUCTS, OMIE, OMIE_PRODUCTS]
