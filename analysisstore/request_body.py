"""What a request body must be before it is parsed: not compressed, UTF-8 (a BOM is dropped).

Clients that compress their bodies or write UTF-16 would otherwise hear only
"not valid JSON"; these checks name what was sent and what to send instead.
"""
from __future__ import annotations

import codecs

from .errors import BadRequest, UnsupportedMediaType

__all__ = ["check_content_encoding", "utf8_body"]

#: Byte order marks of the encodings JSON must not arrive in; the four-byte ones are tried first.
_WIDE_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
              (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))
#: Leading bytes of compressed data, for a compressed body sent without Content-Encoding.
_COMPRESSED = ((b"\x1f\x8b", "gzip"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"BZh", "bzip2"), (b"PK\x03\x04", "zip"),
               (b"\xfd7zXZ\x00", "xz"))


def check_content_encoding(header: str | None) -> None:
    """Refuse (415) a body with any ``Content-Encoding`` but identity: the service does not decompress."""
    if header is None:
        return
    codings = [coding.strip().lower() for coding in header.split(",") if coding.strip()]
    if any(coding != "identity" for coding in codings):
        raise UnsupportedMediaType(f"request bodies with Content-Encoding {header.strip()[:100]!r} are not "
                                   "accepted; send the body uncompressed (no Content-Encoding)")


def _wide_encoding(body: bytes) -> str | None:
    """UTF-16 or UTF-32 when the body looks like it (a BOM, or JSON's ASCII first character padded with zeros)."""
    for bom, name in _WIDE_BOMS:
        if body.startswith(bom):
            return name
    head = body[:4]
    if len(head) == 4:
        if head[:3] == b"\x00\x00\x00" and head[3] or head[0] and head[1:] == b"\x00\x00\x00":
            return "UTF-32"
        if (head[0] == head[2] == 0 and head[1] and head[3]) or (head[1] == head[3] == 0 and head[0] and head[2]):
            return "UTF-16"
    return None


def utf8_body(body: bytes) -> bytes:
    """``body`` without a UTF-8 BOM; 415 for UTF-16/32, 400 naming the format for a compressed body."""
    if body.startswith(codecs.BOM_UTF8):
        return body[len(codecs.BOM_UTF8):]
    wide = _wide_encoding(body)
    if wide is not None:
        raise UnsupportedMediaType(f"the request body looks like {wide}; JSON bodies must be UTF-8")
    for magic, name in _COMPRESSED:
        if body.startswith(magic):
            raise BadRequest(f"request body is not valid JSON: it looks {name}-compressed; send it uncompressed")
    return body
