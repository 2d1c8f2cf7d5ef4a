"""Alerts: each condition is announced once when it starts and once when it clears, to a real
SMTP server and a webhook receiver on loopback; delivery failures are retried, never fatal,
and never leak a secret. State comes from real runs against the simulators where cheap, else
from rows written through the Store API."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from etl.alerts import AlertOutcome, evaluate_alerts
from etl.settings import Settings
from etl.state import Checkpoint, QuarantineEntry, Store
from etl.state import models as m
from tests.alerts.conftest import (
    HOOK_TOKEN,
    SMTP_PASSWORD,
    SMTP_USER,
    Receiver,
    SmtpServer,
    with_alerts,
)
from tests.engine.conftest import World

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def evaluate(settings: Settings, now: datetime = T0) -> AlertOutcome:
    return evaluate_alerts(settings, now)


def conditions(settings: Settings) -> dict[str, bool]:
    with Store.open(settings.state_url) as store:
        return {r.condition: r.active for r in store.alerts()}


def record_run(settings: Settings, kind: str, entity: str, status: str, at: datetime,
               report: dict[str, object] | None = None) -> str:
    with Store.open(settings.state_url) as store:
        run = store.start_run(kind, [entity], now=at)
        store.finish_run(run, status, report or {"error": "Omie answered HTTP 500"}, now=at)
    return run


def test_a_failed_run_alerts_once_and_the_next_ok_run_clears_it(
        world: World, hook: Receiver, smtp: SmtpServer, logs: list[str]) -> None:
    world.settings = with_alerts(world.settings, webhook_url=hook.url, smtp_url=smtp.url,
                                 email_from="ponte@example.com",
                                 email_to="ops@example.com, oncall@example.com",
                                 quarantine_threshold=10_000)
    with world.store() as store:  # a watermark in the future: every run of customers fails
        store.set_watermark("customers", "crm", world.now() + timedelta(hours=2),
                            now=world.now())
    assert world.sync("customers").status == "failed"
    assert len(hook.bodies) == 1 and len(smtp.box.messages) == 1
    text = hook.texts()[0]
    assert text.startswith("[ponte] 1 alert started") and "STARTED run_failed:customers" in text
    assert "ponte runs show" in text and "watermark" in text  # what failed, what to run
    mail = smtp.box.messages[0]
    assert mail["Subject"] == "[ponte] 1 alert started"
    assert mail["To"] == "ops@example.com, oncall@example.com"
    assert mail["From"] == "ponte@example.com"
    assert "run_failed:customers" in mail.get_payload()
    assert smtp.box.logins == [(SMTP_USER, True)]

    for _ in range(2):  # still failing: nothing new
        assert world.sync("customers").status == "failed"
    assert len(hook.bodies) == 1 and len(smtp.box.messages) == 1

    with world.store() as store:
        store.set_watermark("customers", "crm", None, now=world.now())
    assert world.sync("customers").status in ("ok", "partial")
    assert len(hook.bodies) == 2 and len(smtp.box.messages) == 2
    assert hook.texts()[1].startswith("[ponte] 1 cleared")
    assert "CLEARED run_failed:customers" in hook.texts()[1]
    assert smtp.box.messages[1]["Subject"] == "[ponte] 1 cleared"
    assert conditions(world.settings) == {"run_failed:customers": False}
    world.sync("customers")
    assert len(hook.bodies) == 2  # cleared stays cleared
    for secret in (SMTP_PASSWORD, HOOK_TOKEN):
        assert not any(secret in line for line in logs)
        assert not any(secret in t for t in hook.texts())
        assert not any(secret in msg.as_string() for msg in smtp.box.messages)


def test_a_stopped_run_neither_starts_nor_clears(empty_world: World, hook: Receiver) -> None:
    s = with_alerts(empty_world.settings, webhook_url=hook.url)
    record_run(s, "sync", "products", "aborted", T0)
    record_run(s, "sync", "products", "stopped", T0 + timedelta(minutes=1))
    evaluate(s, T0 + timedelta(minutes=2))
    assert conditions(s) == {"run_failed:products": True}
    record_run(s, "event", "products", "partial", T0 + timedelta(minutes=3))
    evaluate(s, T0 + timedelta(minutes=4))
    assert conditions(s) == {"run_failed:products": False}
    assert [t.split("\n")[0] for t in hook.texts()] == ["[ponte] 1 alert started",
                                                        "[ponte] 1 cleared"]


def quarantine(store: Store, entity: str, keys: list[str]) -> None:
    store.checkpoint(Checkpoint(entity, quarantine=[
        QuarantineEntry(entity, "crm", k, "invalid", "CNPJ fails its check digits")
        for k in keys]), now=T0)


def test_quarantine_over_the_threshold_starts_and_clears(empty_world: World,
                                                         hook: Receiver) -> None:
    s = with_alerts(empty_world.settings, webhook_url=hook.url, quarantine_threshold=3)
    with Store.open(s.state_url) as store:
        quarantine(store, "customers", ["1", "2", "3"])
    assert evaluate(s).transitions == []  # 3 is not over 3
    with Store.open(s.state_url) as store:
        quarantine(store, "orders", ["9"])
    assert [t.condition for t in evaluate(s).transitions] == ["quarantine"]
    text = hook.texts()[0]
    assert "4 records wait in quarantine" in text and "customers 3, orders 1" in text
    assert "ponte quarantine list" in text
    with Store.open(s.state_url) as store:
        quarantine(store, "orders", ["10"])  # still over: the detail follows, no message
    evaluate(s, T0 + timedelta(minutes=1))
    assert len(hook.bodies) == 1
    with Store.open(s.state_url) as store:
        assert "customers 3, orders 2" in store.alerts()[0].detail
        for row in store.quarantine()[:2]:
            store.quarantine_drop(row.id)
    evaluate(s, T0 + timedelta(minutes=2))
    assert len(hook.bodies) == 2 and "CLEARED quarantine" in hook.texts()[1]


def test_drift_found_by_a_real_verify_then_cleared_by_a_clean_one(world: World,
                                                                  hook: Receiver) -> None:
    world.settings = with_alerts(world.settings, webhook_url=hook.url)
    report = world.ponte().verify(["customers"])  # nothing synced yet: every record drifts
    assert report.drift > 0
    assert conditions(world.settings) == {"drift:customers": True}
    text = hook.texts()[0]
    assert "STARTED drift:customers" in text and "ponte verify customers --fix" in text
    # a verify --fix that repaired everything it found: no drift left
    record_run(world.settings, "verify-fix", "customers", "ok", world.now(),
               {"drift": 4, "entities": {"customers": {"drift": 4, "mismatched": 4,
                                                       "fixed": 4}}})
    evaluate(world.settings, world.now())
    assert conditions(world.settings) == {"drift:customers": False}
    assert "CLEARED drift:customers" in hook.texts()[1]


def test_lag_of_a_side_watermark(empty_world: World, hook: Receiver) -> None:
    s = with_alerts(empty_world.settings, webhook_url=hook.url, lag_threshold_s=3600)
    with Store.open(s.state_url) as store:
        store.set_watermark("products", "erp", T0 - timedelta(minutes=59), now=T0)
    assert evaluate(s).transitions == []
    with Store.open(s.state_url) as store:
        store.set_watermark("products", "erp", T0 - timedelta(hours=2, minutes=5), now=T0)
    assert [t.condition for t in evaluate(s).transitions] == ["lag:products:erp"]
    assert "the erp watermark of products is 2h 5m old (threshold 1h)" in hook.texts()[0]
    with Store.open(s.state_url) as store:
        store.set_watermark("products", "erp", T0, now=T0)
    assert [(t.condition, t.started) for t in evaluate(s).transitions] == [
        ("lag:products:erp", False)]
    off = with_alerts(empty_world.settings, lag_threshold_s=0)  # 0: never
    with Store.open(s.state_url) as store:
        store.set_watermark("products", "erp", T0 - timedelta(days=9), now=T0)
    assert evaluate(off).transitions == []


def add_event(settings: Settings, event_id: str, received: datetime,
              status: str = "pending") -> None:
    with Store.open(settings.state_url) as store, store.engine.begin() as conn:
        conn.execute(sa.insert(m.events).values(
            side="crm", event_id=event_id, collection="Contacts", entity="customers", key="7",
            action="update", status=status, attempts=0, received_at=received,
            due_at=received))


def test_backlog_of_webhook_events_that_stalled(empty_world: World, hook: Receiver) -> None:
    s = with_alerts(empty_world.settings, webhook_url=hook.url, backlog_stall_s=300)
    add_event(s, "old-but-done", T0 - timedelta(hours=1), status="done")
    add_event(s, "fresh", T0 - timedelta(seconds=60))
    assert evaluate(s).transitions == []
    add_event(s, "stalled", T0 - timedelta(minutes=10))
    assert [t.condition for t in evaluate(s).transitions] == ["backlog"]
    assert "1 webhook event(s) received more than 5m ago" in hook.texts()[0]
    assert "ponte serve" in hook.texts()[0]
    with Store.open(s.state_url) as store, store.engine.begin() as conn:
        conn.execute(sa.update(m.events).values(status="done"))
    evaluate(s, T0 + timedelta(seconds=5))
    assert "CLEARED backlog" in hook.texts()[1]


def test_smtp_down_is_a_warning_retried_at_the_next_evaluation(
        empty_world: World, smtp: SmtpServer, logs: list[str]) -> None:
    s = with_alerts(empty_world.settings, smtp_url=smtp.url, email_to="ops@example.com")
    record_run(s, "sync", "customers", "failed", T0)
    smtp.stop()
    outcome = evaluate(s)
    assert [t.condition for t in outcome.transitions] == ["run_failed:customers"]
    assert outcome.announced == [] and [r.condition for r in outcome.pending] == [
        "run_failed:customers"]
    assert not outcome.channels[0].ok
    warnings = [ln for ln in logs if ln.startswith("WARNING alert message not sent")]
    assert len(warnings) == 1 and f"e-mail (127.0.0.1:{smtp.port})" in warnings[0]
    assert "Connection refused" in warnings[0] or "ConnectionRefused" in warnings[0]
    with Store.open(s.state_url) as store:
        assert store.alerts()[0].notified_at is None  # to be sent again

    smtp.start()
    outcome = evaluate(s, T0 + timedelta(minutes=1))
    assert outcome.transitions == [] and [r.condition for r in outcome.announced] == [
        "run_failed:customers"]
    assert len(smtp.box.messages) == 1
    assert smtp.box.messages[0]["Subject"] == "[ponte] 1 alert started"
    evaluate(s, T0 + timedelta(minutes=2))
    assert len(smtp.box.messages) == 1
    assert not any(SMTP_PASSWORD in ln for ln in logs)


def test_one_channel_failing_is_enough_for_neither_a_crash_nor_a_resend(
        empty_world: World, hook: Receiver, smtp: SmtpServer, logs: list[str]) -> None:
    hook.status = 500
    s = with_alerts(empty_world.settings, webhook_url=hook.url, smtp_url=smtp.url,
                    email_to="ops@example.com")
    record_run(s, "sync", "orders", "failed", T0)
    outcome = evaluate(s)
    assert [(r.ok, r.error) for r in outcome.channels] == [
        (False, "ValueError: the webhook answered HTTP 500"), (True, None)]
    assert [r.condition for r in outcome.announced] == ["run_failed:orders"]
    assert any(f"not sent by webhook (127.0.0.1:{hook.port})" in ln for ln in logs)
    evaluate(s, T0 + timedelta(minutes=1))
    assert len(hook.bodies) == 1 and len(smtp.box.messages) == 1  # not sent again
    assert not any(HOOK_TOKEN in ln or SMTP_PASSWORD in ln for ln in logs)


def test_a_wrong_smtp_password_is_a_warning_without_the_password(
        empty_world: World, smtp: SmtpServer, logs: list[str]) -> None:
    wrong = smtp.url.replace(SMTP_PASSWORD, "not-the-Pa55word")
    s = with_alerts(empty_world.settings, smtp_url=wrong, email_to="ops@example.com")
    record_run(s, "sync", "orders", "failed", T0)
    outcome = evaluate(s)
    assert outcome.pending and "SMTPAuthenticationError" in (outcome.channels[0].error or "")
    assert smtp.box.logins and all(not ok for _, ok in smtp.box.logins)  # PLAIN, then LOGIN
    assert smtp.box.messages == []
    assert not any("not-the-Pa55word" in ln for ln in logs)


def test_without_a_channel_conditions_are_stored_and_nothing_is_sent(
        empty_world: World) -> None:
    s = empty_world.settings
    record_run(s, "sync", "customers", "failed", T0)
    outcome = evaluate(s)
    assert [t.condition for t in outcome.transitions] == ["run_failed:customers"]
    assert outcome.channels == [] and outcome.announced == []
    with Store.open(s.state_url) as store:
        assert store.alerts()[0].active and store.alerts()[0].notified_at is None


def test_two_evaluations_at_once_announce_a_transition_once(empty_world: World,
                                                            hook: Receiver) -> None:
    s = with_alerts(empty_world.settings, webhook_url=hook.url)
    record_run(s, "sync", "customers", "failed", T0)
    record_run(s, "sync", "products", "failed", T0)
    barrier = threading.Barrier(4)
    outcomes: list[AlertOutcome] = []

    def go() -> None:
        barrier.wait()
        outcomes.append(evaluate(s))

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(t.condition for o in outcomes for t in o.transitions) == [
        "run_failed:customers", "run_failed:products"]
    texts = "\n".join(hook.texts())
    assert texts.count("STARTED run_failed:customers") == 1
    assert texts.count("STARTED run_failed:products") == 1


def test_the_store_claims_each_transition_once(empty_world: World) -> None:
    with Store.open(empty_world.settings.state_url) as store:
        assert [t.started for t in store.apply_conditions({"backlog": "x"}, now=T0)] == [True]
        assert store.apply_conditions({"backlog": "y"}, now=T0) == []
        first = store.claim_announcements(now=T0)
        assert [r.condition for r in first] == ["backlog"]
        assert store.claim_announcements(now=T0) == []
        store.release_announcements(first)
        assert [r.detail for r in store.claim_announcements(now=T0)] == ["y"]
        assert [t.started for t in store.apply_conditions({}, now=T0)] == [False]
        assert store.apply_conditions({}, now=T0) == []
        # started, never announced, cleared: it clears silently
        store.apply_conditions({"quarantine": "z"}, now=T0)
        store.apply_conditions({}, now=T0 + timedelta(seconds=1))
        assert [r.condition for r in store.claim_announcements(now=T0)] == ["backlog"]
