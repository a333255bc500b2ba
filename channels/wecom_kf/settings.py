"""Settings of the `wecom_kf` channel (微信客服; config/doorstep.yaml `channels.wecom_kf`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from channels.wecom_kf.api import DEFAULT_BASE


class KfAccount(BaseModel):
    """One customer-service account (客服账号) and the community whose knowledge and tickets it serves."""

    model_config = ConfigDict(extra="forbid")

    open_kfid: str
    community: str = ""
    name: str = "微信客服"


class WecomKfSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    corpid: str = ""  # 我的企业 → 企业ID (also the callbacks' ReceiveId)
    secret: str = ""  # 微信客服 → API → Secret
    token: str = ""  # the callback URL's Token and EncodingAESKey
    encoding_aes_key: str = ""
    api_base: str = DEFAULT_BASE
    accounts: list[KfAccount] = Field(default_factory=list)
    poll_seconds: float = Field(0.0, ge=0)  # >0: also pull on this period (a callback lost in transit)

    @property
    def enabled(self) -> bool:
        return bool(self.corpid and self.secret and self.accounts)

    def account(self, open_kfid: str) -> KfAccount | None:
        return next((a for a in self.accounts if a.open_kfid == open_kfid), None)
