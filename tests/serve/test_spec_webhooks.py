"""The ``webhooks:`` section of a connector spec: the shipped ones load, a wrong one is refused
with the path and the valid choices, and a side whose secret is not set is reported."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from etl.connectors.spec_webhooks import WebhookSpec
from etl.mapping import load_mappings
from etl.serve.receiver import endpoints, unconfigured
from etl.settings import Settings
from tests.engine.conftest import MAPPINGS

OMIE_LIKE: dict[str, Any] = {
    "path": "erp", "auth": {"body_path": "appKey", "compare_with": "credentials.app_key"},
    "event_id": "messageId", "topic": "topic", "record": "event",
    "topics": {"X.Alterado": {"collection": "clientes", "action": "update"}},
    "keys": {"clientes": "codigo"},
}


def test_the_shipped_specs_describe_their_webhooks() -> None:
    s = Settings(mappings_dir=MAPPINGS)
    crm, erp = s.crm.spec.webhooks, s.erp.spec.webhooks
    assert crm is not None and crm.registration is not None
    assert crm.registered_actions("Contacts") == ["Create", "Update", "Delete"]
    assert erp is not None and erp.registration is None and erp.manual
    assert erp.keys == {"clientes": "codigo_cliente_omie", "produtos": "codigo_produto",
                        "pedidos": "idPedido"}


@pytest.mark.parametrize(("change", "message"), [
    ({"auth": {"compare_with": "webhook_key"}}, "name where the secret is"),
    ({"auth": {"body_path": "k", "compare_with": "password"}}, "credentials.<name>"),
    ({"topic": None}, "collection_param and the action"),
    ({"topics": {"X.Alterado": {"collection": "outra", "action": "update"}}},
     "has no key path"),
    ({"topics": {"X.Alterado": {"collection": "clientes", "action": "upsert"}}}, "upsert"),
])
def test_a_wrong_section_is_refused_saying_what_is_wrong(change: dict[str, Any],
                                                         message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        WebhookSpec.model_validate({**OMIE_LIKE, **change})


def test_a_side_without_its_secret_is_reported_at_start(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    monkeypatch.delenv("PONTE_CRM__WEBHOOK_KEY", raising=False)
    s = Settings(mappings_dir=MAPPINGS)
    found = endpoints(s, load_mappings(MAPPINGS))
    assert found["ploomes"].entities == {"Contacts": "customers", "Orders": "orders",
                                         "Products": "products"}
    problems = unconfigured(s, found)
    assert problems == [("/webhooks/ploomes: PONTE_CRM__WEBHOOK_KEY is not set; every call "
                         "to it is refused (403)")]
