"""Small real images for tests (an issuer's logo), made here rather than shipped."""

from __future__ import annotations

import struct
import zlib


def png(width: int = 24, height: int = 12, rgb: tuple[int, int, int] = (200, 30, 40)) -> bytes:
    """A valid PNG of one colour: signature, IHDR, one IDAT, IEND, each with its CRC."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    row = b"\x00" + bytes(rgb) * width  # filter type 0, then the pixels
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )
