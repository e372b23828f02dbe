"""Telephone numbers as a trunk delivers them, normalised to E.164 (protocol-free).

A German trunk says `030 901820` (national: `0` then the area code), `0049 30 901820`
(international: `00` then the country code) or `+49 30 901820`; all three are `+4930901820`.
Visual separators (space, `-`, `.`, `/`, parentheses) are dropped first. What is neither (an
extension, a short number) is returned as it came: a room alias may well be `4711`.
"""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[\s\-./()]")
MAX_DIGITS = 15  # E.164


def to_e164(number: str, country_code: str = "49", national_prefix: str = "0", international_prefix: str = "00") -> str:
    """`number` in E.164 (`+` and up to 15 digits) when it is a national or international number,
    else (an extension, a service code, anything with letters) as it came, separators removed."""
    text = _SEPARATORS.sub("", number)
    if text.startswith("+"):
        digits = text[1:]
    elif international_prefix and text.startswith(international_prefix):
        digits = text[len(international_prefix) :]
    elif national_prefix and text.startswith(national_prefix) and len(text) > len(national_prefix) + 2:
        digits = country_code + text[len(national_prefix) :]
    else:
        return text
    if not (digits.isascii() and digits.isdigit()) or not 3 <= len(digits) <= MAX_DIGITS or digits[0] == "0":
        return text
    return "+" + digits
