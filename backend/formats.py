"""GeoReport v2 representations: the same documents as JSON or XML, and the spec's error list."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal
from xml.etree import ElementTree as ET

from fastapi.responses import JSONResponse, Response

Format = Literal["json", "xml"]

# XML element names: the root and the element each item of a list is wrapped in
ROOTS = {
    "services": ("services", "service"),
    "requests": ("service_requests", "request"),
    "errors": ("errors", "error"),
    "subscriptions": ("subscriptions", "subscription"),
}


def w3c(dt: datetime | None, *, precise: bool = False) -> str | None:
    """W3C date-time with offset, as the spec shows: 2010-04-14T06:37:38+00:00. `precise` keeps microseconds
    (2010-04-14T06:37:38.123456+00:00, still W3C): for updated_datetime, which clients order updates by, and two
    updates (a creation and a staff closing it) can fall within one second."""
    if dt is None:
        return None
    return dt.isoformat(timespec="microseconds" if precise else "seconds")


# Characters XML 1.0 does not allow even escaped (C0 controls but tab, LF, CR; lone surrogates; U+FFFE/FFFF).
# A report's text may hold them (pasted from anywhere); ElementTree would write them as they are and the
# document would not be well-formed, so they are dropped from text.
XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(value: str) -> str:
    return XML_ILLEGAL.sub("", value)


def _xml_value(parent: ET.Element, key: str, value: Any) -> None:
    el = ET.SubElement(parent, key)
    if value is None:
        return
    if isinstance(value, bool):
        el.text = "true" if value else "false"
    elif isinstance(value, dict):
        for k, v in value.items():
            _xml_value(el, k, v)
    elif isinstance(value, list):
        item = key[:-1] if key.endswith("s") else "item"
        for v in value:
            _xml_value(el, item, v)
    else:
        el.text = xml_text(str(value))


def to_xml(kind: str, items: Sequence[dict[str, Any]] | dict[str, Any]) -> bytes:
    if isinstance(items, dict):  # a single document (service_definition)
        root = ET.Element(kind)
        for k, v in items.items():
            _xml_value(root, k, v)
    else:
        root_name, item_name = ROOTS[kind]
        root = ET.Element(root_name)
        for it in items:
            el = ET.SubElement(root, item_name)
            for k, v in it.items():
                _xml_value(el, k, v)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="utf-8")


def render(
    fmt: str, kind: str, items: Sequence[dict[str, Any]] | dict[str, Any], status: int = 200
) -> Response:
    if fmt == "xml":
        return Response(to_xml(kind, items), status_code=status, media_type="text/xml; charset=utf-8")
    return JSONResponse(items, status_code=status)


def error_response(fmt: str, status: int, description: str | list[str]) -> Response:
    """The spec's error list: [{"code": 400, "description": "..."}] or <errors><error>...</error></errors>."""
    descriptions = [description] if isinstance(description, str) else description
    return render(fmt, "errors", [{"code": status, "description": d} for d in descriptions], status)
