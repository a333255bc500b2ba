"""The simulator channel's HTTP API (CONTRACT.md) through the real pipeline."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator

import httpx
import pytest
from PIL import Image

from bot.app import App
from bot.clock import ManualClock
from bot.config import Config
from bot.web.app import create_web_app
from channels.simulator.channel import SimulatorChannel


@pytest.fixture
async def sim(config: Config, clock: ManualClock) -> AsyncIterator[tuple[App, httpx.AsyncClient]]:
    channel = SimulatorChannel.from_config(config)
    app = App(config, clock=clock, channels={"simulator": channel})
    await app.start(background=False)
    web = create_web_app(app, manage_lifecycle=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web), base_url="http://test") as client:
        yield app, client
    await app.stop()


def png() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


async def post(client: httpx.AsyncClient, **body) -> httpx.Response:
    body.setdefault("group", "幸福里3号楼")
    body.setdefault("sender", "u_zhang")
    return await client.post("/sim/messages", json=body)


async def test_post_and_read_the_reply(sim) -> None:
    app, client = sim
    r = await post(client, sender_name="张师傅", text="帮助", mentions_bot=True)
    assert r.status_code == 202
    mid = r.json()["message_id"]
    await app.settle()
    msgs = (await client.get("/sim/groups/幸福里3号楼/messages")).json()
    assert [m["message_id"] for m in msgs][0] == mid
    bot = [m for m in msgs if m["from_bot"]]
    assert len(bot) == 1 and "我是家门口助手" in bot[0]["text"] and bot[0]["mentions"] == ["u_zhang"]
    after = (await client.get(f"/sim/groups/幸福里3号楼/messages?after={mid}")).json()
    assert after == bot


async def test_page_and_people(sim) -> None:
    _, client = sim
    page = await client.get("/")
    assert page.status_code == 200 and "群聊模拟器" in page.text
    people = (await client.get("/sim/people")).json()
    assert "幸福里3号楼" in people["groups"] and any(p["role"] == "骑手" for p in people["people"])


async def test_health(sim) -> None:
    _, client = sim
    r = await client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["parts"]["store"]["status"] == "up"
    assert body["parts"]["channels"]["simulator"]["status"] == "up"


@pytest.mark.parametrize(
    "body, expect",
    [
        ({"sender": "u", "text": "hi"}, "group"),
        ({"group": "g", "text": "hi"}, "sender"),
        ({"group": "g", "sender": "u"}, "text, an image or a location"),
        ({"group": "g", "sender": "u", "text": "x", "location": {"lat": 999, "lon": 0}}, "location.lat"),
        ({"group": "g", "sender": "u", "text": "x", "mentions_bot": "maybe"}, "mentions_bot"),
    ],
)
async def test_malformed_requests_get_clear_errors(sim, body, expect) -> None:
    _, client = sim
    r = await client.post("/sim/messages", json=body)
    assert r.status_code == 422
    assert expect in r.json()["error"]
    assert r.json()["message"] == "请求格式不对，请检查后重试。"


async def test_not_json_is_refused(sim) -> None:
    _, client = sim
    r = await client.post("/sim/messages", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422


async def test_image_that_is_not_an_image(sim) -> None:
    app, client = sim
    ok = await post(client, text="帮助", mentions_bot=True)
    bad = await post(
        client, text="看这张图", image_base64=base64.b64encode(b"%PDF-1.4 not an image").decode()
    )
    assert bad.status_code == 422
    assert bad.json()["detail"]["message"] == "这个文件不是图片，请发送照片。"
    garbage = await post(client, text="x", image_base64="@@@not-base64@@@")
    assert garbage.status_code == 422
    await app.settle()
    msgs = (await client.get("/sim/groups/幸福里3号楼/messages")).json()
    assert msgs[0]["message_id"] == ok.json()["message_id"]  # what was accepted is still there
    assert any(m["from_bot"] for m in msgs)


async def test_real_image_is_accepted(sim) -> None:
    app, client = sim
    r = await post(client, text="", image_base64=png())
    assert r.status_code == 202
    await app.settle()
    msgs = (await client.get("/sim/groups/幸福里3号楼/messages")).json()
    assert msgs[0]["image"] is True


async def test_hundred_thousand_characters(sim) -> None:
    app, client = sim
    first = await post(client, text="帮助", mentions_bot=True)
    r = await post(client, text="长" * 100_000, mentions_bot=True)
    assert r.status_code == 202
    await app.settle()
    msgs = (await client.get("/sim/groups/幸福里3号楼/messages")).json()
    texts = [m["text"] for m in msgs if m["from_bot"]]
    assert any("消息太长了（100000字）" in t for t in texts)
    assert msgs[0]["message_id"] == first.json()["message_id"]


async def test_unknown_group_listing(sim) -> None:
    _, client = sim
    r = await client.get("/sim/groups/nope/messages")
    assert r.status_code == 404


async def test_a_location_by_name_has_no_made_up_coordinates(sim) -> None:
    app, client = sim
    r = await post(client, text="", location={"address": "幸福里3号楼门口"})
    assert r.status_code == 202
    await app.settle()
    sent = app.channels["simulator"]
    assert isinstance(sent, SimulatorChannel)
    [entry] = [e for e in sent.groups["幸福里3号楼"] if e.message_id == r.json()["message_id"]]
    assert entry.location == {"lat": None, "lon": None, "address": "幸福里3号楼门口"}
    for bad in ({"lat": 39.16}, {"lat": None, "lon": None, "address": " "}):
        r = await post(client, text="", location=bad)
        assert r.status_code == 422, bad
