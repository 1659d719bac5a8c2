"""XML from outside, parsed safely: the one module that imports defusedxml.

TwiML arrives from the configuration, from an application and (in the emulator) from a voice
URL: none of it is trusted, so entity expansion, external entities and DTDs are refused.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import cast

# defusedxml ships no type hints (types-defusedxml is optional): either way works.
import defusedxml  # type: ignore[import-untyped, unused-ignore]
import defusedxml.ElementTree as SafeET  # type: ignore[import-untyped, unused-ignore]

__all__ = ["XMLRefused", "parse_xml"]


class XMLRefused(ValueError):
    """The document is not well-formed XML, or uses what safe parsing refuses (entities,
    DTDs); the message says which."""


def parse_xml(document: str) -> ET.Element:
    """The root element of ``document``; :class:`XMLRefused` if it cannot be read safely."""
    try:
        return cast(ET.Element, SafeET.fromstring(document))
    except ET.ParseError as exc:
        raise XMLRefused(f"is not valid XML: {exc}") from None
    except defusedxml.DefusedXmlException as exc:
        raise XMLRefused(f"refused: {type(exc).__name__}") from None
