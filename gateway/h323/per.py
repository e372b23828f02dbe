"""Aligned PER (X.691) for H.225.0 and H.245, by pycrate, with its one encoder bug corrected.

pycrate 0.8 writes the extension additions of a SEQUENCE (each an open type) before it writes the
bitmap that announces them, and decides their padding from the bit offset *before* that bitmap: when
the root components end off an octet boundary, every first addition gets a spurious pad (a
ReleaseComplete with a reason and a callIdentifier comes out `18 a8 00 00 11 ...` instead of
`18 a8 00 11 ...`, which pycrate itself, Wireshark and every endpoint then read wrongly). After the
bitmap the encoding is always realigned to an octet, and each addition is whole octets, so an
addition never needs a pad of its own: `_open_type` below leaves it out for exactly that caller and
pads as before everywhere else (open types in a root, which do follow the offset).

`encode` and `decode` are the only entry points; they raise PerError for anything pycrate refuses.
"""

from __future__ import annotations

import sys
from typing import Any

from pycrate_asn1rt.asnobj_construct import _CONSTRUCT
from pycrate_asn1rt.codecs import ASN1CodecPER


class PerError(ValueError):
    """A value that cannot be encoded, or octets that do not decode, as the type says."""


_original_open_type = ASN1CodecPER.encode_unconst_open.__func__
_EXTENSIONS_OF = _CONSTRUCT._to_per.__code__


def _open_type(cls: Any, wrapped: Any) -> Any:
    if cls.ALIGNED and sys._getframe(1).f_code is _EXTENSIONS_OF:
        offset = cls._off[-1]
        cls._off[-1] = 0  # (aligned by the bitmap's realignment, which follows in the output)
        try:
            return _original_open_type(cls, wrapped)
        finally:
            cls._off[-1] += offset
    return _original_open_type(cls, wrapped)


ASN1CodecPER.encode_unconst_open = classmethod(_open_type)


def encode(asn1_type: Any, value: Any) -> bytes:
    """`value` (pycrate's form: dict for SEQUENCE, (name, value) for CHOICE) in aligned PER."""
    try:
        asn1_type.set_val(value)
        return bytes(asn1_type.to_aper())
    except Exception as exc:  # pycrate raises its own error classes and builtins alike
        raise PerError(f"{asn1_type._name} does not encode: {exc}") from None


def decode(asn1_type: Any, data: bytes) -> Any:
    """The value of `data` (aligned PER) as `asn1_type`."""
    try:
        asn1_type.from_aper(data)
        return asn1_type.get_val()
    except Exception as exc:
        raise PerError(f"{asn1_type._name} does not decode: {type(exc).__name__}") from None
