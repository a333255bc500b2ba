"""`doorstep serve` as a real process with the WeCom AI bot channel (CONTRACT.md "WeCom channels"): turned on by
DOORSTEP_WECOM_BOT_ID / DOORSTEP_WECOM_BOT_SECRET, pointed at the fake WeCom by DOORSTEP_WECOM_WS_URL. Wrong
credentials or an unreachable address: one clear line and exit 2, as for Wechaty. The fake runs in this test's
event loop, so the process is waited on asynchronously (a blocking wait would stall the fake)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.procs import Procs, Serve
from tests.wecom_fake import FakeWecom, StepClock


@pytest.fixture
async def fake() -> AsyncIterator[FakeWecom]:
    f = await FakeWecom(now=StepClock(datetime(2026, 11, 23, 2, 0, tzinfo=UTC)).now).start()
    yield f
    await f.stop()


async def until(what: str, cond: Any, timeout: float = 60.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        got = await cond() if asyncio.iscoroutinefunction(cond) else cond()
        if got:
            return got
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def serve_with(procs: Procs, fake: FakeWecom, **env: str) -> Serve:
    env = {
        "DOORSTEP_WECOM_BOT_ID": fake.bot_id,
        "DOORSTEP_WECOM_BOT_SECRET": fake.bot_secret,
        "DOORSTEP_WECOM_WS_URL": fake.ws_url,
        **env,
    }
    return procs.serve(**env)


@pytest.mark.parametrize("what", ["secret", "address"])
async def test_wrong_wecom_credentials_are_one_line_and_exit_2(
    procs: Procs, fake: FakeWecom, what: str
) -> None:
    if what == "secret":
        p = serve_with(procs, fake, DOORSTEP_WECOM_BOT_SECRET="not-the-secret")
    else:
        p = serve_with(procs, fake, DOORSTEP_WECOM_WS_URL="ws://127.0.0.1:9/")
    p.start(wait=False)
    code = await until("serve to exit", p.exited)
    out = p.log()
    errors = [line for line in out.splitlines() if line.startswith("doorstep: error:")]
    assert code == 2 and len(errors) == 1, out
    assert "Traceback" not in out
    if what == "secret":
        assert "DOORSTEP_WECOM_BOT_SECRET" in errors[0] and "refused" in errors[0]
        assert fake.frames_of("aibot_subscribe")[0]["body"] == {
            "bot_id": fake.bot_id,
            "secret": "not-the-secret",
        }
    else:
        assert "cannot reach the WeCom long connection at ws://127.0.0.1:9/" in errors[0]


async def test_serve_answers_a_staff_question_over_the_long_connection(procs: Procs, fake: FakeWecom) -> None:
    p = serve_with(procs, fake)
    p.start(wait=False)
    async with httpx.AsyncClient(base_url=p.url, timeout=5.0) as http:

        async def health() -> dict[str, Any] | None:
            if p.exited() is not None:
                raise AssertionError(f"serve exited with {p.exited()}:\n{p.log()}")
            try:
                r = await http.get("/health")
            except httpx.HTTPError:
                return None
            h = r.json()["parts"]
            return h if h["index"].get("status") == "up" else None

        parts = await until("serve with its index", health)
        assert parts["channels"]["wecom_bot"]["status"] == "up" and fake.subscriptions == 1
        rid = await fake.push("@家门口助手 助老食堂几点开饭？", userid="lishuji")

        def answered() -> str:
            st = fake.stream_for(rid)
            return st.content if st is not None and st.finish else ""

        content = await until("the stream reply", answered)
        assert "11:00" in content and "来源：" in content, content
    code = await asyncio.get_running_loop().run_in_executor(None, p.stop)
    assert code in (0, -15), p.log()  # a supervisor's SIGTERM: stopped in time (uvicorn re-raises the signal)
    await until("the long connection closed", lambda: not fake.live(), 10)
