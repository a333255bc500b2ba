"""Configuration: the bundled files load; a wrong file names the file, the key and what was expected."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.cli import main
from bot.config import ConfigError, load_config
from tests.conftest import ROOT


@pytest.fixture
def cfg_dir(tmp_path: Path) -> Path:
    d = tmp_path / "config"
    shutil.copytree(ROOT / "config", d)
    return d


def test_bundled_config_loads(config) -> None:
    assert config.main.bot.name == "家门口助手"
    assert {s.service_code for s in config.services.services} >= {
        "property_repair",
        "municipal_facility",
        "ebike_fire_safety",
        "other",
    }
    assert config.group("幸福里3号楼").grid == "网格3"
    assert config.policy_for("示例社区骑手群").respond == "trigger"
    assert config.policy_for("焕玉里2号院").quiet_hours.start.hour == 23
    assert config.lexicon.terms["电瓶车"] == "电动自行车"


def test_wrong_type_names_file_key_and_expectation(cfg_dir: Path) -> None:
    p = cfg_dir / "doorstep.yaml"
    p.write_text(
        p.read_text(encoding="utf-8").replace("user_per_minute: 6", "user_per_minute: lots"), encoding="utf-8"
    )
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert "doorstep.yaml" in msg and "policy.user_per_minute" in msg and "integer" in msg and "'lots'" in msg


def test_unknown_key_in_groups_file(cfg_dir: Path) -> None:
    g = cfg_dir / "groups.yaml"
    g.write_text(g.read_text(encoding="utf-8").replace("grid: 网格3\n", "gird: 网格3\n", 1), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"groups\.yaml: groups\.0\.gird: unknown key"):
        load_config(cfg_dir / "doorstep.yaml")


def test_bad_role_in_staff_file(cfg_dir: Path) -> None:
    s = cfg_dir / "staff.yaml"
    s.write_text(
        s.read_text(encoding="utf-8").replace("roles: [网格员]", "roles: [超级管理员]", 1), encoding="utf-8"
    )
    with pytest.raises(ConfigError, match=r"staff\.yaml: staff\.1\.roles\.0: expected"):
        load_config(cfg_dir / "doorstep.yaml")


def test_broken_yaml_names_the_line(cfg_dir: Path) -> None:
    p = cfg_dir / "lexicon.yaml"
    p.write_text("terms:\n  电瓶车: [电动自行车\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"lexicon\.yaml: not valid YAML at line \d+"):
        load_config(cfg_dir / "doorstep.yaml")


def test_group_names_unknown_community(cfg_dir: Path) -> None:
    g = cfg_dir / "groups.yaml"
    g.write_text(
        g.read_text(encoding="utf-8").replace(
            "community: 焕玉里社区\n    grid: 网格A", "community: 不存在社区\n    grid: 网格A"
        ),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="不存在社区"):
        load_config(cfg_dir / "doorstep.yaml")


def test_environment_overrides_file(config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOORSTEP_POLICY__RESPOND", "mention")
    monkeypatch.setenv("DOORSTEP_SEND_LIMITS__GROUP_PER_MINUTE", "7")
    monkeypatch.setenv("DOORSTEP_OPEN311_API_KEYS", "a, b")
    monkeypatch.setenv("DOORSTEP_PORT", "8123")
    c = load_config(ROOT / "config" / "doorstep.yaml")
    assert c.main.policy.respond == "mention"
    assert c.main.send_limits.group_per_minute == 7
    assert c.main.tickets.api_keys == ["a", "b"]
    assert c.http_port == 8123


def test_cli_reports_config_error_in_one_line(cfg_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cfg_dir / "doorstep.yaml").write_text("http: {port: 99999}\n", encoding="utf-8")
    code = main(["--config", str(cfg_dir / "doorstep.yaml"), "check"])
    err = capsys.readouterr().err
    assert code == 2
    assert "http.port" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_cli_check_summarises_a_good_config(config, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(ROOT / "config" / "doorstep.yaml"), "check"]) == 0
    out = capsys.readouterr().out
    assert "groups: 5" in out and "services: 14" in out


def test_contract_index_variable_is_a_directory_not_the_index_block(config, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DOORSTEP_INDEX", str(tmp_path / "idx"))
    monkeypatch.setenv("DOORSTEP_INDEX__CHROMA_URL", "http://127.0.0.1:9")
    c = load_config(ROOT / "config" / "doorstep.yaml")
    assert c.index_dir == tmp_path / "idx"
    assert c.main.index.chroma_url == "http://127.0.0.1:9"
