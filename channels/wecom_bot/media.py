"""Pictures a staff member sends the AI bot in a 1:1 chat: a URL to encrypted bytes and the picture's own
`aeskey` (AES-256-CBC, IV = the key's first 16 bytes, PKCS#7 padding to 32-byte blocks: document/path/101463,
"多媒体资源解密", and the SDKs' `decrypt_file`). Downloads are bounded; a picture that cannot be had is skipped."""

from __future__ import annotations

import base64
import binascii

import httpx
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

MAX_MEDIA_BYTES = 20 * 1024 * 1024


class MediaError(Exception):
    pass


def decrypt_media(data: bytes, aeskey: str) -> bytes:
    try:
        key = base64.b64decode(aeskey + "=" * (-len(aeskey) % 4))
    except binascii.Error as e:
        raise MediaError(f"bad aeskey: {e}") from None
    if len(key) != 32 or not data or len(data) % 16:
        raise MediaError("not an AES-256-CBC payload")
    plain = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    out = plain.update(data) + plain.finalize()
    pad = out[-1]
    if not 1 <= pad <= 32 or out[-pad:] != bytes([pad]) * pad:
        raise MediaError("bad padding (wrong aeskey?)")
    return out[:-pad]


async def fetch_media(client: httpx.AsyncClient, url: str, aeskey: str) -> bytes:
    try:
        async with client.stream("GET", url) as r:
            r.raise_for_status()
            chunks: list[bytes] = []
            size = 0
            async for chunk in r.aiter_bytes():
                size += len(chunk)
                if size > MAX_MEDIA_BYTES:
                    raise MediaError(f"picture larger than {MAX_MEDIA_BYTES} bytes")
                chunks.append(chunk)
    except httpx.HTTPError as e:
        raise MediaError(f"download failed: {e}") from None
    data = b"".join(chunks)
    return decrypt_media(data, aeskey) if aeskey else data
