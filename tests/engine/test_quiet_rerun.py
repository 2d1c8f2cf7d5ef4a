"""Quiet runs stay quiet after a big write: where a system records who last changed a record
(Ploomes ``UpdaterId``), an incremental run's listing leaves out the records ponte itself
changed last, so the lookback re-reads people's edits only; a person's edit made after ponte's
write is read and synced as before; a system that cannot tell (Omie) re-reads as before."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl.sandbox.ploomes.schema import INTEGRATION_USER_ID
from tests.engine.conftest import World, make_world


def contact_pages(w: World) -> int:
    return sum(n for (endpoint, _s), n in w.crm.requests.counts.items()
               if endpoint == "GET /Contacts")


@pytest.fixture
def pushed(tmp_path: Path) -> World:
    """A first sync that writes a few hundred customers into each side."""
    w = make_world(f"sqlite:///{tmp_path / 'state.db'}", customers=500)
    report = w.sync("customers")
    assert report.status == "ok", report.as_dict()
    c = report.entities["customers"]
    assert c.crm.created + c.crm.updated > 300 and c.erp.created > 100, report.as_dict()
    return w


def test_a_quiet_rerun_after_a_big_write_reads_one_page_of_ploomes(pushed: World) -> None:
    w = pushed
    own = sum(r.data.get("UpdaterId") == INTEGRATION_USER_ID for r in w.crm.db["Contacts"])
    assert own > 300  # ponte's writes, more than one page, inside the rerun's window
    before = contact_pages(w)
    report = w.sync("customers")
    assert report.status == "ok", report.as_dict()
    c = report.entities["customers"]
    assert contact_pages(w) - before <= 1
    assert c.crm.read == 0
    assert report.writes == 0
    # Omie cannot tell ponte's writes from another app's (uAlt is "WEBSERVICE" for every API
    # write): its window is re-read as before, and the snapshot diff finds nothing
    assert c.erp.read >= 100 and c.erp.unchanged == c.erp.read
    # records left out of a listing are not taken as gone: verify reads everything
    checked = w.ponte().verify(["customers"])
    assert checked.drift == 0, checked


def test_a_person_edit_after_ponte_write_is_synced(pushed: World) -> None:
    w = pushed
    written = next(r for r in w.crm.db["Contacts"]
                   if r.data.get("UpdaterId") == INTEGRATION_USER_ID
                   and r.data.get("TypeId") == 1 and r.data.get("Email"))
    link = {crm: erp for crm, erp in w.store().links("customers")}
    erp_key = link[str(written.id)]
    w.tick()
    w.crm.ui_update("Contacts", written.id, {"Email": "pessoa.editou@exemplo.com.br"})
    report = w.sync("customers")
    assert report.status == "ok", report.as_dict()
    assert report.entities["customers"].crm.read == 1
    assert w.erp.db["clientes"].get(int(erp_key)).data["email"] == "pessoa.editou@exemplo.com.br"
    # the person stays its last updater: the lookback reads it again, and it diffs unchanged
    quiet = w.sync("customers")
    assert quiet.entities["customers"].crm.read == quiet.entities["customers"].crm.unchanged == 1
    assert quiet.writes == 0


def test_a_person_edit_that_ponte_write_covers_is_not_lost(pushed: World) -> None:
    """A person changes a contact's name just after this run's signpost (the run's listing
    does not see it), then the run writes the contact's e-mail from Omie: ponte is now its last
    updater, so no later listing names it; the write's answer shows the name it did not write
    changed, and the run reads the contact again."""
    w = pushed
    links = dict(w.store().links("customers"))
    crm_key = next(k for k, r in ((str(r.id), r) for r in w.crm.db["Contacts"])
                   if k in links and r.data.get("TypeId") == 1)
    erp_key = links[crm_key]
    w.tick()
    w.erp.ui_update("clientes", int(erp_key), {"email": "novo.erp@exemplo.com.br"})
    w.crm.clock.advance(30)  # the person's edit lands after the run's signpost
    w.crm.ui_update("Contacts", int(crm_key), {"Name": "Nome Que A Pessoa Deu"})
    report = w.sync("customers")
    assert report.status == "ok", report.as_dict()
    contact = w.crm.db["Contacts"].get(int(crm_key))
    assert contact.data["Email"] == "novo.erp@exemplo.com.br"
    assert contact.data["UpdaterId"] == INTEGRATION_USER_ID  # ponte wrote last
    assert w.erp.db["clientes"].get(int(erp_key)).data["nome_fantasia"] == "Nome Que A Pessoa Deu"


def test_a_run_without_a_stored_watermark_reads_ponte_own_writes_too(pushed: World) -> None:
    """After ``watermark reset`` (as on a first run) the state may not hold what an earlier
    ponte wrote: everything is listed, ponte's own last changes included."""
    w = pushed
    w.ponte().reset_watermark("customers", side="crm")
    report = w.sync("customers")
    assert report.status == "ok", report.as_dict()
    c = report.entities["customers"]
    assert c.crm.read == len(w.crm.db["Contacts"]) and c.crm.unchanged == c.crm.read
    assert report.writes == 0
