"""The router: from one normalised Message to the replies, by the group's policy.

Order (see DESIGN.md): drop the bot's own and duplicate messages; record the message (before anything is
acknowledged); decide whether the bot is addressed (a quote of its own message counts); continue an open
conversation; let a handler claim an answer to something the bot said (a quoted ticket acknowledgement) or an
unaddressed 帮助; classify; apply the group's policy (when to speak, people talking to each other, quiet hours,
rate limits, the same question asked again); dispatch to the first handler that takes it; queue the replies on
the throttled sender. The conversation rules are in docs/conversation.md.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from bot.config import Config
from bot.ratelimit import SlidingWindow
from core.community import GroupPolicy
from core.handler import Context, Handler
from core.intent import Classification
from core.message import Message, Reply
from core.ports import Services
from pii import mask_pii
from store import Store
from store.models import AnsweredQuestion, Delivery, InboundMessage

log = logging.getLogger(__name__)

STORED_TEXT_LIMIT = 20_000  # longer texts are cut in the store; the policy limit refuses them anyway
AUTO_CONFIDENCE = 0.6  # an unaddressed message is taken as a question or report for the bot above this
CONTENT_DEDUP_SECONDS = 30  # the same text from the same person within this is a resend, not a new message

TEXT_TOO_LONG = "消息太长了（{n}字），我一次最多能看{limit}字。请把问题或要反映的情况精简一下再发，谢谢！"
TOO_FAST = "您发得有点快，我先处理前面的消息，请稍等一分钟再问。"
UNHANDLED = "抱歉，这个我暂时帮不上忙。可以问我社区政策和服务（如“助老食堂几点开饭”），或直接说要反映的问题（如“3号楼门口井盖松了”）。发“帮助”查看我能做什么。"
HANDLER_FAILED = "抱歉，处理您的消息时出了点问题，已经记录下来，请稍后再试或联系网格员。"
NOT_PERMITTED = "抱歉，这个操作只有社区工作人员可以使用。如需发布通知，请联系网格员。"
REPEATED = "这个问题{ago}已经回答过{who}，请往上翻看那条回复；如果还有不清楚的地方，可以换个说法再问我。"

_PUNCT = re.compile(r"[\s\W_]+", re.UNICODE)
# "@小陈 ..." typed or rendered by the platform (WeChat puts U+2005 after a mention)
_TYPED_MENTION = re.compile(r"(?:^|[\s\u2005])@([^\s\u2005@]{1,32})")
# filing on purpose: "报修 …", "/报修 …", "登记一下：…", said to the bot. The separator keeps "报修电话是多少" a question.
_FILING = re.compile(r"^[/／]?\s*(?:报修|投诉|登记一下|帮我登记|帮忙登记|请登记|登记)\s*[:：,，\s]\s*(?=\S)")
QUOTE_LOOKBACK = timedelta(days=7)  # a quote of something the bot said longer ago than this is not recognised
QUOTE_PREFIX = 24  # characters of a quote compared with what the bot said (platforms cut long quotes)
_QUOTE_NOISE = re.compile(r"^(?:@[^\s\u2005]{1,32}[\s\u2005]+)+|[\s\u2005]+|(?:…|\.\.\.)+$")


def _quote_key(text: str) -> str:
    """A quote and the bot's message compared alike: without the @mentions the platform put before the text,
    spaces and a trailing ellipsis, personal data masked (a platform quotes what it showed)."""
    return _QUOTE_NOISE.sub("", mask_pii(unicodedata.normalize("NFKC", text).strip()))


def question_key(text: str) -> str:
    """Two wordings that differ only in punctuation, spaces, width or particles share a key."""
    t = unicodedata.normalize("NFKC", text).lower()
    t = _PUNCT.sub("", t)
    t = re.sub(r"(请问|问一下|问下|吗|呢|呀|啊|吧|哈)", "", t)
    return hashlib.sha1(t.encode()).hexdigest()[:16]


@dataclass
class Outcome:
    """What the router did with a message, for tests, the demo and the logs."""

    status: str  # handled | ignored | failed
    reason: str = ""
    handler: str = ""
    replies: tuple[Reply, ...] = ()
    classification: Classification | None = None


class Router:
    def __init__(self, services: Services, config: Config, store: Store, handlers: list[Handler]) -> None:
        self.services = services
        self.config = config
        self.store = store
        self.handlers = handlers
        self._by_name = {h.name: h for h in handlers}
        self._user_window: dict[int, SlidingWindow] = {}
        self._group_window: dict[int, SlidingWindow] = {}
        self._warned_fast: dict[tuple[str, str], datetime] = {}
        self._recent_texts: dict[tuple[str, str, str], datetime] = {}
        self.accounts: set[str] = {config.bot.account}

    def handler(self, name: str) -> Handler | None:
        return self._by_name.get(name)

    # --- the pipeline -----------------------------------------------------------------------------

    def admit(self, msg: Message) -> Message | None:
        """Record a message as it arrives, before its channel acknowledges it (the simulator's 202): returns the
        message as recorded (its id may be derived, see `_record`), or None for the bot's own messages and for
        redeliveries. A message admitted and then cut off by a crash is taken by the desk's recovery."""
        if msg.from_bot or msg.sender in self.accounts:
            return None
        recorded_as = self._record(msg, self.services.clock.now())
        if recorded_as is None:
            return None
        return msg if recorded_as == msg.id else replace(msg, id=recorded_as)

    async def on_message(self, msg: Message, *, admitted: bool = False) -> Outcome:
        try:
            outcome = await self._route(msg, admitted)
        except Exception:
            log.exception("routing message %s from %s in %s failed", msg.id, msg.channel, msg.group)
            outcome = Outcome("failed", "router error")
        for r in outcome.replies:
            self.services.sender.submit(r if r.channel else r.with_channel(msg.channel))
        return outcome

    async def _route(self, msg: Message, admitted: bool = False) -> Outcome:
        svc = self.services
        now = svc.clock.now()
        if not admitted:
            if msg.from_bot or msg.sender in self.accounts:
                return Outcome("ignored", "own message")
            recorded = self.admit(msg)
            if recorded is None:  # the channel delivered this very message before
                return Outcome("ignored", "duplicate")
            msg = recorded
        if self._is_resend(msg, now):  # recorded first: what a channel acknowledged is in the store
            self._mark(msg, "ignored", "resend")
            return Outcome("ignored", "duplicate")
        if not msg.private:
            svc.groups.seen(msg.group, msg.channel)

        policy = self.config.policy_for(msg.group)
        addressed, text = self._addressed(msg, policy)
        if not addressed and msg.quoted and self._quotes_bot(msg, now):
            addressed = True  # a quoted reply (引用) to the bot's own message is said to the bot

        if len(msg.text) > policy.max_text_chars:
            self._mark(msg, "ignored", "text too long")
            if not addressed:
                return Outcome("ignored", "text too long")
            reply = self._reply(
                msg, TEXT_TOO_LONG.format(n=len(msg.text), limit=policy.max_text_chars), "error"
            )
            return Outcome("ignored", "text too long", replies=(reply,))

        ctx = Context(
            message=msg,
            text=text,
            classification=Classification(intent="chitchat"),
            policy=policy,
            group=svc.config.group(msg.group),
            staff=svc.config.staff_member(msg.sender),
            services=svc,
            addressed=addressed,
        )

        for h in self.handlers:
            try:
                await h.observe(ctx)
            except Exception:
                log.exception("handler %s failed observing message %s", h.name, msg.id)

        conv = svc.conversations.get(msg.group, msg.sender, now)
        if conv is not None:
            ctx.classification = svc.classifier.classify(text)
            handler = self.handler(conv.handler)
            replies = await handler.followup(ctx, conv) if handler else None
            if replies is not None:
                self._mark(msg, "handled", f"followup:{conv.handler}", ctx.intent)
                return Outcome("handled", "followup", conv.handler, tuple(replies), ctx.classification)

        claimed = self._claimed(ctx)
        if (
            claimed is not None
        ):  # an answer to something the bot said, kept in the store (a quoted ticket, a survey)
            return await self._dispatch(ctx, now, claimed)

        filing = (ctx.addressed or ctx.text.startswith(("/", "／"))) and _FILING.match(ctx.text)
        if filing:  # "/报修 …" is said to the bot as much as "@家门口助手 报修 …"
            ctx.text, ctx.addressed = ctx.text.lstrip("/／").strip(), True
        ctx.classification = (
            svc.classifier.classify(ctx.text)
            if ctx.text or msg.attachments or msg.location
            else ctx.classification
        )
        if filing and not ctx.classification.needs_ticket:
            # the person says it is a report ("@家门口助手 登记一下：…"): filed, whatever the model thinks
            ctx.classification = replace(
                ctx.classification, intent="complaint", needs_ticket=True, confidence=1.0
            )
        if ctx.text.startswith(("/", "／")) and ctx.intent != "command":
            ctx.classification = Classification(intent="command")

        speak, why = self._should_speak(ctx, policy, now)
        if not speak:
            self._mark(msg, "ignored", why, ctx.intent)
            return Outcome("ignored", why, classification=ctx.classification)

        # a report is filed however fast its sender or group talks: the limits protect answering, and the
        # acknowledgements go through the sender's own throttle anyway
        limited = self._rate_limited(msg, policy, now, exempt=ctx.classification.needs_ticket)
        if limited is not None:
            self._mark(msg, "ignored", "rate limited", ctx.intent)
            return Outcome("ignored", "rate limited", replies=limited, classification=ctx.classification)

        if ctx.intent == "question" and not msg.private:
            pointer = self._repeated(ctx, policy, now)
            if pointer is not None:
                self._mark(msg, "handled", "repeated question", ctx.intent)
                return Outcome("handled", "repeated question", "router", (pointer,), ctx.classification)

        return await self._dispatch(ctx, now)

    def _claimed(self, ctx: Context) -> Handler | None:
        """The handler that claims this message before the policy and the classifier (`Handler.claims`)."""
        for h in self.handlers:
            try:
                if h.claims(ctx):
                    return h
            except Exception:  # a broken claim must not stop the message from being routed
                log.exception("handler %s failed claiming message %s", h.name, ctx.message.id)
        return None

    async def _dispatch(self, ctx: Context, now: datetime, claimed: Handler | None = None) -> Outcome:
        msg = ctx.message
        for h in (claimed,) if claimed else self.handlers:
            if claimed is None and not h.check(ctx):
                continue
            if not h.permitted(ctx):
                log.warning("refused %s for sender %s in %s: no staff role", h.name, msg.sender, msg.group)
                self._mark(msg, "handled", f"refused:{h.name}", ctx.intent)
                return Outcome(
                    "handled",
                    "not permitted",
                    h.name,
                    (self._reply(msg, NOT_PERMITTED, "refusal"),),
                    ctx.classification,
                )
            return await self._run(h, ctx, now)
        self._mark(msg, "handled", "unhandled", ctx.intent)
        if not ctx.addressed:
            return Outcome("ignored", "no handler", classification=ctx.classification)
        return Outcome(
            "handled", "unhandled", "", (self._reply(msg, UNHANDLED, "refusal"),), ctx.classification
        )

    async def _run(self, h: Handler, ctx: Context, now: datetime) -> Outcome:
        msg = ctx.message
        try:
            replies = await h.handle(ctx)
        except Exception:
            log.exception("handler %s failed on message %s", h.name, msg.id)
            self._mark(msg, "failed", f"handler error:{h.name}", ctx.intent)
            return Outcome(
                "failed",
                "handler error",
                h.name,
                (self._reply(msg, HANDLER_FAILED, "error"),),
                ctx.classification,
            )
        if ctx.quiet_until is not None:
            # quiet hours: the report is filed; what it owes the group waits in the store for the morning
            self._mark(msg, "handled", f"{h.name}:quiet hours", ctx.intent)
            if replies:
                log.info("quiet hours in %s: %d reply(ies) to %s held back", msg.group, len(replies), msg.id)
            return Outcome("handled", "quiet hours", h.name, (), ctx.classification)
        self._mark(msg, "handled", h.name, ctx.intent)
        if ctx.intent == "question" and not msg.private and ctx.answered:
            self._remember_answer(ctx, now)
        return Outcome("handled", "", h.name, tuple(replies), ctx.classification)

    # --- policies ----------------------------------------------------------------------------------

    @property
    def _names(self) -> tuple[str, ...]:
        """The bot's name and aliases: what people call it when they @ it or quote it."""
        return (self.config.bot.name, *self.config.bot.aliases)

    def _addressed(self, msg: Message, policy: GroupPolicy) -> tuple[bool, str]:
        text = msg.text.strip()
        names = self._names
        for n in names:  # a typed "@家门口助手" counts as a mention even if the channel did not mark it
            if text.startswith("@" + n):
                return True, text[len(n) + 1 :].strip(" ,，:：")
        if msg.mentions_bot or msg.private:
            return True, text
        if policy.respond in ("trigger", "auto"):
            for t in sorted(policy.triggers, key=len, reverse=True):
                if text.startswith(t):
                    rest = text[len(t) :].strip(" ,，:：")
                    # 请问/报修/投诉 carry meaning: keep them in the text the classifier sees
                    return True, rest if t in names else text
        return False, text

    def _should_speak(self, ctx: Context, policy: GroupPolicy, now: datetime) -> tuple[bool, str]:
        """Whether the bot takes the message. A clear report is always taken, whatever the group's policy:
        the policy decides when the bot talks, never whether a report is filed (quiet hours only hold back the
        acknowledgement until morning, see `Context.quiet_until`)."""
        msg, c = ctx.message, ctx.classification
        urgent = c.urgency == "urgent"
        direct = msg.mentions_bot or msg.private
        quiet_until = None if direct or urgent else self.config.quiet_until(msg.group, now)
        aside = self._aside(ctx)
        # people talking to each other: only a resident's clear report is taken (one that names a problem)
        reportable = not aside or (ctx.staff is None and c.names_problem)
        if c.needs_ticket and (ctx.addressed or (reportable and (c.confidence >= AUTO_CONFIDENCE or urgent))):
            ctx.quiet_until = quiet_until
            return True, ""
        if quiet_until is not None:
            return False, "quiet hours"
        if ctx.addressed:
            return True, ""
        if ctx.intent == "command" and ctx.text.startswith(("/", "／")):
            return True, ""
        if aside:
            return False, "staff talking" if ctx.staff is not None else "talking to others"
        if (
            policy.respond == "auto"
            and c.intent in ("question", "complaint", "hazard")
            and c.confidence >= AUTO_CONFIDENCE
        ):
            return True, ""
        if urgent:
            return True, ""
        return False, "not addressed"

    def _aside(self, ctx: Context) -> bool:
        """An unaddressed message from a staff member, or one that @-mentions someone other than the bot: people
        talking to each other, not to the bot (docs/conversation.md). A staff member's words are a report only
        when said to the bot ("报修 …", "@家门口助手 登记一下：…", a slash command); a resident's only when they
        clearly are one (they name a problem), so a report that mentions a neighbour is still filed."""
        if ctx.addressed:
            return False
        return ctx.staff is not None or self._mentions_others(ctx.message)

    def _mentions_others(self, msg: Message) -> bool:
        if any(m not in self.accounts for m in msg.mentions):
            return True
        return any(not n.startswith(self._names) for n in _TYPED_MENTION.findall(msg.text))

    def _quotes_bot(self, msg: Message, now: datetime) -> bool:
        """Whether the quoted text is something the bot said in this group lately (its `deliveries`)."""
        quoted = msg.quoted.strip()
        for n in self._names:  # "家门口助手：…" where the channel kept it
            if quoted.startswith((n + "：", n + ":")):
                quoted = quoted[len(n) + 1 :]
        quoted = _quote_key(quoted)
        if len(quoted) < 4:
            return False
        with self.store.session() as s:
            said = s.scalars(
                select(Delivery.text)
                .where(Delivery.group_id == msg.group[:128], Delivery.created_at >= now - QUOTE_LOOKBACK)
                .order_by(Delivery.id.desc())
                .limit(500)
            ).all()
        prefix = quoted[:QUOTE_PREFIX]
        return any(_quote_key(t).startswith(prefix) for t in said)

    def _window(self, cache: dict[int, SlidingWindow], limit: int) -> SlidingWindow:
        if limit not in cache:
            cache[limit] = SlidingWindow(limit, timedelta(minutes=1))
        return cache[limit]

    def _rate_limited(
        self, msg: Message, policy: GroupPolicy, now: datetime, *, exempt: bool = False
    ) -> tuple[Reply, ...] | None:
        users = self._window(self._user_window, policy.user_per_minute)
        groups = self._window(self._group_window, policy.group_per_minute)
        key = (msg.group, msg.sender)
        if not exempt and (not groups.allowed(msg.group, now) or not users.allowed(key, now)):
            last = self._warned_fast.get(key)
            if last is None or now - last > timedelta(minutes=1):  # say it once a minute, not every time
                self._warned_fast[key] = now
                return (self._reply(msg, TOO_FAST, "refusal"),)
            return ()
        users.hit(key, now)
        groups.hit(msg.group, now)
        return None

    def _repeated(self, ctx: Context, policy: GroupPolicy, now: datetime) -> Reply | None:
        if policy.repeat_window_minutes <= 0:
            return None
        key = question_key(ctx.text)
        since = now - timedelta(minutes=policy.repeat_window_minutes)
        with self.store.session() as s:
            prev = s.scalars(
                select(AnsweredQuestion)
                .where(
                    AnsweredQuestion.group_id == ctx.message.group,
                    AnsweredQuestion.question_key == key,
                    AnsweredQuestion.answered_at >= since,
                )
                .order_by(AnsweredQuestion.answered_at.desc())
            ).first()
        if prev is None:
            return None
        minutes = int((now - prev.answered_at).total_seconds() // 60)
        ago = "刚才" if minutes < 1 else f"{minutes}分钟前"
        who = f"（回复给{prev.asker_name}）" if prev.asker_name else ""
        return self._reply(ctx.message, REPEATED.format(ago=ago, who=who), "pointer")

    def _remember_answer(self, ctx: Context, now: datetime) -> None:
        with self.store.session() as s:
            s.add(
                AnsweredQuestion(
                    group_id=ctx.message.group,
                    question_key=question_key(ctx.text),
                    question=mask_pii(ctx.text)[:500],
                    asker_name=ctx.message.display_sender,
                    answered_at=now,
                )
            )

    # --- records -----------------------------------------------------------------------------------

    def _is_resend(self, msg: Message, now: datetime) -> bool:
        if not msg.text:
            return False
        key = (msg.group, msg.sender, msg.text)
        last = self._recent_texts.get(key)
        self._recent_texts[key] = now
        if len(self._recent_texts) > 10_000:  # keep memory bounded
            cutoff = now - timedelta(seconds=CONTENT_DEDUP_SECONDS)
            self._recent_texts = {k: v for k, v in self._recent_texts.items() if v >= cutoff}
        return last is not None and (now - last).total_seconds() < CONTENT_DEDUP_SECONDS

    def _record(self, msg: Message, now: datetime) -> str | None:
        """Write the message before anything else happens; returns the id it is stored under, or None when the
        channel delivered this same message before. A reused id on a different message (a channel that numbered
        its messages again after a restart) is never taken for a duplicate: it is stored under a derived id."""
        mid = msg.id[:120]
        for n in range(1, 100):
            candidate = mid if n == 1 else f"{mid}#{n}"
            try:
                with self.store.session() as s:
                    s.add(
                        InboundMessage(
                            channel=msg.channel,
                            message_id=candidate,
                            group_id=msg.group[:128],
                            sender=msg.sender[:128],
                            sender_name=msg.sender_name[:128],
                            text=self._stored_text(msg),
                            received_at=now,
                        )
                    )
                if n > 1:
                    log.warning(
                        "message id %s from %s reused for a different message; recorded as %s",
                        msg.id,
                        msg.channel,
                        candidate,
                    )
                return candidate
            except IntegrityError:
                if self._same_message(msg, candidate):
                    return None
        raise RuntimeError(f"message id {msg.id} from {msg.channel} reused 100 times")

    def _same_message(self, msg: Message, stored_id: str) -> bool:
        with self.store.session() as s:
            row = s.scalars(
                select(InboundMessage).where(
                    InboundMessage.channel == msg.channel, InboundMessage.message_id == stored_id
                )
            ).first()
        return row is not None and (row.group_id, row.sender, row.text) == (
            msg.group[:128],
            msg.sender[:128],
            self._stored_text(msg),
        )

    @staticmethod
    def _stored_text(msg: Message) -> str:
        """The text as `inbound_messages` keeps it, personal data masked (one place, so a redelivery compares
        equal); the handlers get the message itself."""
        return mask_pii(msg.text[:STORED_TEXT_LIMIT])

    def _mark(self, msg: Message, status: str, reason: str, intent: str = "") -> None:
        with self.store.session() as s:
            s.execute(
                update(InboundMessage)
                .where(InboundMessage.channel == msg.channel, InboundMessage.message_id == msg.id[:128])
                .values(status=status, reason=reason[:64], intent=intent)
            )

    @staticmethod
    def _reply(msg: Message, text: str, kind: str) -> Reply:
        return Reply(
            group=msg.group,
            text=text,
            mentions=() if msg.private else (msg.sender,),
            in_reply_to=msg.id,
            channel=msg.channel,
            kind=kind,
        )
