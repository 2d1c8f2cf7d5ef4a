"""Alembic environment of the state store.

Always run through :meth:`etl.state.store.Store.upgrade`, which hands over an open connection in
``config.attributes["connection"]`` (inside the transaction that serializes concurrent upgrades).
No logging configuration and no URL here: both belong to the caller.
"""

from __future__ import annotations

from alembic import context

from etl.state.models import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("the state migrations run through etl.state.store.Store.upgrade(), "
                       "which passes an open connection")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                  compare_type=True)
with context.begin_transaction():
    context.run_migrations()
