"""Reference lists kept between commands (:class:`etl.engine.references.RunReferences`).

The last copy of each list a run read, with when: a command started within the time a system
refuses an identical read (Omie: 60 s) takes the copy instead of waiting for the list.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import sqlalchemy as sa

from etl.state import models as m
from etl.state.db import StoreBase


class ReferenceListStore(StoreBase):
    """The kept copies of reference lists, by side and name."""

    def kept_reference(self, side: str, name: str, *, since: datetime
                       ) -> tuple[dict[str, str], datetime] | None:
        """The copy of ``side``'s list ``name`` and when it was read, if that was at ``since``
        or later; None if older or never read."""
        t = m.reference_lists
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.c.rows, t.c.read_at).where(
                t.c.side == side, t.c.name == name, t.c.read_at >= since)).first()
        if row is None:
            return None
        return {str(k): str(v) for k, v in row.rows.items()}, row.read_at

    def keep_reference(self, side: str, name: str, rows: Mapping[str, str], *,
                       read_at: datetime) -> None:
        """Keep ``rows`` as the copy of ``side``'s list ``name`` as read at ``read_at``."""
        t = m.reference_lists
        stmt = self._insert(t)
        stmt = stmt.on_conflict_do_update(index_elements=[t.c.side, t.c.name],
                                          set_={"rows": stmt.excluded.rows,
                                                "read_at": stmt.excluded.read_at})
        with self._writer.begin() as conn:
            conn.execute(stmt, [{"side": side, "name": name, "rows": dict(rows),
                                 "read_at": read_at}])
