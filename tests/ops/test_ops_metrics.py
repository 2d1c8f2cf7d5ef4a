"""The Prometheus textfile: rebuilt from the state store, atomic, per entity, no secrets."""

from __future__ import annotations

import re
from pathlib import Path

from etl.metrics import Sample, render, write_metrics
from tests.engine.conftest import World

NAMES = ["customers", "products", "orders"]
LINE = re.compile(r'^([a-z_]+)(\{[^}]*\})? (-?[0-9.e+]+)$')


def parse(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = LINE.match(line)
        assert m, f"not exposition format: {line!r}"
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def test_metrics_after_runs_of_different_entities(world: World, tmp_path: Path) -> None:
    world.sync("customers")
    report = world.sync("products")
    path = tmp_path / "textfile" / "ponte.prom"
    with world.store() as store:
        write_metrics(path, store, NAMES, now=world.now())
    text = path.read_text()
    m = parse(text)
    # both entities keep their series, though the last run only covered products
    assert m['ponte_last_run_status{connection="",entity="customers",status="ok"}'] == 1
    assert m['ponte_last_run_status{connection="",entity="customers",status="failed"}'] == 0
    assert m['ponte_last_run_status{connection="",entity="products",status="ok"}'] == 1
    assert m['ponte_records_total{connection="",entity="products",side="erp",kind="read"}'] == \
        report.entities["products"].erp.read
    assert m['ponte_watermark_lag_seconds{connection="",entity="customers",side="crm"}'] >= 0
    assert m['ponte_api_calls_total{connection="",side="erp",kind="read"}'] == report.api_calls["erp"]["read"]
    assert m['ponte_run_duration_seconds{connection="",entity="customers"}'] > 0
    assert m['ponte_last_run_timestamp_seconds{connection="",entity="products"}'] > 1.6e9
    assert 'entity="orders"' not in text.split("ponte_quarantine_records")[0]  # never ran
    for secret in world.settings.secrets():
        assert secret not in text
    assert [p.name for p in path.parent.iterdir()] == ["ponte.prom"]  # temp file replaced


def test_render_escapes_labels() -> None:
    text = render([Sample("ponte_x", {"entity": 'a"b\\c'}, 1.5)])
    assert 'ponte_x{connection="",entity="a\\"b\\\\c"} 1.5' in text and "# TYPE ponte_x gauge" in text


def test_stopped_and_aborted_runs_have_their_own_status_and_a_running_one_is_not_counted(
        world: World, tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    t0 = datetime.now(UTC) - timedelta(minutes=5)
    path = tmp_path / "ponte.prom"
    with world.store() as store:
        for i, (entity, status) in enumerate([("customers", "stopped"), ("products", "aborted")]):
            run = store.start_run("sync", [entity], now=t0 + timedelta(seconds=i))
            store.finish_run(run, status, {"error": status}, now=t0 + timedelta(seconds=i + 1))
        store.start_run("sync", ["customers", "products"], now=t0 + timedelta(seconds=10))
        write_metrics(path, store, NAMES, now=t0 + timedelta(seconds=20))
    m = parse(path.read_text())
    assert m['ponte_last_run_status{connection="",entity="customers",status="stopped"}'] == 1
    assert m['ponte_last_run_status{connection="",entity="customers",status="failed"}'] == 0
    assert m['ponte_last_run_status{connection="",entity="products",status="aborted"}'] == 1
    assert m['ponte_last_run_status{connection="",entity="products",status="stopped"}'] == 0
