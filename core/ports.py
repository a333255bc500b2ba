"""The seams: one `typing.Protocol` for every part that another part uses, and the `Services` bundle handlers
and parts receive. A part depends on these, never on the class behind them; `bot/app.py` picks the classes.

Every Protocol here is structural: an implementation does not inherit from it, it only has the members.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from core.community import (
    BotIdentity,
    Community,
    GroupConfig,
    GroupInfo,
    GroupPolicy,
    Scope,
    Service,
    StaffMember,
)
from core.conversation import Conversation, Conversations, Step
from core.intent import Classification
from core.message import Message, Reply

if TYPE_CHECKING:  # a type only: core imports no web framework at run time
    from fastapi import APIRouter

JSON = dict[str, object]  # what health() and similar reports return: JSON-serialisable values


# --- time ---------------------------------------------------------------------------------------------------


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


# --- channels -----------------------------------------------------------------------------------------------

Inbox = Callable[[Message], Awaitable[None]]
"""Where a channel hands every message it receives (the app's inbox: recorded, then queued per group)."""

Joined = Callable[[str, str], Awaitable[None]]
"""(group, channel): the platform said the bot was added to a group (channels that `greets_on_join`)."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a channel can do, declared by the channel; the parts read these instead of probing the object."""

    greets_on_join: bool = (
        False  # the platform reports being added to a group: greet then, not on first words
    )
    keeps_history: bool = False  # `history(group)` returns what the bot said there (settles a send in doubt)
    can_mention: bool = True  # @mentions are shown as mentions
    can_send_images: bool = True
    private_chats: bool = False  # 1:1 chats with residents and staff


class Channel(Protocol):
    """One messaging platform. It turns the platform's events into `Message`s for the inbox and sends what the
    Sender gives it; nothing but the Sender calls `send_text`/`send_image`."""

    name: str
    account: str  # the bot's own id on this channel: its messages are never handled
    capabilities: Capabilities

    async def start(self, inbox: Inbox, joined: Joined | None = None) -> None: ...

    async def stop(self) -> None: ...

    async def send_text(
        self, group: str, text: str, mentions: Sequence[str] = (), in_reply_to: str = ""
    ) -> None: ...

    async def send_image(self, group: str, image: bytes, name: str = "image.png") -> None: ...

    def serves(self, group: str) -> bool:
        """Whether this channel can reach `group` (for notices to groups that have not spoken yet)."""
        ...

    def history(self, group: str) -> Sequence[str]:
        """What the bot said in `group`, oldest first; empty unless `capabilities.keeps_history`."""
        ...

    def routes(self) -> APIRouter | None:
        """HTTP routes the web shell mounts for this channel (the simulator's page and /sim API), or None."""
        ...

    def health(self) -> JSON: ...


# --- the one way out ----------------------------------------------------------------------------------------

SendHook = Callable[[Reply, bool, str], Awaitable[None]]
"""Called after each send attempt: (reply, ok, error)."""


class Sender(Protocol):
    """Every outgoing message goes through here: throttled, recorded in `deliveries`, then sent on its channel."""

    def submit(self, reply: Reply) -> asyncio.Future[bool]:
        """Queue a reply (its `channel` must be set); the future says whether it was sent."""
        ...

    def on_attempt(self, hook: SendHook) -> None: ...

    def channel_names(self) -> Sequence[str]:
        """The channels this process sends on, in the order they were configured."""
        ...

    def serving(self, group: str) -> str:
        """The first channel that can reach `group`, or ""."""
        ...

    def said(self, channel: str, group: str) -> Sequence[str] | None:
        """What the bot said in `group` on `channel` by the platform's own record; None when the channel keeps no
        history (so a send left in doubt by a crash cannot be settled from it)."""
        ...


# --- the community as parts read it -------------------------------------------------------------------------


class CommunityConfig(Protocol):
    """The configured community (bot/config.py's `Config` implements it): who the bot is, the groups, staff and
    ticket services, and the policy in each group."""

    @property
    def bot(self) -> BotIdentity: ...

    @property
    def staff_list(self) -> Sequence[StaffMember]: ...

    @property
    def communities(self) -> Sequence[Community]: ...

    @property
    def group_list(self) -> Sequence[GroupConfig]: ...

    @property
    def service_list(self) -> Sequence[Service]: ...

    @property
    def tz(self) -> tzinfo: ...

    @property
    def data_dir(self) -> Path:
        """Where the deployment keeps its data (store, index, a channel's own files)."""
        ...

    def group(self, group_id: str) -> GroupConfig | None: ...

    def staff_member(self, sender: str) -> StaffMember | None: ...

    def policy_for(self, group_id: str) -> GroupPolicy: ...

    def quiet_until(self, group_id: str, at: datetime) -> datetime | None: ...

    def owns(self, group_id: str) -> bool:
        """Whether this process serves the group (several processes, one account each, share a store)."""
        ...


# --- the configuration as the language and knowledge parts read it (bot/config.py's `Config` has all this) ---


class TermsFile(Protocol):
    @property
    def terms(self) -> dict[str, str]:
        """Colloquial word -> standard term (电瓶车 -> 电动自行车)."""
        ...


class ServicesFile(Protocol):
    @property
    def services(self) -> list[Service]: ...


class ClassifierConfig(Protocol):
    """What the intent classifier is trained from (nlp/classifier.py)."""

    @property
    def lexicon(self) -> TermsFile: ...

    @property
    def services(self) -> ServicesFile: ...

    @property
    def data_dir(self) -> Path: ...

    @property
    def path(self) -> Path:
        """The main config file; its folder may hold extra training rows."""
        ...


class IndexSettings(Protocol):
    @property
    def embedding(self) -> str: ...

    @property
    def chroma_url(self) -> str: ...

    @property
    def collection(self) -> str: ...


class LLMSettings(Protocol):
    @property
    def base_url(self) -> str: ...

    @property
    def api_key(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def timeout_seconds(self) -> float: ...


class KnowledgeSettings(Protocol):
    @property
    def index(self) -> IndexSettings: ...

    @property
    def llm(self) -> LLMSettings: ...


class FAQEntry(Protocol):
    @property
    def questions(self) -> list[str]: ...

    @property
    def answer(self) -> str: ...

    @property
    def source(self) -> str: ...

    @property
    def community(self) -> str: ...


class FAQFile(Protocol):
    @property
    def faq(self) -> Sequence[FAQEntry]: ...


class KnowledgeConfig(Protocol):
    """What the knowledge service is opened from (knowledge/service.py)."""

    @property
    def main(self) -> KnowledgeSettings: ...

    @property
    def index_dir(self) -> Path: ...

    @property
    def knowledge_paths(self) -> list[Path]: ...

    @property
    def database_url(self) -> str: ...

    @property
    def lexicon(self) -> TermsFile: ...

    @property
    def faq(self) -> FAQFile: ...


# --- language -----------------------------------------------------------------------------------------------


class Classifier(Protocol):
    def classify(self, text: str) -> Classification: ...


# --- groups -------------------------------------------------------------------------------------------------


class Groups(Protocol):
    """Where groups were seen, what they are bound to, and binding them (bot/groups.py)."""

    def seen(self, group: str, channel: str) -> None:
        """The router saw a message in `group` on `channel`."""
        ...

    def channel_of(self, group: str) -> str:
        """The channel `group` was last seen on in this process, or ""."""
        ...

    def resolve(self, group: str) -> GroupInfo: ...

    def all(self) -> list[GroupInfo]:
        """Every group the bot knows: the config's, then those it has seen, first seen first."""
        ...

    def bind(
        self,
        group: str,
        community: str,
        grid: str = "",
        tags: Sequence[str] = (),
        *,
        by: str = "",
        scope: Scope | None = None,
        name: str = "",
        channel: str = "",
    ) -> tuple[GroupInfo, GroupInfo]:
        """(before, after); raises core.errors.GroupError."""
        ...

    def unbind(self, group: str, *, by: str = "") -> GroupInfo: ...


# --- knowledge ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KnowledgeAnswer:
    found: bool
    text: str  # the answer with its source line, or the honest "not found" with the offer to pass it on


class Knowledge(Protocol):
    """The knowledge base as the ask handler sees it (bot/knowledge_loading.py's KnowledgeSlot)."""

    def preparing(self) -> str | None:
        """While `serve` still opens (or fills) the index: what to tell a resident ("知识库正在准备中…")."""
        ...

    async def ask(self, question: str, community: str | None) -> KnowledgeAnswer | None:
        """The answer, off the event loop; None when the knowledge cannot be used now."""
        ...


class GapLog(Protocol):
    """Questions the knowledge could not answer, kept for staff (knowledge/gaps.py)."""

    def record(
        self, *, group: str, community: str, sender: str, sender_name: str, question: str, now: datetime
    ) -> int: ...

    def forwarded(self, gap_id: int, to: str, now: datetime) -> None: ...

    def answered(self, gap_ids: Sequence[int]) -> None:
        """Staff answered these questions (an FAQ entry written in the workbench)."""
        ...

    def grouped(self, gaps: Sequence[Mapping[str, object]]) -> list[dict[str, object]]:
        """Gaps (as listed: id, question, sender, community, asked_at ...) grouped by wording, most asked first:
        each group's `question`, `count`, `askers`, `communities`, `last_asked_at` and its `questions`."""
        ...


# --- the knowledge as staff manage it (the admin API and the workbench) -------------------------------------


@dataclass(frozen=True, slots=True)
class DocumentView:
    key: str  # the document's key in the index (its community and file name)
    source: str  # the file name
    community: str  # "": every community's
    title: str
    kind: str
    chunks: int


@dataclass(frozen=True, slots=True)
class Passage:
    """One chunk of a document, as it is answered from."""

    locator: str
    title: str
    text: str
    kind: str


@dataclass(frozen=True, slots=True)
class Ingested:
    """An upload, ingested."""

    key: str
    source: str
    status: str  # added | updated | unchanged
    community: str
    chunks: int
    reason: str
    warnings: tuple[str, ...] = ()
    summary: str = ""


class Library(Protocol):
    """The knowledge's documents: list, read, upload, remove (bot/web/uploads.py). Every method raises
    core.errors.KnowledgeUnavailable while the knowledge base is not open in this process."""

    def documents(self) -> list[DocumentView]: ...

    def passages(self, key: str) -> list[Passage]: ...

    def upload(self, filename: str | None, stream: BinaryIO, community: str, *, via: str) -> Ingested:
        """Checked before a byte is written, kept only when ingested; raises core.errors.UploadRefused."""
        ...

    def remove(self, source: str, community: str | None) -> list[str]:
        """By file name, in every community (None) or the one given ("": the global one); the keys removed."""
        ...


@dataclass(frozen=True, slots=True)
class FAQView:
    id: int  # 0: an entry of config/faq.yaml
    questions: tuple[str, ...]
    answer: str
    source: str
    community: str
    created_by: str = ""
    created_at: datetime | None = None


class FAQBook(Protocol):
    """The FAQ: config/faq.yaml's entries and those staff write (knowledge/staff_faq.py), answered from the moment
    they are saved."""

    def configured(self) -> list[FAQView]: ...

    def written(self) -> list[FAQView]:
        """The entries staff wrote, newest first."""
        ...

    def add(self, questions: Sequence[str], answer: str, *, community: str, by: str) -> int:
        """Raises core.errors.FAQError."""
        ...

    def remove(self, entry_id: int) -> FAQView | None: ...


# --- tickets ------------------------------------------------------------------------------------------------


RATINGS = {"satisfied": "满意", "basic": "基本满意", "unsatisfied": "不满意", "none": "未评价"}
"""A reporter's answer to the satisfaction question of a closed ticket, as stored and as staff read it (`none`:
no answer in time, never counted as satisfied)."""


@dataclass(frozen=True, slots=True)
class TicketView:
    """A ticket as residents are told about it."""

    id: int
    title: str
    status: str  # open | closed
    service_name: str
    sync: str  # pending | sent | parked: whether the ticket system has it yet
    agency: str
    status_notes: str
    reporters: int


@dataclass(frozen=True, slots=True)
class Corrected:
    """A staff correction of a ticket's service or urgency, applied."""

    ticket_id: int
    service_code: str
    service_name: str
    urgency: str
    old_service_code: str
    old_urgency: str
    community: str


@dataclass(frozen=True, slots=True)
class Intake:
    """One message taken as a report (the report handler hands it to the desk)."""

    message: Message
    classification: Classification
    text: str  # the words without the @mention or trigger word
    quiet_until: datetime | None  # quiet hours: file it, say nothing before this


class TicketDesk(Protocol):
    """Reports become tickets, tickets' progress goes back to the groups (tickets/desk.py).

    The report follow-up (waiting for the place, photos that follow) is the desk's conversation flow
    (tickets/followup.py); the report handler only hands messages over."""

    def observe(self, msg: Message) -> None:
        """A photo or location that may belong to words that follow."""
        ...

    def take(self, intake: Intake) -> Step:
        """File the report (or ask where first); the step opens the reporter's follow-up conversation."""
        ...

    def follow(self, intake: Intake, conv: Conversation) -> Step:
        """The reporter's next message while the follow-up is open (`taken` False: not part of it)."""
        ...

    def expire(self, conv: Conversation) -> list[Reply]:
        """The follow-up's deadline passed (no place given in time: filed as it is)."""
        ...

    def quoted_ticket(self, msg: Message) -> int | None:
        """The ticket a quoted reply (引用) is about, when it quotes the bot's message about one to this group."""
        ...

    def supplement(self, intake: Intake, ticket_id: int) -> Step:
        """Add a quoted reply's words, photos and place to the ticket; the step's reply says so."""
        ...

    def ticket(self, ticket_id: int) -> TicketView | None: ...

    def tickets_of(self, sender: str, limit: int = 5) -> list[TicketView]: ...

    async def refresh(self, ticket_ids: Sequence[int]) -> bool:
        """Ask the ticket backend about these tickets now; False if it could not be reached."""
        ...

    def correct(
        self,
        ticket_id: int,
        *,
        service_code: str | None = None,
        urgency: str | None = None,
        staff_id: str = "",
    ) -> Corrected:
        """Raises core.errors.CorrectionError."""
        ...

    # staff at work (the workbench): each raises core.errors.StatusError with a reason for staff

    async def set_status(
        self, ticket_id: int, status: str, note: str = "", *, by_id: str = "", by_name: str = ""
    ) -> bool:
        """Close or reopen the ticket through the ticket backend; the groups are told. False: it had that
        status already."""
        ...

    def split_report(self, report_id: int, *, by_id: str = "", by_name: str = "") -> int:
        """A report merged into a ticket it does not belong to becomes its own ticket; the new number."""
        ...

    def note(
        self, ticket_id: int, text: str, *, kind: str = "note", by_id: str = "", by_name: str = ""
    ) -> None:
        """A line of the ticket's history (`note`: staff only; `reroute`)."""
        ...

    def tell(
        self,
        key: str,
        *,
        group: str,
        channel: str,
        text: str,
        mentions: Sequence[str] = (),
        kind: str = "answer",
        ticket_id: int | None = None,
    ) -> bool:
        """Owe a message to a group or a private chat, sent once through the Sender and kept until sent (also
        for what is about no ticket: a gap's answer, a sign-in link). False: one with this key was owed before."""
        ...

    # satisfaction, as 12345 asks it (tickets/satisfaction.py)

    def surveyed(self, group: str, sender: str, text: str) -> bool:
        """Whether `text` answers a satisfaction question this person was asked here (满意 / 基本满意 / 不满意,
        or the reason after a bare 不满意)."""
        ...

    async def answer_survey(self, group: str, sender: str, text: str) -> str | None:
        """Record the answer; what to tell the person (None: nothing). 不满意 with a reason reopens the ticket and
        tells its grid worker."""
        ...

    async def start(self) -> None: ...

    async def tick(self) -> None: ...

    async def stop(self) -> None: ...

    def health(self) -> JSON: ...


@dataclass(frozen=True, slots=True)
class Photo:
    data: bytes
    mime: str = "image/jpeg"
    name: str = "photo.jpg"


@dataclass(frozen=True, slots=True)
class Created:
    service_request_id: str | None
    token: str | None


@dataclass(frozen=True, slots=True)
class RemoteRequest:
    """A ticket as the ticket backend reports it."""

    service_request_id: str
    status: str
    status_notes: str = ""
    agency_responsible: str = ""
    service_code: str = ""
    description: str = ""
    updated_datetime: str = ""
    media_url: str = ""

    @classmethod
    def from_doc(cls, d: Mapping[str, object]) -> RemoteRequest:
        """From a GeoReport v2 service request document (a poll's answer or a webhook's body)."""
        return cls(
            service_request_id=str(d.get("service_request_id") or ""),
            status=str(d.get("status") or "open").lower(),
            status_notes=str(d.get("status_notes") or ""),
            agency_responsible=str(d.get("agency_responsible") or ""),
            service_code=str(d.get("service_code") or ""),
            description=str(d.get("description") or ""),
            updated_datetime=str(d.get("updated_datetime") or ""),
            media_url=str(d.get("media_url") or ""),
        )


class TicketBackendError(Exception):
    """A call to the ticket backend failed. `transient` errors (network, timeouts, 5xx, 429) are retried."""

    def __init__(self, message: str, *, status: int | None = None, transient: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient


class TicketBackend(Protocol):
    """The client side of a ticket system (`tickets.backend` in the config; `open311` is shipped)."""

    base_url: str

    async def create(
        self,
        *,
        service_code: str,
        description: str,
        address: str = "",
        lat: float | None = None,
        lon: float | None = None,
        attributes: dict[str, str] | None = None,
        photo: Photo | None = None,
        idempotency_key: str = "",
        first_name: str = "",
        account_id: str = "",
        phone: str = "",
    ) -> Created: ...

    async def get(self, service_request_id: str) -> RemoteRequest | None: ...

    async def get_many(self, ids: list[str]) -> list[RemoteRequest]: ...

    async def token(self, token: str) -> str | None:
        """The request id a token became, or None while the server has not made one."""
        ...

    async def update_status(
        self, service_request_id: str, status: str, notes: str = "", agency: str = ""
    ) -> RemoteRequest:
        """A staff member's status change (the workbench), where the system takes one from us (the built-in
        backend's `status.json`); one that does not raises TicketBackendError(transient=False)."""
        ...

    async def aclose(self) -> None: ...


# --- notices ------------------------------------------------------------------------------------------------


NOTICE_STATUS = {
    "queued": "排队中",
    "sending": "发送中",
    "sent": "已送达",
    "failed": "发送失败",
    "unknown": "状态不明",
    "cancelled": "已取消",
    "scheduled": "待发送",
    "done": "已完成",
}
"""The states of a notice and of its deliveries, as staff read them."""


class NoticeDraft(Protocol):
    """A notice before it is confirmed."""

    @property
    def text(self) -> str: ...

    @property
    def targets(self) -> list[str]: ...

    @property
    def groups(self) -> Sequence[GroupInfo]: ...

    @property
    def group_count(self) -> int: ...

    @property
    def ask_ack(self) -> bool: ...

    @property
    def signature(self) -> str: ...

    @property
    def rendered(self) -> str:
        """What residents read (signature and 收到请回复1 included)."""
        ...

    @property
    def repeats(self) -> bool: ...

    @property
    def immediate(self) -> bool: ...

    @property
    def when(self) -> str:
        """The schedule as staff wrote it (明天8:00, 每周一 8:00, 立即发送)."""
        ...

    def preview(self, timeout_minutes: int = 5) -> str: ...

    def to_data(self) -> dict[str, object]:
        """The draft as JSON data, kept in the staff member's conversation while they confirm it."""
        ...


class NoticeDelivery(Protocol):
    """A notice's delivery to one group."""

    group_name: str
    status: str  # queued | sending | sent | failed | unknown | cancelled
    sent_at: datetime | None
    error: str
    acks: int | None  # residents who replied 1; None when the notice did not ask


class NoticeRecord(Protocol):
    """A notice and its deliveries."""

    id: int
    text: str
    rendered: str
    targets: list[str]
    group_count: int
    status: str  # scheduled | sending | done | cancelled
    schedule: str
    next_run_at: datetime | None
    ask_ack: bool
    created_by: str
    created_by_name: str
    created_at: datetime

    @property
    def counts(self) -> dict[str, int]: ...

    @property
    def acks(self) -> int | None: ...

    def latest_run(self) -> Sequence[NoticeDelivery]: ...

    def summary(self, tz: tzinfo) -> str: ...


class Notices(Protocol):
    """Staff notices, delivered durably to each group once (bot/notices.py)."""

    @property
    def tz(self) -> tzinfo:
        """The zone notice times are shown in."""
        ...

    def draft_from_command(self, text: str, staff: StaffMember) -> NoticeDraft:
        """Raises core.errors.NoticeError."""
        ...

    def draft(
        self,
        targets: list[str],
        text: str,
        *,
        schedule: str = "",
        ask_ack: bool = False,
        staff: StaffMember | None = None,
        signature: str = "",
    ) -> NoticeDraft:
        """A form's notice (targets as words: 全部, a community, a grid, a tag, a group); raises NoticeError."""
        ...

    def restore(self, data: Mapping[str, object]) -> NoticeDraft:
        """The draft again from its `to_data()` (after a restart too)."""
        ...

    def create(
        self,
        draft: NoticeDraft,
        *,
        created_by: str = "",
        created_by_name: str = "",
        source: str = "chat",
        origin_channel: str = "",
        origin_group: str = "",
    ) -> int: ...

    def kick(self) -> None:
        """Start delivering now."""
        ...

    def report(self, notice_id: int) -> NoticeRecord | None: ...

    def recent(self, limit: int = 20, created_by: str = "") -> Sequence[NoticeRecord]: ...

    def cancel(self, notice_id: int) -> NoticeRecord: ...

    def resend(self, notice_id: int) -> int: ...


# --- the bundle ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Services:
    """What handlers and parts may use, wired once by bot/app.py; every field is a port, complete at
    construction."""

    config: CommunityConfig
    clock: Clock
    classifier: Classifier
    sender: Sender
    conversations: Conversations
    groups: Groups
    knowledge: Knowledge
    gaps: GapLog
    tickets: TicketDesk
    notices: Notices
    usages: tuple[str, ...] = ()  # every routed handler's `usage`, in `usage_rank` order: what 帮助 lists
