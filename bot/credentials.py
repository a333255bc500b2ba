"""Secrets: the admin token, the webhook secret and the built-in backend's API key.

Nothing secret ships in the configuration. A secret left empty there is generated on first use and kept in
`<data dir>/secrets.json` (file mode 0600), so on one machine the built-in backend, the bot's ticket client,
the webhook receiver and the admin API agree without anyone configuring anything. The values that shipped in
earlier versions (`doorstep-admin`, `doorstep-webhook-secret`, `doorstep-local-key`) are known to everyone:
`serve` and `backend` refuse to listen beyond loopback while any of them is configured, and `check` warns.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

SECRETS_FILE = "secrets.json"
# setting -> the value it shipped with; anyone can read these in the source
SHIPPED_DEFAULTS = {
    "http.admin_token": "doorstep-admin",
    "tickets.webhook_secret": "doorstep-webhook-secret",
    "tickets.api_keys": "doorstep-local-key",
    "tickets.api_key": "doorstep-local-key",
}
# the environment variable that overrides each setting, for the error message
ENV_OF = {
    "http.admin_token": "DOORSTEP_HTTP__ADMIN_TOKEN",
    "tickets.webhook_secret": "DOORSTEP_TICKETS__WEBHOOK_SECRET",
    "tickets.api_keys": "DOORSTEP_OPEN311_API_KEYS",
    "tickets.api_key": "DOORSTEP_OPEN311_API_KEY",
}


class SecretsError(Exception):
    """The secrets file cannot be read or written; the message names it and what to do."""


@dataclass(frozen=True, slots=True)
class GeneratedSecrets:
    path: Path
    admin_token: str
    webhook_secret: str
    api_key: str


_FIELDS = ("admin_token", "webhook_secret", "api_key")


def _read(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise SecretsError(
            f"{path}: cannot read the generated secrets ({e}); delete the file to make new ones"
        ) from None
    if not isinstance(data, dict):
        raise SecretsError(f"{path}: expected a JSON object; delete the file to make new ones")
    return {k: v for k, v in data.items() if k in _FIELDS and isinstance(v, str) and v}


def _write_new(path: Path, values: dict[str, str]) -> None:
    """Write the file with mode 0600 and publish it atomically (a hard link fails if another process won)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(values, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another process started at the same moment: its stand
            os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def load_or_generate(data_dir: Path) -> GeneratedSecrets:
    """The generated secrets of this data directory, made on first use."""
    path = data_dir / SECRETS_FILE
    values = _read(path)
    if any(k not in values for k in _FIELDS):
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            if values:  # an older file without some key: complete it in place
                fresh = {**{k: secrets.token_urlsafe(32) for k in _FIELDS}, **values}
                tmp = path.with_name(f".{path.name}.{os.getpid()}")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(fresh, f, indent=2)
                os.replace(tmp, path)
            else:
                _write_new(path, {k: secrets.token_urlsafe(32) for k in _FIELDS})
        except OSError as e:
            raise SecretsError(f"{path}: cannot write the generated secrets ({e.strerror})") from None
        values = _read(path)
    return GeneratedSecrets(path, values["admin_token"], values["webhook_secret"], values["api_key"])


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name or "" (every interface): reachable from elsewhere


def shipped_defaults_in_use(
    admin_token: str, webhook_secret: str, api_keys: list[str], api_key: str = ""
) -> list[str]:
    """The settings that hold a value Doorstep once shipped with."""
    found = []
    if admin_token == SHIPPED_DEFAULTS["http.admin_token"]:
        found.append("http.admin_token")
    if webhook_secret == SHIPPED_DEFAULTS["tickets.webhook_secret"]:
        found.append("tickets.webhook_secret")
    if SHIPPED_DEFAULTS["tickets.api_keys"] in api_keys:
        found.append("tickets.api_keys")
    if api_key == SHIPPED_DEFAULTS["tickets.api_key"]:
        found.append("tickets.api_key")
    return found


def exposure_problem(host: str, settings: list[str]) -> str | None:
    """The one-line refusal when `settings` hold shipped defaults and `host` is reachable beyond this machine."""
    if not settings or is_loopback(host):
        return None
    named = ", ".join(f"{s} (${ENV_OF[s]})" for s in settings)
    return (
        f"refusing to listen on {host or 'every interface'} with the shipped default {named}: set your own secret, "
        f"or leave it empty to use one generated in the data directory ({SECRETS_FILE})"
    )
