"""Checksums for verified transfers: CRC32C (GCS) and MD5 (S3 ETags).

CRC32C is what GCS stores for every object, composite ones included, so it
is the end-to-end check there. Parts of a file are hashed in parallel and
their CRCs combined (``crc32c_combine``), so verifying a large transfer
never needs a second, sequential pass over the file.
"""

from __future__ import annotations

import base64
import hashlib
import struct

try:  # the C extension: several GB/s; google-cloud-storage depends on it
    import google_crc32c as _gcrc

    def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
        """CRC32C of ``data``, continuing from ``crc`` (the CRC of what came before)."""
        return int(_gcrc.extend(crc, bytes(data) if isinstance(data, memoryview) else data))

except ImportError:  # pragma: no cover - only without the gcs extra
    _POLY = 0x82F63B78
    _TABLE = []
    for _n in range(256):
        _c = _n
        for _ in range(8):
            _c = (_c >> 1) ^ _POLY if _c & 1 else _c >> 1
        _TABLE.append(_c)

    def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
        """CRC32C of ``data``, continuing from ``crc`` (the CRC of what came before)."""
        crc ^= 0xFFFFFFFF
        for byte in bytes(data):
            crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
        return crc ^ 0xFFFFFFFF


# -- combining CRCs of consecutive pieces -------------------------------------
#
# A CRC is linear over GF(2): appending n zero bytes to a message maps its
# CRC register through a fixed 32x32 bit matrix (the n-th power of the
# one-zero-bit operator). crc(A + B) = shift(crc(A), len(B)) ^ crc(B), where
# shift applies that matrix; powers come from repeated squaring, so combining
# costs O(log len(B)) matrix products, independent of the data.


def _gf2_times(matrix: list[int], vector: int) -> int:
    out = 0
    i = 0
    while vector:
        if vector & 1:
            out ^= matrix[i]
        vector >>= 1
        i += 1
    return out


def _gf2_square(matrix: list[int]) -> list[int]:
    return [_gf2_times(matrix, row) for row in matrix]


def crc32c_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC32C of A + B from crc1 = CRC32C(A), crc2 = CRC32C(B), len2 = len(B)."""
    if len2 <= 0:
        return crc1
    # Operator for one zero bit: the reflected polynomial, then a shift.
    odd = [0x82F63B78] + [1 << i for i in range(31)]
    even = _gf2_square(odd)  # two zero bits
    odd = _gf2_square(even)  # four zero bits
    while True:
        # Each round squares the operator once more (8, 16, 32... bits) and
        # applies it where len2 (in bytes) has a one bit.
        even = _gf2_square(odd)
        if len2 & 1:
            crc1 = _gf2_times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = _gf2_square(even)
        if len2 & 1:
            crc1 = _gf2_times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return crc1 ^ crc2


def crc32c_b64(value: int) -> str:
    """GCS's encoding: base64 of the big-endian 4-byte value."""
    return base64.b64encode(struct.pack(">I", value)).decode()


def crc32c_from_b64(text: str) -> int:
    return int(struct.unpack(">I", base64.b64decode(text))[0])


def md5_digest(data: bytes | bytearray | memoryview) -> bytes:
    # usedforsecurity=False: an integrity check, allowed on FIPS builds too.
    return hashlib.md5(data, usedforsecurity=False).digest()


def multipart_etag(part_digests: list[bytes]) -> str:
    """The ETag S3 gives a multipart object: MD5 of the parts' MD5s, then -N."""
    joined = hashlib.md5(b"".join(part_digests), usedforsecurity=False).hexdigest()
    return f"{joined}-{len(part_digests)}"
