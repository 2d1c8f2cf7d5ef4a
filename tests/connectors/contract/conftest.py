"""Fixtures of the connector contract suite: ``pair`` is parametrised over every profile in
``contract_profiles.PROFILES``; :data:`contract_harness.FINDINGS` become strict xfails."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from contract_harness import FINDINGS, Pair, SimTransport
from contract_profiles import PROFILES, Profile
from starlette.testclient import TestClient

#: The simulators' fault dice: with this seed the first request a fault rate applies to fails,
#: the second passes, and no more than 3 in a row fail at a rate of 0.3 (retries always win).
SIM_SEED = 43


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or "pair" not in callspec.params:
            continue
        name = getattr(item, "originalname", item.name)
        reason = FINDINGS.get((name, callspec.params["pair"].name))
        if reason:
            item.add_marker(pytest.mark.xfail(strict=True, reason=reason))


@pytest.fixture(params=PROFILES, ids=[p.name for p in PROFILES])
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    profile: Profile = request.param
    sim = profile.make_sim(profile.credentials, SIM_SEED)
    app = profile.make_app(sim)
    result = Pair(profile, TestClient(app, base_url="http://sandbox-admin.test"),
                  SimTransport(app, profile))
    if profile.baseline_faults:
        result.faults(**profile.baseline_faults)
    try:
        yield result
    finally:
        result.close()
