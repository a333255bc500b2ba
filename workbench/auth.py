"""Staff sign-in: passwords (scrypt), one-time links sent to a staff member's chat, sessions with two ends, the
CSRF token of each session, and the record of who did what.

Only hashes are stored: the scrypt hash of a password, the SHA-256 of a session cookie and of a sign-in link,
so a copy of the database signs nobody in. A staff member is whoever config/staff.yaml names; removing them
there ends their sessions at the next request. Five wrong passwords lock the account for 15 minutes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update

from core.community import StaffMember
from pii import mask_pii
from store import Store
from store.models import StaffAction, StaffCredential, StaffLoginLink, StaffSession
from workbench.settings import WorkbenchSettings

log = logging.getLogger(__name__)

MIN_PASSWORD = 8
MAX_FAILED = 5
LOCK = timedelta(minutes=15)
LINKS_PER_WINDOW = 3  # sign-in links sent to one person per LINK_WINDOW, so nobody can flood their chat
LINK_WINDOW = timedelta(minutes=10)
StaffLookup = Callable[[str], StaffMember | None]
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


class AuthError(ValueError):
    """Sign-in refused; the message is Chinese, for the person signing in."""


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, _unb64(digest))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_password_rules(password: str, staff: StaffMember) -> None:
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"密码至少{MIN_PASSWORD}位")
    if password in (staff.id, staff.name) or password.isdigit() and len(set(password)) <= 2:
        raise AuthError("密码太简单了，请换一个")


@dataclass(frozen=True)
class Signed:
    """A signed-in staff member, as each request sees them."""

    staff: StaffMember
    session_id: int
    csrf: str
    expires_at: datetime


class Auth:
    def __init__(self, store: Store, settings: WorkbenchSettings | None = None) -> None:
        settings = settings or WorkbenchSettings()
        self.store = store
        self.session_life = timedelta(hours=settings.session_hours)
        self.idle = timedelta(minutes=settings.idle_minutes)
        self.link_life = timedelta(minutes=settings.link_minutes)

    # --- passwords (set by `doorstep staff set-password`) ---------------------------------------------------------

    def set_password(self, staff: StaffMember, password: str, now: datetime) -> None:
        check_password_rules(password, staff)
        with self.store.session() as s:
            row = s.get(StaffCredential, staff.id)
            if row is None:
                row = StaffCredential(staff_id=staff.id)
                s.add(row)
            row.password_hash, row.set_at, row.failed, row.locked_until = (
                hash_password(password),
                now,
                0,
                None,
            )
            # a new password ends every session signed in with the old one
            s.execute(delete(StaffSession).where(StaffSession.staff_id == staff.id))

    def has_password(self, staff_id: str) -> bool:
        with self.store.session() as s:
            row = s.get(StaffCredential, staff_id)
            return row is not None and bool(row.password_hash)

    def check_password(self, staff: StaffMember, password: str, now: datetime) -> None:
        """Raises AuthError for a wrong or locked account (one message for both: no account guessing)."""
        with self.store.session() as s:
            row = s.get(StaffCredential, staff.id)
            if row is None or not row.password_hash:
                raise AuthError("账号或密码不对")
            if row.locked_until is not None and row.locked_until > now:
                raise AuthError("密码错误次数太多，请15分钟后再试，或用登录链接")
            if verify_password(password, row.password_hash):
                row.failed, row.locked_until = 0, None
                return
            row.failed += 1
            if row.failed >= MAX_FAILED:
                row.failed, row.locked_until = 0, now + LOCK
                log.warning("workbench: staff %s locked after %d wrong passwords", staff.id, MAX_FAILED)
        raise AuthError("账号或密码不对")

    # --- one-time links ------------------------------------------------------------------------------------------

    def new_link(self, staff: StaffMember, now: datetime) -> str | None:
        """A fresh one-time token for this person; None when they asked too often just now."""
        with self.store.session() as s:
            recent = s.scalars(
                select(StaffLoginLink.id).where(
                    StaffLoginLink.staff_id == staff.id, StaffLoginLink.created_at > now - LINK_WINDOW
                )
            ).all()
            if len(recent) >= LINKS_PER_WINDOW:
                return None
            token = secrets.token_urlsafe(32)
            s.add(
                StaffLoginLink(
                    token_hash=token_hash(token),
                    staff_id=staff.id,
                    created_at=now,
                    expires_at=now + self.link_life,
                )
            )
            s.execute(delete(StaffLoginLink).where(StaffLoginLink.expires_at < now - timedelta(days=1)))
        return token

    def use_link(self, token: str, now: datetime) -> str:
        """The staff id the link signs in (once). Raises AuthError."""
        with self.store.session() as s:
            row = s.scalars(
                select(StaffLoginLink).where(StaffLoginLink.token_hash == token_hash(token))
            ).first()
            if row is None or row.used_at is not None or row.expires_at <= now:
                raise AuthError("这个登录链接无效或已过期，请重新获取")
            won = s.execute(
                update(StaffLoginLink)
                .where(StaffLoginLink.id == row.id, StaffLoginLink.used_at.is_(None))
                .values(used_at=now)
            )
            if getattr(won, "rowcount", 0) != 1:
                raise AuthError("这个登录链接已经用过了，请重新获取")
            return row.staff_id

    # --- sessions ------------------------------------------------------------------------------------------------

    def open_session(self, staff: StaffMember, now: datetime, via: str) -> str:
        """A new session; returns the cookie value (only its hash is kept)."""
        token = secrets.token_urlsafe(32)
        with self.store.session() as s:
            s.add(
                StaffSession(
                    token_hash=token_hash(token),
                    staff_id=staff.id,
                    csrf=secrets.token_urlsafe(24),
                    via=via,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=now + self.session_life,
                )
            )
            s.execute(delete(StaffSession).where(StaffSession.expires_at < now))
        return token

    def session(self, token: str, now: datetime, staff_of: StaffLookup) -> Signed | None:
        """The signed-in staff member of a cookie, or None (no such session, ended, idle too long, or the person
        is no longer in staff.yaml). Touches the session."""
        if not token or len(token) > 200:
            return None
        with self.store.session() as s:
            row = s.scalars(select(StaffSession).where(StaffSession.token_hash == token_hash(token))).first()
            if row is None:
                return None
            staff = staff_of(row.staff_id)
            if row.expires_at <= now or row.last_seen_at + self.idle <= now or staff is None:
                s.delete(row)
                return None
            if now - row.last_seen_at > timedelta(
                seconds=60
            ):  # one write a minute is enough for the idle end
                row.last_seen_at = now
            return Signed(staff, row.id, row.csrf, row.expires_at)

    def close_session(self, session_id: int) -> None:
        with self.store.session() as s:
            s.execute(delete(StaffSession).where(StaffSession.id == session_id))

    # --- the record of who did what ----------------------------------------------------------------------------

    def record(
        self,
        staff_id: str,
        staff_name: str,
        action: str,
        target: str = "",
        detail: str = "",
        *,
        now: datetime,
    ) -> None:
        with self.store.session() as s:
            s.add(
                StaffAction(
                    staff_id=staff_id[:128],
                    staff_name=staff_name[:128],
                    action=action[:64],
                    target=target[:128],
                    detail=mask_pii(detail)[:2000],
                    at=now,
                )
            )
        log.info("workbench: %s %s %s %s", staff_id, action, target, mask_pii(detail)[:200])

    def actions(self, limit: int = 200, staff_id: str = "") -> list[StaffAction]:
        with self.store.session() as s:
            q = select(StaffAction).order_by(StaffAction.id.desc()).limit(limit)
            if staff_id:
                q = q.where(StaffAction.staff_id == staff_id)
            return list(s.scalars(q))


def csrf_ok(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), str(given).encode())
