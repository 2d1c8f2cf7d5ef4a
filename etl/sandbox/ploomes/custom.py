"""Custom fields of the simulated account: the field list ``/Fields`` serves, and the values
records carry in ``OtherProperties`` (reference A2, A5, A6).

* Each custom field (``Dynamic: true``) has ``Id``, ``Key`` (``contact_<GUID>``), ``Name`` (its
  label), ``EntityId`` (1 Contacts, 4 Orders, 10 Products) and ``TypeId``. Its value lives in
  one item of the record's ``OtherProperties``, in the property its type names
  (:data:`VALUE_BY_TYPE`). The type ids are those of ``/Fields@Types`` as a third-party client
  lists them [U]; the sandbox serves that list too.
* A write's ``OtherProperties`` items name a field by ``FieldKey`` (or ``FieldId``); a field of
  another entity, or a value in another property than its type's, is a 400 naming the key
  [U: the vendor's answer is not documented]. Option fields take ``ObjectValueId``, one of the
  field's options; records show its ``ObjectValueName`` too.
* A PATCH's ``OtherProperties`` changes only the fields it names: the record's other custom
  fields keep their values; an item whose value is null clears that field [U: the common
  reading of the vendor's partial update; no source shows a PATCH replacing the whole list].
"""

from __future__ import annotations

import copy
from typing import Any

from etl.sandbox.core import BRT
from etl.sandbox.odata import FilterError, to_instant

#: The value property of each field type id (``/Fields@Types``) [U].
VALUE_BY_TYPE: dict[int, str] = {1: "StringValue", 2: "BigStringValue", 3: "DateTimeValue",
                                 4: "IntegerValue", 5: "DecimalValue", 6: "DecimalValue",
                                 7: "ObjectValueId", 12: "BoolValue"}
FIELD_TYPES: list[dict[str, Any]] = [
    {"Id": 1, "Name": "Texto", "NativeType": "String"},
    {"Id": 2, "Name": "Multilinha", "NativeType": "BigString"},
    {"Id": 3, "Name": "Data", "NativeType": "DateTime"},
    {"Id": 4, "Name": "Inteiro", "NativeType": "Integer"},
    {"Id": 5, "Name": "Moeda", "NativeType": "Decimal"},
    {"Id": 6, "Name": "Decimal", "NativeType": "Decimal"},
    {"Id": 7, "Name": "Lista", "NativeType": "Object"},
    {"Id": 12, "Name": "Booleano", "NativeType": "Boolean"},
]
#: The system entity id of each table's custom fields (reference A2).
ENTITY_OF = {"Contacts": 1, "Deals": 2, "Orders": 4, "Products": 10}
VALUE_PROPERTIES = ("StringValue", "BigStringValue", "IntegerValue", "DecimalValue",
                    "DateTimeValue", "BoolValue", "ObjectValueId", "UserValueId",
                    "ContactValueId", "ProductValueId")
_SHOWN = ("ObjectValueName",)  # rendered, never written


def _field(fid: int, entity: int, name: str, guid: str, type_id: int,
           **extra: Any) -> dict[str, Any]:
    prefix = {1: "contact", 2: "deal", 4: "order", 10: "product"}[entity]
    return {"Id": fid, "EntityId": entity, "Name": name, "Key": f"{prefix}_{guid}",
            "TypeId": type_id, "Dynamic": True, **extra}


#: Standard fields (``Dynamic: false``) and the account's custom fields.
FIELDS: list[dict[str, Any]] = [
    {"Id": 1, "EntityId": 1, "Name": "Nome", "Key": "contact_name", "TypeId": 1,
     "Dynamic": False},
    {"Id": 2, "EntityId": 1, "Name": "E-mail", "Key": "contact_email", "TypeId": 1,
     "Dynamic": False},
    _field(101, 1, "Código no ERP", "5E1A0C7B-3D2F-4A8B-9C61-2F7D0B9E4A13", 1),
    _field(102, 1, "Segmento", "9F0D4B61-7A2E-4C35-8E1B-6D3A5C2F7E90", 1),
    _field(103, 1, "Limite de crédito", "0B6E2D48-91C3-4F7A-B5E2-7C1D9A3F6B04", 6),
    _field(104, 1, "Desconto especial (%)", "3A9F5C12-6E84-4B1D-A7C3-2F8E0D5B9A61", 6),
    _field(105, 1, "Volume de vendas 12m", "7D2C8E5A-0F93-4A6B-8C1E-5B3F9D7A2E48", 6),
    _field(106, 1, "Última compra", "C41E7B90-2D5A-4F3C-9E86-1A0B7D4C8F25", 3),
    _field(107, 1, "Observações internas", "E5B3A7D1-8C24-4E9F-B061-3D7A2C9E5F18", 2),
    _field(108, 1, "Número de filiais", "1F8D4C6B-A3E7-4B25-9D0C-6E2A8F5B3D79", 4),
    _field(109, 1, "Cliente VIP", "6C0A9E3F-5B71-4D8E-A2F4-9B1C7E3D0A56", 12),
    _field(110, 1, "Porte", "A8E1F6C3-4B9D-4A72-8E5C-0D3B6F9A1C27", 7, OptionsTableId=1),
    _field(111, 1, "Pedidos faturados 12m", "4D6B2F80-9E1C-4A53-B7D8-0C5E3A9F1B62", 4),
    _field(201, 4, "Pedido do cliente", "2C7E9A14-5B6D-4F08-A3E2-8D1C4B7F6A25", 1),
]
#: Options of the option fields (``/Fields@OptionsTables@Options``).
OPTIONS: list[dict[str, Any]] = [
    {"Id": 1001, "Name": "Pequeno", "TableId": 1},
    {"Id": 1002, "Name": "Médio", "TableId": 1},
    {"Id": 1003, "Name": "Grande", "TableId": 1},
]


class CustomValueError(ValueError):
    """A write's ``OtherProperties`` item the account refuses."""


def _custom(table: str, item: dict[str, Any]) -> dict[str, Any]:
    entity = ENTITY_OF.get(table)
    key, fid = item.get("FieldKey"), item.get("FieldId")
    for f in FIELDS:
        if f["Dynamic"] and f["EntityId"] == entity and (f["Key"] == key or f["Id"] == fid):
            return f
    raise CustomValueError(f"{table}: OtherProperties field '{key or fid}' does not exist")


def _coerce(table: str, field: dict[str, Any], prop: str, value: Any) -> Any:
    if value is None:
        return None
    bad = CustomValueError(f"{table}: field '{field['Key']}' ({prop}) cannot take {value!r}")
    if prop in ("StringValue", "BigStringValue"):
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise bad
        return str(value)
    if prop in ("IntegerValue", "ObjectValueId"):
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            raise bad
        if prop == "ObjectValueId" and not any(
                o["Id"] == value and o["TableId"] == field.get("OptionsTableId") for o in OPTIONS):
            raise CustomValueError(f"{table}: field '{field['Key']}' has no option {value!r}")
        return int(value)
    if prop == "DecimalValue":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad
        return value
    if prop == "BoolValue":
        if not isinstance(value, bool):
            raise bad
        return value
    try:  # DateTimeValue
        return to_instant(value).astimezone(BRT).isoformat(timespec="seconds")
    except (FilterError, TypeError):
        raise bad from None


def check_items(table: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``OtherProperties`` items of a write, checked: ``{FieldKey, FieldId, <property>:
    value}`` each (a null value clears the field)."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        field = _custom(table, item)
        prop = VALUE_BY_TYPE[field["TypeId"]]
        given = {k: v for k, v in item.items() if k in VALUE_PROPERTIES and v is not None}
        other = sorted(set(given) - {prop})
        if other:
            raise CustomValueError(f"{table}: field '{field['Key']}' ({field['Name']}) takes "
                                   f"{prop}, not {other[0]}")
        out[field["Key"]] = {"FieldKey": field["Key"], "FieldId": field["Id"],
                             prop: _coerce(table, field, prop, item.get(prop))}
    return list(out.values())


def merge(current: list[dict[str, Any]] | None, written: list[dict[str, Any]]
          ) -> list[dict[str, Any]]:
    """The record's custom values after a write of ``written``: the fields named change (a
    null value clears one), the others keep theirs."""
    by_key = {x["FieldKey"]: copy.deepcopy(x) for x in current or [] if x.get("FieldKey")}
    for item in written:
        values = [v for k, v in item.items() if k in VALUE_PROPERTIES]
        if all(v is None for v in values):
            by_key.pop(item["FieldKey"], None)
        else:
            by_key[item["FieldKey"]] = copy.deepcopy(item)
    return list(by_key.values())


def render(table: str, rid: int, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``OtherProperties`` as records show them: every value property (null but the field's),
    ``Id``, the owner's id and, for option fields, ``ObjectValueName``."""
    owner = {"Contacts": "ContactId", "Deals": "DealId", "Orders": "OrderId",
             "Products": "ProductId"}.get(table)
    out = []
    for item in items:
        shown: dict[str, Any] = {"Id": rid * 1000 + int(item.get("FieldId") or 0),
                                 "FieldId": item.get("FieldId"), "FieldKey": item.get("FieldKey")}
        if owner:
            shown[owner] = rid
        shown.update(dict.fromkeys((*VALUE_PROPERTIES, *_SHOWN)))
        shown.update({k: v for k, v in item.items() if k not in ("FieldId", "FieldKey")})
        if shown.get("ObjectValueId") is not None:
            shown["ObjectValueName"] = next((o["Name"] for o in OPTIONS
                                             if o["Id"] == shown["ObjectValueId"]), None)
        out.append(shown)
    return out
