"""The simulators' own parser of plain ``$filter`` texts (comparisons of a field with a literal,
``and``/``or``, parentheses) must build exactly the tree the ``odata-query`` package builds, and
leave every other text to the package: the evaluation, the indexes and the error messages all
work on that tree."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from odata_query.exceptions import ODataException
from odata_query.grammar import ODataLexer, ODataParser

from etl.connectors.hooks.ploomes import document_clause
from etl.sandbox.odata import FilterError, parse_filter
from etl.sandbox.odata.filter import _plain_tree

# names the package reads as fields, and names it reads otherwise (keywords, literals' prefixes)
PLAIN_NAMES = ["Id", "CNPJ", "Register", "UpdaterId", "Order", "Origin", "android", "_x", "A1"]
TRICKY_NAMES = ["nullable", "trueish", "falsey", "anything", "allow", "notes", "and", "or",
                "eq", "in", "geographyX", "durationY", "NULL"]
OPS = ["eq", "ne", "gt", "ge", "lt", "le"]


def package_tree(text: str) -> Any:
    """The package's tree, or the exception type it raised."""
    try:
        return ODataParser().parse(ODataLexer().tokenize(text))
    except ODataException as exc:
        return type(exc)


def quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


LITERALS = st.one_of(
    st.integers(min_value=0, max_value=10**14).map(str),
    st.just("null"),
    st.text(alphabet="ab '()-./0 andor", max_size=12).map(quoted),
)


@st.composite
def plain_filters(draw: st.DrawFn, names: list[str], depth: int = 3) -> str:
    """A plain filter text, parenthesized and spaced in the ways the grammar allows."""
    if depth == 0 or draw(st.booleans()):
        text = f"{draw(st.sampled_from(names))} {draw(st.sampled_from(OPS))} {draw(LITERALS)}"
    else:
        parts = draw(st.lists(plain_filters(names, depth - 1), min_size=2, max_size=4))
        joins = draw(st.lists(st.sampled_from([" and ", " or ", "  or\t", " and  "]),
                              min_size=len(parts) - 1, max_size=len(parts) - 1))
        text = parts[0] + "".join(j + p for j, p in zip(joins, parts[1:], strict=True))
    if draw(st.integers(0, 3)) == 0:
        pad = draw(st.sampled_from(["", " ", "  "]))
        text = f"({pad}{text}{pad})"
    return text


@settings(max_examples=400, deadline=None)
@given(text=plain_filters(PLAIN_NAMES))
@example(text="Id gt 0 and (Register eq 'a' or CNPJ eq '1.2/3-4' or CPF eq null)")
@example(text="a eq 1 or b eq 2 and c eq 3 or d eq 4")
def test_a_plain_filter_is_parsed_here_into_the_packages_very_tree(text: str) -> None:
    tree = _plain_tree(text)
    assert tree is not None, text
    assert tree == package_tree(text)


@settings(max_examples=300, deadline=None)
@given(text=plain_filters(PLAIN_NAMES + TRICKY_NAMES, depth=2))
def test_with_names_the_package_reads_otherwise_either_tree_is_the_packages(text: str) -> None:
    tree = _plain_tree(text)
    if tree is not None:
        assert tree == package_tree(text), text


@settings(max_examples=600, deadline=None)
@given(text=st.text(alphabet="Idab eqnortl0129'() -:.T", max_size=40))
@example(text="Id eq 1 )")
@example(text="(Id eq 1")
@example(text=" Id eq 1")
@example(text="Id eq 1 and")
@example(text="(Id eq 1)and(Id eq 2)")
@example(text="Id eq 1'x'")
@example(text="Id eq 2026-01-01")
@example(text="Id eq 12:30")
@example(text="Id eq -1")
def test_any_other_text_is_the_packages_to_parse_or_refuse(text: str) -> None:
    tree = _plain_tree(text)
    if tree is not None:  # never a tree where the package has another one, or an error
        assert tree == package_tree(text), text


def test_a_natural_key_search_of_ten_documents_is_a_plain_filter() -> None:
    """What ponte sends Ploomes before creates: fifty comparisons on the keyset clause."""
    docs = [f"{n:014d}" for n in range(12345678000190, 12345678000200)] + ["123.456.789-09"]
    text = "Id gt 0 and (" + " or ".join(document_clause("Register", d) for d in docs) + ")"
    tree = _plain_tree(text)
    assert tree is not None
    assert tree == package_tree(text)
    flt = parse_filter(text)
    assert flt.matches({"Id": 5, "Register": None, "CNPJ": "12.345.678/0001-95", "CPF": None})
    assert not flt.matches({"Id": 5, "Register": "1", "CNPJ": "1", "CPF": "1"})


def test_what_the_package_refuses_is_still_a_filter_error_naming_the_text() -> None:
    with pytest.raises(FilterError, match=r"invalid \$filter 'Id eq 1 \)'"):
        parse_filter("Id eq 1 )")
