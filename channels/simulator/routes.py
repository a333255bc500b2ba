"""HTTP routes of the simulator channel (CONTRACT.md, "The simulator channel")."""

from __future__ import annotations

import base64
import binascii
import io
import logging
import warnings
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, Field, model_validator

from channels.simulator.channel import SimulatorChannel
from core.message import Location

log = logging.getLogger(__name__)
PAGE = Path(__file__).with_name("page.html")
MAX_TEXT = 200_000  # beyond this the request itself is refused; the router refuses long texts politely
MAX_IMAGE_BYTES = 10 * 1024 * 1024
# A small file can claim a huge picture (a PNG header saying 30000x30000 decodes to 2.7 GB): the size in the
# header is checked before anything is decoded. 50 megapixels is more than any phone camera takes.
MAX_IMAGE_PIXELS = 50_000_000


class SimLocation(BaseModel):
    """Coordinates only when the person picked them: a made-up default would make every report look like it
    came from one spot (and merge reports of different places)."""

    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    address: str = Field("", max_length=500)

    @model_validator(mode="after")
    def _coordinates_or_a_name(self) -> SimLocation:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("a location needs both lat and lon, or neither")
        if self.lat is None and not self.address.strip():
            raise ValueError("a location needs coordinates or an address")
        return self


class SimPost(BaseModel):
    group: str = Field(min_length=1, max_length=128)
    sender: str = Field(min_length=1, max_length=128)
    sender_name: str = Field("", max_length=128)
    text: str = Field("", max_length=MAX_TEXT)
    mentions_bot: bool = False
    image_base64: str | None = None
    location: SimLocation | None = None
    private: bool = False
    # a quoted reply (引用): the text of the message replied to, as WeChat carries it beside the reply
    quoted: str = Field("", max_length=4000)

    @model_validator(mode="after")
    def _something_to_say(self) -> SimPost:
        if not self.text.strip() and not self.image_base64 and self.location is None:
            raise ValueError("a message needs text, an image or a location")
        return self


def _error(status: int, english: str, chinese: str) -> HTTPException:
    return HTTPException(status_code=status, detail={"error": english, "message": chinese})


def decode_image(data: str) -> tuple[bytes, str]:
    """Base64 (optionally a data: URL) -> bytes and MIME type; anything that is not a real image is refused."""
    if data.startswith("data:"):
        data = data.partition(",")[2]
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _error(422, "image_base64 is not valid base64", "图片数据无法读取，请重新选择图片。") from None
    if len(raw) > MAX_IMAGE_BYTES:
        raise _error(
            413,
            f"image is larger than {MAX_IMAGE_BYTES // 1024 // 1024} MB",
            "图片太大了，请发送10MB以内的图片。",
        )
    too_big = _error(
        413,
        f"image is larger than {MAX_IMAGE_PIXELS // 1_000_000} megapixels",
        "图片尺寸太大了，请发送普通的手机照片（5000万像素以内）。",
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as img:  # reads the header only
                width, height = img.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise too_big
                img.verify()
                fmt = (img.format or "jpeg").lower()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise too_big from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise _error(
            422,
            "image_base64 is not an image (PNG, JPEG, GIF or WebP expected)",
            "这个文件不是图片，请发送照片。",
        ) from None
    return raw, f"image/{fmt}"


def simulator_router(channel: SimulatorChannel) -> APIRouter:
    r = APIRouter(tags=["simulator"])

    @r.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return PAGE.read_text(encoding="utf-8")

    @r.get("/sim/people")
    async def people() -> dict[str, Any]:
        """Groups and the people the page can post as."""
        residents = [
            {"id": "u_zhang", "name": "张师傅", "role": "居民"},
            {"id": "u_liu", "name": "刘阿姨", "role": "居民"},
            {"id": "u_chen", "name": "小陈", "role": "居民"},
            {"id": "r_ma", "name": "骑手小马", "role": "骑手"},
        ]
        return {"bot": channel.bot_name, "groups": list(channel.groups), "people": residents + channel.people}

    @r.post("/sim/messages", status_code=202)
    async def post_message(body: SimPost) -> dict[str, str]:
        image, mime = decode_image(body.image_base64) if body.image_base64 else (None, "")
        loc = Location(body.location.lat, body.location.lon, body.location.address) if body.location else None
        mid = await channel.post(
            body.group,
            body.sender,
            body.sender_name,
            body.text,
            body.mentions_bot,
            image,
            mime or "image/jpeg",
            loc,
            body.private,
            body.quoted,
        )
        return {"message_id": mid}

    @r.get("/sim/groups/{group}/messages")
    async def group_messages(group: str, after: str | None = None) -> list[dict[str, Any]]:
        if group not in channel.groups:
            raise _error(404, f"unknown group {group!r}", "没有这个群。")
        return channel.messages(group, after)

    return r
