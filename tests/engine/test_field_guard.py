"""A typo in a native field path never erases data: it stops every command before anything is
read or written (load time), and a mapped path the system does not send stops that entity
before anything is written for it (run time) while the other entities run."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from etl.errors import ConfigError, UnsentField
from tests.engine.conftest import MAPPINGS, World, make_world


def _mappings_with(tmp_path: Path, file: str, old: str, new: str) -> Path:
    folder = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, folder)
    text = (folder / file).read_text()
    assert old in text
    (folder / file).write_text(text.replace(old, new, 1))
    return folder


def _requests(world: World) -> int:
    return sum(world.crm.requests.counts.values()) + sum(world.erp.requests.counts.values())


def _plan(w: World) -> Any:
    return w.sync(dry_run=True)


def _sync(w: World) -> Any:
    return w.sync()


def _verify(w: World) -> Any:
    return w.ponte().verify(fix=True)


def _backfill(w: World) -> Any:
    return w.ponte().backfill("customers")


@pytest.mark.parametrize("command", [_plan, _sync, _verify, _backfill],
                         ids=["plan", "sync", "verify --fix", "backfill"])
def test_a_typo_stops_every_command_before_anything_is_read_or_written(
        tmp_path: Path, command: Callable[[World], Any]) -> None:
    world = make_world(f"sqlite:///{tmp_path / 'state.db'}", customers=20, products=5, orders=4)
    world.settings.mappings_dir = _mappings_with(tmp_path, "customers.yaml", "path: Email,",
                                                 "path: Emial,")
    with pytest.raises(ConfigError) as exc:
        command(world)
    assert ("customers.yaml: fields.email.crm.path: unknown Ploomes Contacts field 'Emial'; "
            "did you mean 'Email'?") in str(exc.value)
    assert world.write_requests() == 0
    assert _requests(world) == 0  # not even a read: the mappings are checked first
    with world.store() as store:
        assert store.runs() == []


def test_a_path_the_system_does_not_send_stops_only_that_entity(tmp_path: Path) -> None:
    # ``Latitude`` is a declared Ploomes Contacts field (so the mapping loads), but the
    # simulator never sends it: reading it would give None for every contact
    world = make_world(f"sqlite:///{tmp_path / 'state.db'}", customers=20, products=5, orders=4)
    world.settings.mappings_dir = _mappings_with(tmp_path, "customers.yaml", "path: Email,",
                                                 "path: Latitude,")
    report = world.sync()
    assert report.status == "failed"
    assert report.error is not None
    assert ("customers: the crm (Ploomes Contacts) does not send 'Latitude' "
            "(fields.email.crm.path): absent from all") in report.error
    assert "stopped before writing anything" in report.error
    customers = report.entities["customers"]
    assert customers.crm.created + customers.crm.updated == 0
    assert customers.erp.created + customers.erp.updated == 0
    crm_writes = [e for (e, _s) in world.crm.requests.counts
                  if e.split(" ")[0] in ("POST", "PATCH", "DELETE") and "/Contacts" in e]
    erp_writes = [e for (e, _s) in world.erp.requests.counts if e.startswith("geral/clientes/")
                  and not e.rsplit("/", 1)[-1].startswith(("Listar", "Consultar"))]
    assert crm_writes == [] and erp_writes == []
    assert ("GET /Contacts", 200) in world.crm.requests.counts  # read, then stopped
    assert report.entities["products"].crm.created > 0  # the other entities still ran
    assert "orders" in report.entities
    with world.store() as store:
        assert store.watermark("customers", "crm") is None  # nothing checkpointed for it
        assert store.watermark("customers", "erp") is None
        assert store.watermark("products", "erp") is not None


def test_the_shipped_mappings_pass_the_run_time_guard(world: World) -> None:
    first = world.sync()
    assert first.status in ("ok", "partial"), first.error
    assert first.error is None


def test_verify_fix_stops_on_a_path_the_system_does_not_send(tmp_path: Path) -> None:
    world = make_world(f"sqlite:///{tmp_path / 'state.db'}", customers=20, products=5, orders=4)
    world.settings.mappings_dir = _mappings_with(tmp_path, "customers.yaml", "path: Email,",
                                                 "path: Latitude,")
    with pytest.raises(UnsentField, match=r"customers: the crm \(Ploomes Contacts\) does not "
                                          r"send 'Latitude'"):
        _verify(world)
    assert world.write_requests() == 0
