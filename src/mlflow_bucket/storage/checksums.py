"""Checksums for verified transfers: CRC32C (GCS), CRC32 (S3 multipart
uploads) and MD5 (S3 ETags).

CRC32C is what GCS stores for every object, composite ones included, so it
is the end-to-end check there. Parts of a file are hashed in parallel and
their CRCs combined (``crc32c_combine``), so verifying a large transfer
never needs a second, sequential pass over the file. S3 multipart uploads
carry a CRC32 per part, which S3 checks, and are verified against S3's
COMPOSITE checksum of the parts (``crc32_composite``).
"""

from __future__ import annotations

import base64
import hashlib
import struct
import zlib
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

# The polynomials of CRC32C and of CRC32 (zlib's), bit-reflected.
_CRC32C_POLY = 0x82F63B78
_CRC32_POLY = 0xEDB88320

try:  # the C extension: several GB/s; google-cloud-storage depends on it
    import google_crc32c as _gcrc

    def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
        """CRC32C of ``data``, continuing from ``crc`` (the CRC of what came before)."""
        return int(_gcrc.extend(crc, bytes(data) if isinstance(data, memoryview) else data))

except ImportError:  # pragma: no cover - only without the gcs extra
    _TABLE = []
    for _n in range(256):
        _c = _n
        for _ in range(8):
            _c = (_c >> 1) ^ _CRC32C_POLY if _c & 1 else _c >> 1
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
# shift applies that matrix; powers come from repeated squaring, so building
# it costs O(log len(B)) matrix products, independent of the data, and it is
# built once per length.


def _gf2_times(matrix: Sequence[int], vector: int) -> int:
    out = 0
    i = 0
    while vector:
        if vector & 1:
            out ^= matrix[i]
        vector >>= 1
        i += 1
    return out


def _gf2_square(matrix: Sequence[int]) -> list[int]:
    return [_gf2_times(matrix, row) for row in matrix]


@lru_cache(maxsize=64)
def _zeros_operator(len2: int, poly: int) -> tuple[int, ...]:
    """The matrix appending ``len2`` zero bytes applies to the register of
    the (reflected) CRC ``poly``.

    Built once per length and cached: a file's parts all have one size but
    the last, so combining N part CRCs costs two operators and N cheap
    matrix-vector products instead of N x log(len2) matrix squarings.
    """
    total = [1 << i for i in range(32)]  # identity
    # Operator for one zero bit: the reflected polynomial, then a shift.
    op = [poly] + [1 << i for i in range(31)]
    for _ in range(3):  # one zero byte: eight zero bits
        op = _gf2_square(op)
    while len2:
        if len2 & 1:
            # Powers of one operator commute: the order of products is free.
            total = [_gf2_times(op, column) for column in total]
        len2 >>= 1
        if len2:
            op = _gf2_square(op)
    return tuple(total)


def crc32c_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC32C of A + B from crc1 = CRC32C(A), crc2 = CRC32C(B), len2 = len(B)."""
    if len2 <= 0:
        return crc1
    return _gf2_times(_zeros_operator(len2, _CRC32C_POLY), crc1) ^ crc2


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC32 (zlib's) of A + B from crc1 = CRC32(A), crc2 = CRC32(B), len2 = len(B)."""
    if len2 <= 0:
        return crc1
    return _gf2_times(_zeros_operator(len2, _CRC32_POLY), crc1) ^ crc2


def crc32c_b64(value: int) -> str:
    """GCS's encoding: base64 of the big-endian 4-byte value."""
    return base64.b64encode(struct.pack(">I", value)).decode()


def crc32c_from_b64(text: str) -> int:
    return int(struct.unpack(">I", base64.b64decode(text))[0])


def md5_digest(data: bytes | bytearray | memoryview) -> bytes:
    # usedforsecurity=False: an integrity check, allowed on FIPS builds too.
    return hashlib.md5(data, usedforsecurity=False).digest()


def md5_hasher() -> Any:
    """An incremental MD5 (``update``, ``digest``), for pieces as they arrive."""
    return hashlib.md5(usedforsecurity=False)


def multipart_etag(part_digests: list[bytes]) -> str:
    """The ETag S3 gives a multipart object: MD5 of the parts' MD5s, then -N."""
    joined = hashlib.md5(b"".join(part_digests), usedforsecurity=False).hexdigest()
    return f"{joined}-{len(part_digests)}"


# -- CRC32 (zlib's): S3's checksum of multipart uploads -----------------------
#
# S3 checks an ``x-amz-checksum-crc32`` header against each part's bytes and
# reports, for an upload created with ``ChecksumAlgorithm=CRC32``, the
# object's COMPOSITE checksum: the CRC32 of the parts' big-endian CRC32s,
# then ``-N``. zlib computes it at several GB/s, releasing the GIL, several
# times faster than MD5.


def crc32(data: bytes | bytearray | memoryview) -> int:
    return zlib.crc32(data)


def crc32_b64(value: int) -> str:
    """S3's encoding: base64 of the big-endian 4-byte value."""
    return base64.b64encode(struct.pack(">I", value)).decode()


def crc32_composite(part_crcs_b64: Sequence[str]) -> str:
    """S3's COMPOSITE CRC32 of a multipart object from its parts' (base64) CRC32s."""
    joined = b"".join(base64.b64decode(c) for c in part_crcs_b64)
    return f"{crc32_b64(zlib.crc32(joined))}-{len(part_crcs_b64)}"


def composite_matches(expected: str, stored: str) -> bool:
    """``expected`` (``crc32_composite``) against what the store reports: S3
    writes the part count after the value (``...==-N``), moto leaves it out."""
    return stored == expected or stored == expected.rsplit("-", 1)[0]
