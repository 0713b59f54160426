"""The tables: accounts (users, their API keys, login sessions, daily usage), conversations, their
messages, feedback on messages, user templates, and responses of the OpenAI Responses API kept for
`previous_response_id`, and knowledge bases (documents, chunks; vectors in `kb_vectors`); the
dashboard's metric history (`metric_slices`) and studio runs' metadata and ratings.

Every resource a person makes has an owner (`user_id`); NULL is the single-user room of a server
without accounts (and what the first admin inherits, see accounts/users.py). The schema is made
and upgraded by the Alembic migrations in `migrations/`, never by `create_all`.

Normalized on purpose (one row per message, not one JSON blob per chat): messages can be searched,
counted, rated and exported one by one, and a crash mid-reply loses at most that reply's tail.
Types are portable (SQLite and PostgreSQL); SQLite's full-text index is added in `search.py`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


# sqlite_autoincrement: ids are never reused after a delete (a client may still hold an old id).
_NO_REUSE = {"sqlite_autoincrement": True}


class User(Base):
    __tablename__ = "users"
    __table_args__ = _NO_REUSE

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)  # argon2id, or "" (no password: API keys only)
    role: Mapped[str] = mapped_column(String(16), default="user")  # admin | user
    rate_limit: Mapped[str | None] = mapped_column(String(32), nullable=True)  # overrides --rate-limit
    token_quota: Mapped[str | None] = mapped_column(String(32), nullable=True)  # overrides --token-quota
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class APIKey(Base):
    """A user's key for the OpenAI routes: only its SHA-256 is stored (keys are 32 random bytes, so a
    fast hash is safe, and every API request can check one)."""

    __tablename__ = "api_keys"
    __table_args__ = _NO_REUSE

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    prefix: Mapped[str] = mapped_column(String(16))  # shown in lists: "aigc-ab12cd"
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class LoginSession(Base):
    """A web login: the cookie holds a random token, the table its SHA-256."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class UsageDay(Base):
    """Requests and tokens per user, per key (key_id 0: the web app's session), per UTC day."""

    __tablename__ = "usage"
    __table_args__ = (UniqueConstraint("user_id", "key_id", "day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key_id: Mapped[int] = mapped_column(Integer, default=0)
    day: Mapped[str] = mapped_column(String(10))  # YYYY-MM-DD
    requests: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)


def _owner() -> Mapped[int | None]:
    return mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True)


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = _NO_REUSE

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = _owner()
    title: Mapped[str] = mapped_column(String(200), default="")
    system_prompt: Mapped[str] = mapped_column(Text, default="")
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # temperature, top_p, max_tokens, seed
    knowledge_base_ids: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)  # grounding
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    # A support site's visitor conversation (apps/support): owned by the site's owner, kept out of
    # their own chat list; the visitor proves it is theirs with a token whose SHA-256 is here.
    site_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    visitor_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The staff queue: None (the assistant answers) | waiting | active (a person answers) | resolved
    handoff: Mapped[str | None] = mapped_column(String(16), nullable=True, index=True)
    handoff_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)  # asked | no_source | assistant
    handoff_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    agent_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the staff member answering
    # Messages form a tree (edits and regenerations add siblings). The branch on screen, and so
    # the model's context, starts at this first message and follows each one's `active_child_id`.
    # use_alter: conversations and messages refer to each other.
    active_root_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL", use_alter=True, name="fk_conversations_active_root_id_messages"),
        nullable=True)

    # passive_deletes: the database's ON DELETE CASCADE removes the rows (no per-message SELECT).
    messages: Mapped[list[Message]] = relationship(
        back_populates="conversation", order_by="Message.position", cascade="all, delete-orphan",
        passive_deletes=True, foreign_keys="Message.conversation_id")


class Message(Base):
    __tablename__ = "messages"
    # The unique constraint is also the index that loads a conversation in order.
    __table_args__ = (UniqueConstraint("conversation_id", "position"), _NO_REUSE)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    # Order of creation within the conversation (0..n-1 over every branch). `parent_id` names the
    # message this one answers or follows (None for a first message); siblings share a parent.
    position: Mapped[int] = mapped_column(Integer)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"), nullable=True,
                                                  index=True)
    # The child the branch on screen continues with (None: the newest), so a branch switched
    # away from comes back as it was left.
    active_child_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL", name="fk_messages_active_child_id_messages"), nullable=True)
    role: Mapped[str] = mapped_column(String(16))  # user | assistant | system
    content: Mapped[str] = mapped_column(Text, default="")
    # assistant: a reasoning model's thinking before `content` (shown collapsed, not sent back to it)
    reasoning: Mapped[str | None] = mapped_column(Text, nullable=True)
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the content's own token count
    prompt_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)  # assistant: prompt it answered
    completion_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # assistant: stop | length | stopped (the user stopped it or left) | error
    finish_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)
    sources: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)  # assistant: what it cited
    author: Mapped[str | None] = mapped_column(String(64), nullable=True)  # assistant: a staff member's name
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    conversation: Mapped[Conversation] = relationship(back_populates="messages", foreign_keys=[conversation_id])
    feedback: Mapped[Feedback | None] = relationship(back_populates="message", cascade="all, delete-orphan",
                                                     passive_deletes=True, uselist=False)


class Feedback(Base):
    """👍/👎 on one message (one per message; a new rating replaces the old one)."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), unique=True)
    rating: Mapped[int] = mapped_column(Integer)  # +1 or -1
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    message: Mapped[Message] = relationship(back_populates="feedback")


class UserTemplate(Base):
    """A studio template a user made: `spec` holds the metadata and fields, `body` the jinja2 prompt."""

    __tablename__ = "templates"
    __table_args__ = _NO_REUSE

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = _owner()
    version: Mapped[int] = mapped_column(Integer, default=1)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)



class StoredResponse(Base):
    """A /v1/responses result kept for `previous_response_id` and GET /v1/responses/{id}: `body` is the
    response object, `conversation` the chat messages it continued plus its own output."""

    __tablename__ = "responses"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int | None] = _owner()
    model: Mapped[str] = mapped_column(String(200))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    conversation: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class KnowledgeBase(Base):
    """A named set of documents its owner's conversations can be grounded in."""

    __tablename__ = "knowledge_bases"
    __table_args__ = _NO_REUSE

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = _owner()
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    embedding_model: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class KBDocument(Base):
    """An uploaded file: its extracted text (what citations point into) and its indexing state."""

    __tablename__ = "kb_documents"
    __table_args__ = _NO_REUSE

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kb_id: Mapped[int] = mapped_column(ForeignKey("knowledge_bases.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))  # text | markdown | html | pdf | docx
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued | indexed | failed
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    text: Mapped[str] = mapped_column(Text, default="")
    # The uploaded file as it came (a re-index parses it again); None for documents stored before.
    original: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True, deferred=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    indexed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class KBChunk(Base):
    """A retrieval unit: its text, heading path, span in the document, and its BM25 tokens. Its
    vector lives in `kb_vectors` (the database's vector extension; see knowledge/vectors.py)."""

    __tablename__ = "kb_chunks"
    __table_args__ = _NO_REUSE

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("kb_documents.id", ondelete="CASCADE"), index=True)
    kb_id: Mapped[int] = mapped_column(ForeignKey("knowledge_bases.id", ondelete="CASCADE"), index=True)
    ordinal: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    heading: Mapped[str] = mapped_column(Text, default="")
    start: Mapped[int] = mapped_column(Integer)
    end: Mapped[int] = mapped_column(Integer)
    tokens: Mapped[str] = mapped_column(Text, default="")  # BM25 terms, space-separated


class SupportSite(Base):
    """Customer service on a shop's pages: a knowledge-base assistant with a persona and rules,
    reached through the embeddable widget with a public key, from the listed origins only."""

    __tablename__ = "support_sites"
    __table_args__ = _NO_REUSE

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = _owner()
    name: Mapped[str] = mapped_column(String(200))
    public_key: Mapped[str] = mapped_column(String(64), unique=True)  # in the page's <script> tag
    origins: Mapped[list[str]] = mapped_column(JSON, default=list)  # https://shop.example, ...
    persona: Mapped[str] = mapped_column(Text, default="")
    rules: Mapped[str] = mapped_column(Text, default="")
    greeting: Mapped[str] = mapped_column(Text, default="")
    language: Mapped[str] = mapped_column(String(8), default="auto")  # auto | zh | en (the widget's)
    knowledge_base_ids: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    handoff_on_no_source: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModerationEvent(Base):
    """A flagged text (server/moderation_guard.py): where it was, what it was flagged for, what the
    policy did; the text itself only when the policy keeps it."""

    __tablename__ = "moderation_events"
    __table_args__ = _NO_REUSE

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    source: Mapped[str] = mapped_column(String(16))  # input | output | api
    model: Mapped[str] = mapped_column(String(200), default="")
    action: Mapped[str] = mapped_column(String(16))  # log | warn | block
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    scores: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)


class ArenaBattle(Base):
    """One prompt answered by two models (apps/arena): side by side, or blind until the vote."""

    __tablename__ = "arena_battles"
    __table_args__ = _NO_REUSE

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = _owner()
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    blind: Mapped[bool] = mapped_column(Boolean, default=False)  # names hidden until the vote
    messages: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # the prompt conversation
    model_a: Mapped[str] = mapped_column(String(200))
    model_b: Mapped[str] = mapped_column(String(200))
    reply_a: Mapped[str] = mapped_column(Text, default="")
    reply_b: Mapped[str] = mapped_column(Text, default="")
    finish_a: Mapped[str | None] = mapped_column(String(32), nullable=True)
    finish_b: Mapped[str | None] = mapped_column(String(32), nullable=True)
    winner: Mapped[str | None] = mapped_column(String(16), nullable=True)  # a | b | tie | both_bad
    voted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, index=True)


class EvalRun(Base):
    """One run of an eval set on a model (apps/evals): what ran, how far it got, its pass rate.
    Runs are kept per model over time, so a drop shows; each item's output is an `EvalResult`."""

    __tablename__ = "eval_runs"
    __table_args__ = _NO_REUSE

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    set_name: Mapped[str] = mapped_column(String(100), index=True)
    set_digest: Mapped[str] = mapped_column(String(16), default="")  # of the set's file: which version ran
    template: Mapped[str | None] = mapped_column(String(64), nullable=True)  # a template set's template
    template_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    model: Mapped[str] = mapped_column(String(200), index=True)
    status: Mapped[str] = mapped_column(String(16), default="running")  # running | done | failed | interrupted
    source: Mapped[str] = mapped_column(String(16), default="cli")  # cli | server
    started_by: Mapped[str] = mapped_column(String(64), default="")  # a user's name ("" for the CLI)
    total: Mapped[int] = mapped_column(Integer, default=0)  # items to run
    done: Mapped[int] = mapped_column(Integer, default=0)
    passed: Mapped[int] = mapped_column(Integer, default=0)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # limit, gate, judges
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # per-check rates, once done
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class EvalResult(Base):
    """One item of an eval run: the prompt the model got, its output, and each check's verdict."""

    __tablename__ = "eval_results"
    # The unique constraint is also the index that loads a run's results in order.
    __table_args__ = (UniqueConstraint("run_id", "position"), _NO_REUSE)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("eval_runs.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    item_id: Mapped[str] = mapped_column(String(100))
    passed: Mapped[bool] = mapped_column(Boolean, default=False)
    prompt: Mapped[str] = mapped_column(Text, default="")
    output: Mapped[str] = mapped_column(Text, default="")
    checks: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # [{name, passed, score, detail, required}]
    finish_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class MetricSlice(Base):
    """Ten seconds of one model's requests (server/history.py): counts, sums and latency sketches
    (`*_buckets`: {bucket index: count}), and the engine's gauge maxima. The dashboard's history."""

    __tablename__ = "metric_slices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    start_ms: Mapped[int] = mapped_column(BigInteger, index=True)  # the slice's start, Unix time in ms
    model: Mapped[str] = mapped_column(String(200), default="")  # "" for requests no model answered
    requests: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    rate_limited: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    generation_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cached_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    ttft_count: Mapped[int] = mapped_column(Integer, default=0)
    ttft_sum: Mapped[float] = mapped_column(Float, default=0.0)
    ttft_buckets: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    itl_count: Mapped[int] = mapped_column(Integer, default=0)
    itl_sum: Mapped[float] = mapped_column(Float, default=0.0)
    itl_buckets: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    e2e_count: Mapped[int] = mapped_column(Integer, default=0)
    e2e_sum: Mapped[float] = mapped_column(Float, default=0.0)
    e2e_buckets: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    statuses: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)  # "200" -> requests
    error_types: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)  # "429 rate_limit_exceeded" -> requests
    running_max: Mapped[int] = mapped_column(Integer, default=0)
    waiting_max: Mapped[int] = mapped_column(Integer, default=0)
    kv_usage_max: Mapped[float] = mapped_column(Float, default=0.0)


class StudioRun(Base):
    """A studio run, without its text (neither prompt nor output is kept): which template, version
    and model, and the user's 👍/👎 on the output. The dashboard's feedback per template."""

    __tablename__ = "studio_runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the run's request id (x-request-id)
    user_id: Mapped[int | None] = _owner()
    template_id: Mapped[str] = mapped_column(String(100), index=True)
    template_version: Mapped[int] = mapped_column(Integer, default=1)
    model: Mapped[str] = mapped_column(String(200))
    rating: Mapped[int | None] = mapped_column(Integer, nullable=True)  # +1, -1, or None (not rated)
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    rated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
