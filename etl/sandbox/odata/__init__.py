"""OData v4 query options evaluated over Python records, for the Ploomes simulator.

``$filter`` text is parsed by the ``odata-query`` package (its lexer/parser produce an AST); this
module evaluates that AST against a mapping per record, so the simulator filters in memory the
way the vendor's SQL would. ``$orderby``, ``$select`` and ``$expand`` are small enough to parse
here.

Semantics worth knowing:

* Datetimes compare as instants at millisecond precision: record values and literals are both
  truncated to the millisecond. A literal without an offset is read as Brasília time.
* A string compared with a datetime literal is parsed as ISO 8601 (Ploomes ``Date`` fields).
* Comparisons with ``null`` are false except ``eq null`` / ``ne null``; string functions on
  ``null`` are false.
* Comparing values of different types (a string field with a number) is an error, as it is on
  the server (400).
"""

from __future__ import annotations

from etl.sandbox.odata.filter import Filter, FilterError, Path, parse_filter, to_instant
from etl.sandbox.odata.options import (
    OrderKey,
    nulls_first,
    parse_expand,
    parse_orderby,
    parse_select,
    sort_records,
)

__all__ = ["Filter", "FilterError", "OrderKey", "Path", "nulls_first", "parse_expand",
           "parse_filter", "parse_orderby", "parse_select", "sort_records", "to_instant"]
