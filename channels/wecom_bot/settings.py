"""Settings of the `wecom_bot` channel (config/doorstep.yaml `channels.wecom_bot`; the contract's environment
variables DOORSTEP_WECOM_BOT_ID, DOORSTEP_WECOM_BOT_SECRET and DOORSTEP_WECOM_WS_URL override them)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from channels.wecom_bot.protocol import DEFAULT_URL


class WecomBotSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["long_connection", "callback"] = "long_connection"
    bot_id: str = ""  # 智能机器人 → API 模式 → Bot ID
    secret: str = ""  # long connection: the bot's Secret
    ws_url: str = DEFAULT_URL
    callback_token: str = ""  # callback mode: the URL's Token and EncodingAESKey
    callback_aes_key: str = ""
    names: list[str] = Field(default_factory=lambda: ["家门口助手"])  # @names stripped from what staff write

    @property
    def enabled(self) -> bool:
        if self.mode == "callback":
            return bool(self.callback_token and self.callback_aes_key)
        return bool(self.bot_id and self.secret)
