"""WeCom's message crypto (WXBizMsgCrypt) for both WeCom channels, on wechatpy's implementation.

The scheme (developer.work.weixin.qq.com/document/path/91144): AESKey = base64(EncodingAESKey + "="), AES-256-CBC
with IV = AESKey[:16], PKCS#7 to 32-byte blocks, plaintext = 16 random bytes + 4-byte network-order length + msg
+ ReceiveId; msg_signature = sha1 of the sorted concatenation of token, timestamp, nonce and the ciphertext.
The ReceiveId is the CorpID for 微信客服 callbacks and "" for an internal AI bot (document/path/101033).

wechatpy does the cipher; the signature is compared here in constant time (wechatpy compares with `!=`), and
every failure is one `CallbackRejected` so the endpoints answer 403 without a traceback.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import string

from wechatpy.enterprise.crypto import PrpCrypto
from wechatpy.utils import WeChatSigner


class CallbackRejected(Exception):
    """A callback whose signature, ciphertext or ReceiveId does not check out."""


def signature(token: str, timestamp: str, nonce: str, encrypted: str) -> str:
    signer = WeChatSigner()
    signer.add_data(token, timestamp, nonce, encrypted)
    return str(signer.signature)


def nonce() -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(16))


class MessageCrypt:
    def __init__(self, token: str, encoding_aes_key: str, receive_id: str) -> None:
        if len(encoding_aes_key) != 43:
            raise ValueError("EncodingAESKey must be the 43 characters the WeCom console shows")
        try:
            self.key = base64.b64decode(encoding_aes_key + "=")
        except binascii.Error as e:
            raise ValueError(f"EncodingAESKey is not valid base64: {e}") from None
        self.token = token
        self.receive_id = receive_id

    def check(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> None:
        expected = signature(self.token, timestamp, nonce, encrypted)
        if not hmac.compare_digest(expected.encode(), (msg_signature or "").encode()):
            raise CallbackRejected("signature mismatch")

    def decrypt(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> str:
        """Checks the signature, then decrypts; the plaintext (XML, JSON or an echostr)."""
        self.check(msg_signature, timestamp, nonce, encrypted)
        try:
            return str(PrpCrypto(self.key).decrypt(encrypted, self.receive_id))
        except Exception as e:  # bad base64, padding, length or ReceiveId: all one rejection
            raise CallbackRejected(f"undecryptable callback ({type(e).__name__})") from None

    def encrypt(self, plaintext: str, timestamp: str, nonce_: str) -> tuple[str, str]:
        """(ciphertext, msg_signature) for a passive reply."""
        encrypted = PrpCrypto(self.key).encrypt(plaintext, self.receive_id)
        text = encrypted.decode() if isinstance(encrypted, bytes) else str(encrypted)
        return text, signature(self.token, timestamp, nonce_, text)
