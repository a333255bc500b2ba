"""No default secret in production (issue 10 item 9): secrets are generated per data directory and every part
agrees on them with nothing configured; `serve` and `backend` refuse a once-shipped secret beyond loopback
(the real processes: one line, exit 2); `check` warns."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.cli import main
from bot.clock import ManualClock
from bot.config import Config, ConfigError, load_config
from bot.credentials import SHIPPED_DEFAULTS, exposure_problem, load_or_generate
from tests.conftest import ROOT
from tests.security_support import serve_stack
from tests.support import Say

DOORSTEP = ROOT / ".venv" / "bin" / "doorstep"


def test_secrets_are_generated_once_per_data_directory(data_dir: Path) -> None:
    a = load_config(ROOT / "config" / "doorstep.yaml")
    first = (a.admin_token, a.webhook_secret, a.api_keys, a.ticket_api_key)
    path = data_dir / "secrets.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    b = load_config(ROOT / "config" / "doorstep.yaml")  # a restart: the same secrets
    assert (b.admin_token, b.webhook_secret, b.api_keys, b.ticket_api_key) == first
    assert a.ticket_api_key == a.api_keys[0]  # the bot's client sends a key the built-in backend accepts
    values = [a.admin_token, a.webhook_secret, a.api_keys[0]]
    assert len(set(values)) == 3 and all(len(v) >= 40 for v in values)
    assert not set(values) & set(SHIPPED_DEFAULTS.values())
    assert a.shipped_defaults() == []


def test_configured_secrets_win_and_the_file_is_left_alone(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOORSTEP_HTTP__ADMIN_TOKEN", "token-of-ours")
    monkeypatch.setenv("DOORSTEP_TICKETS__WEBHOOK_SECRET", "secret-of-ours")
    monkeypatch.setenv("DOORSTEP_OPEN311_API_KEYS", "key-a,key-b")
    c = load_config(ROOT / "config" / "doorstep.yaml")
    assert (c.admin_token, c.webhook_secret, c.api_keys, c.ticket_api_key) == (
        "token-of-ours",
        "secret-of-ours",
        ["key-a", "key-b"],
        "key-a",
    )
    assert not (data_dir / "secrets.json").exists()


def _generate(data_dir: str, out: mp.Queue) -> None:  # type: ignore[type-arg]
    s = load_or_generate(Path(data_dir))
    out.put((s.admin_token, s.webhook_secret, s.api_key))


def test_processes_starting_together_share_one_set(tmp_path: Path) -> None:
    """`serve` and `backend` started at once on one data directory must not each make their own."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_generate, args=(str(tmp_path / "data"), out)) for _ in range(4)]
    for p in procs:
        p.start()
    got = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert len(set(got)) == 1
    assert sorted(os.listdir(tmp_path / "data")) == ["secrets.json"]  # no temporary file left behind


def test_an_unreadable_secrets_file_is_one_clear_line(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir.mkdir(parents=True)
    (data_dir / "secrets.json").write_text("{not json", encoding="utf-8")
    c = load_config(ROOT / "config" / "doorstep.yaml")
    with pytest.raises(ConfigError, match="secrets.json: cannot read the generated secrets"):
        _ = c.admin_token
    monkeypatch.setenv("DOORSTEP_HTTP__HOST", "0.0.0.0")  # serve: one line, exit 2, nothing overwritten
    monkeypatch.setenv("DOORSTEP_CONFIG", str(ROOT / "config" / "doorstep.yaml"))
    assert main(["serve"]) == 2
    assert capsys.readouterr().err.strip().endswith("delete the file to make new ones")
    assert (data_dir / "secrets.json").read_text(encoding="utf-8") == "{not json"


async def test_every_part_agrees_on_the_generated_secrets(
    config: Config, clock: ManualClock, say: Say, data_dir: Path
) -> None:
    """Nothing configured: the bot's ticket client files on the built-in backend, the backend's signed webhook
    is taken by the receiver, the admin API takes the generated token, and the once-shipped ones are refused."""
    async with serve_stack(config, clock) as stack:
        await stack.app.handle(say("3号楼门口井盖松了"))
        await stack.settle()
        assert stack.ticket().remote_id == "1"  # the client's key was accepted
        generated = json.loads((data_dir / "secrets.json").read_text())
        status = "/open311/v2/requests/1/status.json"
        refused = await stack.http.post(status, data={"api_key": "doorstep-local-key", "status": "closed"})
        assert refused.status_code == 403
        ok = await stack.http.post(
            status, data={"api_key": generated["api_key"], "status": "closed", "status_notes": "已更换井盖"}
        )
        assert ok.status_code == 200
        await stack.settle()  # the webhook, signed with the generated secret, is taken
        assert stack.ticket().status == "closed"
        assert any(t.startswith("工单 #1") and "已处理完毕" in t for t in stack.channel.texts())
        for token, code in (("doorstep-admin", 401), (generated["admin_token"], 200)):
            r = await stack.http.get("/admin/tickets", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == code


# --- the real processes refuse ---------------------------------------------------------------------------


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOORSTEP_", "WECHATY_"))}
    return {
        **env,
        "DOORSTEP_DATA": str(tmp_path / "data"),
        "PYTHONPATH": str(ROOT),  # this tree's code, whatever the installed one is
        "HF_HUB_OFFLINE": "1",
        **extra,
    }


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    exe = [str(DOORSTEP)] if DOORSTEP.exists() else [sys.executable, "-m", "bot.cli"]
    # a process that does not refuse starts serving and never exits: the timeout fails the test
    return subprocess.run([*exe, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


def _assert_refused(p: subprocess.CompletedProcess[str], *settings: str) -> None:
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2, p.stderr
    assert len(lines) == 1 and lines[0].startswith("doorstep: error: refusing to listen on"), p.stderr
    for s in settings:
        assert s in lines[0]
    assert "Traceback" not in p.stderr and "Doorstep is running" not in p.stdout


@pytest.mark.parametrize(
    ("variable", "value", "setting"),
    [
        ("DOORSTEP_HTTP__ADMIN_TOKEN", "doorstep-admin", "http.admin_token"),
        ("DOORSTEP_TICKETS__WEBHOOK_SECRET", "doorstep-webhook-secret", "tickets.webhook_secret"),
        ("DOORSTEP_OPEN311_API_KEYS", "doorstep-local-key", "tickets.api_keys"),
    ],
)
def test_serve_refuses_a_shipped_secret_beyond_loopback(
    tmp_path: Path, variable: str, value: str, setting: str
) -> None:
    from backend.testing import free_port

    env = _env(tmp_path, DOORSTEP_HTTP__HOST="0.0.0.0", DOORSTEP_PORT=str(free_port()), **{variable: value})
    p = _run(["serve"], env)
    _assert_refused(p, setting, "0.0.0.0")


@pytest.fixture
def shipped_config(tmp_path: Path) -> Iterator[Path]:
    """The configuration as it shipped before: the three well-known secrets in config/doorstep.yaml."""
    cfg = tmp_path / "config"
    shutil.copytree(ROOT / "config", cfg)
    text = (cfg / "doorstep.yaml").read_text(encoding="utf-8")
    text = text.replace('admin_token: ""', "admin_token: doorstep-admin")
    text = text.replace('webhook_secret: ""', "webhook_secret: doorstep-webhook-secret")
    text = text.replace("api_keys: []", "api_keys: [doorstep-local-key]")
    (cfg / "doorstep.yaml").write_text(text, encoding="utf-8")
    yield cfg / "doorstep.yaml"


def test_serve_refuses_the_old_shipped_config_on_every_interface(
    tmp_path: Path, shipped_config: Path
) -> None:
    from backend.testing import free_port

    env = _env(tmp_path, DOORSTEP_HTTP__HOST="0.0.0.0", DOORSTEP_PORT=str(free_port()))
    p = _run(["--config", str(shipped_config), "serve"], env)
    _assert_refused(p, "http.admin_token", "tickets.webhook_secret", "tickets.api_keys")


def test_backend_refuses_a_shipped_key_beyond_loopback(tmp_path: Path) -> None:
    from backend.testing import free_port

    env = _env(tmp_path, DOORSTEP_OPEN311_API_KEYS="doorstep-local-key")
    p = _run(["backend", "--host", "0.0.0.0", "--port", str(free_port())], env)
    _assert_refused(p, "tickets.api_keys")


def test_loopback_keeps_working_with_shipped_secrets_and_generated_ones_go_anywhere(
    config: Config, shipped_config: Path, data_dir: Path
) -> None:
    old = load_config(shipped_config)
    assert old.shipped_defaults() == ["http.admin_token", "tickets.webhook_secret", "tickets.api_keys"]
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert exposure_problem(host, old.shipped_defaults()) is None
    for host in ("0.0.0.0", "", "::", "192.168.1.20", "doorstep.example.org"):
        assert exposure_problem(host, old.shipped_defaults()) is not None
    assert exposure_problem("0.0.0.0", config.shipped_defaults()) is None  # generated: fine beyond loopback


# --- check warns --------------------------------------------------------------------------------------------


def _check(
    capsys: pytest.CaptureFixture[str], config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    monkeypatch.setenv("DOORSTEP_CONFIG", str(config_path))  # what --config does, undone after the test
    assert main(["check"]) == 0
    return capsys.readouterr().out.splitlines()


def test_check_warns_about_shipped_secrets(
    capsys: pytest.CaptureFixture[str], shipped_config: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _check(capsys, shipped_config, monkeypatch)
    warnings = [line for line in out if line.startswith("warning:")]
    assert [w.split()[1] for w in warnings] == [
        "http.admin_token",
        "tickets.webhook_secret",
        "tickets.api_keys",
    ]
    assert out[-1] == "ok"
    monkeypatch.setenv("DOORSTEP_HTTP__HOST", "0.0.0.0")
    out = _check(capsys, shipped_config, monkeypatch)
    assert any(line.startswith("warning: http.host is 0.0.0.0: refusing to listen") for line in out)


def test_check_is_quiet_with_generated_secrets_and_warns_of_a_readable_file(
    capsys: pytest.CaptureFixture[str], config: Config, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _check(capsys, ROOT / "config" / "doorstep.yaml", monkeypatch)
    assert not [line for line in out if line.startswith("warning:")]
    assert any(line.startswith("secrets: 0 configured, 3 generated on first start into") for line in out)
    _ = config.admin_token  # generated now
    (data_dir / "secrets.json").chmod(0o644)
    out = _check(capsys, ROOT / "config" / "doorstep.yaml", monkeypatch)
    assert [line for line in out if line.startswith("warning:")] == [
        f"warning: {data_dir / 'secrets.json'} can be read by other users: chmod 600 it"
    ]
