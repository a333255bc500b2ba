"""A channel and a handler added by configuration alone (docs/architecture.md, "Adding a channel, a handler"):
each is written in its own module in tests/plugins/, nothing outside it changes, and it works through the real
router, sender and store."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from bot.app import App
from bot.clock import ManualClock
from bot.config import Config, ConfigError, load_config
from store.models import Delivery
from tests.plugins.echo_channel import EchoChannel
from tests.plugins.echo_handler import USAGE

ROOT = Path(__file__).resolve().parent.parent


def config_with(tmp_path: Path, **main: Any) -> Config:
    """The bundled configuration with these top-level keys of doorstep.yaml replaced."""
    folder = tmp_path / "config"
    shutil.copytree(ROOT / "config", folder)
    path = folder / "doorstep.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data.update(main)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return load_config(path)


ECHO = {"echo": {"module": "tests.plugins.echo_channel", "group": "回声群"}, "simulator": False}


async def test_a_channel_and_a_handler_from_the_config_alone(
    tmp_path: Path, data_dir: Path, clock: ManualClock
) -> None:
    config = config_with(
        tmp_path,
        channels=ECHO,
        plugins=["tests.plugins.echo_handler"],
        handlers={"echo": {"prefix": "回声>"}},  # the handler's own settings block
    )
    app = App(config, clock=clock)  # no channels handed in: built from the config's `channels:` block
    assert list(app.channels) == ["echo"]
    echo = app.channels["echo"]
    assert isinstance(echo, EchoChannel) and echo.group == "回声群"
    await app.start(background=False)
    try:
        await echo.say("u_zhang", "回声 你好")
        await echo.say("u_zhang", "帮助")
        await app.settle()
        said = [text for _, text, _ in echo.said]
        assert (
            said[0] == "回声>你好"
        )  # the plugin handler answered, with its settings, through router and sender
        assert "我是家门口助手" in said[1] and USAGE in said[1]  # 帮助 lists the plugin handler's usage
        with app.store.session() as s:  # the one way out records every send
            kinds = [(d.channel, d.group_id, d.status) for d in s.scalars(select(Delivery))]
        assert kinds == [("echo", "回声群", "sent"), ("echo", "回声群", "sent")]
        assert app.health()["parts"]["channels"]["echo"]["status"] == "up"
    finally:
        await app.stop()


async def test_a_channel_that_reports_joins_is_greeted_through_the_sender(
    tmp_path: Path, data_dir: Path, clock: ManualClock
) -> None:
    app = App(config_with(tmp_path, channels=ECHO), clock=clock)
    echo = app.channels["echo"]
    assert isinstance(echo, EchoChannel)
    await app.start(background=False)
    try:
        await echo.add_bot_to("新群")  # the platform says the bot was added: the directory greets
        await app.settle()
        [(group, text, _)] = echo.said
        assert (
            group == "新群" and "/绑定" in text
        )  # not a group of groups.yaml: staff are told how to bind it
        await echo.say(
            "u_liu", "你好"
        )  # its first words in the group: no second greeting (it greets on join)
        await app.settle()
        await app.tick()
        await app.settle()
        assert sum("/绑定" in t for _, t, _ in echo.said) == 1
    finally:
        await app.stop()


async def test_a_handler_module_not_in_the_config_takes_no_part(
    tmp_path: Path, data_dir: Path, clock: ManualClock
) -> None:
    import tests.plugins.echo_handler  # noqa: F401  (registered in this process, as by another app)

    app = App(config_with(tmp_path, channels=ECHO), clock=clock)
    assert "echo" not in {h.name for h in app.handlers}
    assert USAGE not in app.services.usages


def test_a_wrong_channel_block_is_one_line_naming_the_key(tmp_path: Path, data_dir: Path) -> None:
    config = config_with(tmp_path, channels={**ECHO, "echo": {**ECHO["echo"], "gruop": "x"}})
    with pytest.raises(ConfigError, match=r"doorstep\.yaml: channels\.echo\.gruop: unknown key"):
        App(config, clock=ManualClock())
    bad_handler = config_with(
        tmp_path / "h",
        channels=ECHO,
        plugins=["tests.plugins.echo_handler"],
        handlers={"echo": {"prefx": "x"}},
    )
    with pytest.raises(ConfigError, match=r"doorstep\.yaml: handlers\.echo\.prefx: unknown key"):
        App(bad_handler, clock=ManualClock())
    missing = config_with(tmp_path / "b", channels={"nowhere": {"module": "tests.plugins.no_such_channel"}})
    with pytest.raises(
        ConfigError, match=r"channels\.nowhere: plugin module 'tests\.plugins\.no_such_channel'"
    ):
        App(missing, clock=ManualClock())


def test_the_wechat_channel_block_and_its_older_keys(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.app import build_channel
    from channels.wechaty import WechatyChannel

    new = config_with(tmp_path / "new", channels={"wechaty": {"token": "t1", "endpoint": "127.0.0.1:1"}})
    old = config_with(tmp_path / "old", channels={"wechaty_token": "t1", "wechaty_endpoint": "127.0.0.1:1"})
    assert new.main.channels.blocks()["wechaty"] == old.main.channels.blocks()["wechaty"]
    monkeypatch.delenv("WECHATY_PUPPET_SERVICE_TOKEN", raising=False)
    assert "wechaty" not in App(config_with(tmp_path / "none"), clock=ManualClock()).channels  # no token: off
    monkeypatch.setenv("WECHATY_PUPPET_SERVICE_TOKEN", "from-env")  # the contract's variable wins
    ch = build_channel(config_with(tmp_path / "env", channels={"wechaty": {"token": "t1"}}), "wechaty")
    assert isinstance(ch, WechatyChannel) and ch.token == "from-env"


async def test_a_handler_claims_a_message_before_the_policy_and_a_broken_claim_stops_nothing(
    tmp_path: Path, data_dir: Path, clock: ManualClock
) -> None:
    from tests.plugins.claiming_handler import PASSWORD
    from tests.support import RecordingChannel, Say

    config = config_with(tmp_path, plugins=["tests.plugins.claiming_handler"])
    channel = RecordingChannel()
    app = App(config, clock=clock, channels={"rec": channel})
    await app.start(background=False)
    try:
        say = Say()
        o = await app.handle(say(PASSWORD))  # not addressed: the policy alone would leave it unanswered
        await app.settle()
        assert (o.status, o.handler) == ("handled", "password")
        assert channel.texts("幸福里3号楼")[-1] == "门开了"
        o = await app.handle(say("今天天气不错"))  # claimed by nobody: the policy decides as always
        assert o.status == "ignored"
        o = await app.handle(say("帮助", mention=True))  # and routing goes on past the broken claim
        await app.settle()
        assert (o.status, o.handler) == ("handled", "help")
    finally:
        await app.stop()
