"""The WeChat channel's parsing and packing, without a server (the end-to-end tests are in test_wechaty.py)."""

from __future__ import annotations

import base64
import io
import json
import random

import pytest

from channels.wechaty.channel import (
    SAFE_UPLOAD_BYTES,
    WechatyChannel,
    filebox_json,
    parse_location_xml,
    parse_quote,
    shrink_image,
    strip_mentions,
)
from core.channel import ChannelError


def test_quote_in_padlocal_text_form() -> None:
    text = "「李书记：明天9点到12点停水，请提前储水」\n- - - - - - - - - - - - - - -\n这个几点开始？"
    assert parse_quote(text) == ("这个几点开始？", "明天9点到12点停水，请提前储水")


def test_quote_in_appmsg_xml_form() -> None:
    xml = (
        "<msg><appmsg><title>这个几点开始？</title><type>57</type>"
        "<refermsg><type>1</type><displayname>李书记</displayname><content>明天9点到12点停水</content></refermsg>"
        "</appmsg></msg>"
    )
    assert parse_quote(xml) == ("这个几点开始？", "明天9点到12点停水")


def test_plain_text_is_not_a_quote() -> None:
    assert parse_quote("「通知」大家好") == ("「通知」大家好", "")
    assert parse_quote("3号楼门口井盖松了") == ("3号楼门口井盖松了", "")


def test_location_xml() -> None:
    xml = '<msg><location x="39.16" y="117.21" scale="15" label="天津市南开区宜景菜市场" poiname="宜景菜市场" /></msg>'
    loc = parse_location_xml(xml)
    assert loc is not None
    assert (loc.lat, loc.lon) == (39.16, 117.21)
    assert "宜景菜市场" in loc.address
    assert parse_location_xml("宜景菜市场门口") is None
    assert parse_location_xml("<msg><location x='a' y='b'/></msg>") is None


def test_mentions_are_stripped_with_wechat_separator() -> None:
    assert strip_mentions("@家门口助手\u2005电瓶车能推上楼充电吗", ["家门口助手"]) == (
        "电瓶车能推上楼充电吗",
        True,
    )
    assert strip_mentions("@小门 几点开饭", ["家门口助手", "小门"]) == ("几点开饭", True)
    assert strip_mentions("@张阿姨\u2005你好", ["家门口助手"]) == ("@张阿姨\u2005你好", False)
    # a longer name is not eaten by a shorter one that prefixes it
    assert strip_mentions("@家门口\u2005@家门口助手\u2005问个事", ["家门口", "家门口助手"]) == (
        "问个事",
        True,
    )


def test_filebox_json_is_what_the_ts_file_box_reads() -> None:
    box = json.loads(filebox_json(b"\x89PNG...", "通知.png"))
    assert box["type"] == box["boxType"] == 1  # Base64, with the pre-1.0 key for older servers
    assert base64.b64decode(box["base64"]) == b"\x89PNG..."
    assert box["name"] == "通知.png"


def test_large_picture_is_shrunk_under_the_grpc_limit() -> None:
    from PIL import Image

    noise = Image.frombytes("RGB", (1200, 1200), random.Random(5).randbytes(1200 * 1200 * 3))
    buf = io.BytesIO()
    noise.save(buf, "PNG")
    big = buf.getvalue()
    assert len(big) > SAFE_UPLOAD_BYTES  # noise does not compress: a 4 MB PNG
    data, ext = shrink_image(big, limit=200_000)
    assert len(data) <= 200_000
    assert ext == ".jpg"
    assert Image.open(io.BytesIO(data)).format == "JPEG"


def test_shrinking_a_non_picture_fails_clearly() -> None:
    with pytest.raises(ChannelError, match="not a picture"):
        shrink_image(b"%PDF-1.7 " * 10)


async def test_start_without_token_is_a_clear_error() -> None:
    from channels.wechaty.channel import WechatyStartError

    ch = WechatyChannel("bot", endpoint="127.0.0.1:1", token="")

    async def inbox(_m: object) -> None: ...

    with pytest.raises(WechatyStartError, match="WECHATY_PUPPET_SERVICE_TOKEN"):
        await ch.start(inbox)  # type: ignore[arg-type]
