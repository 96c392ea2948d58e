"""Settings: read once from an optional TOML file and the environment, then passed down.

Precedence, highest first: environment variables (``CLAUDEGATE_<FIELD>``, and ``ANTHROPIC_API_KEY``
unprefixed), the TOML file given to :meth:`Settings.load`, the defaults below. The file uses the field names
as top-level keys (``port = 9000``); an unknown key is an error, so a typo cannot be silently ignored.
``claudegate.example.toml`` at the repository's root lists every setting with its default.

The SQLite database and the usage spill file live in the data directory (``home``; see
:mod:`claudegate.home`) unless ``database_url`` or ``usage_spill_file`` name others.

Secrets are :class:`pydantic.SecretStr`, so they print as ``**********`` in a repr or a log line; the
database URL is left out of the repr because it may carry a password.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from claudegate.home import SPILL_FILE, default_home, sqlite_url

__all__ = [
    "ANTHROPIC_URL",
    "BotSettings",
    "ConfigError",
    "Settings",
    "UpstreamSettings",
    "normalize_database_url",
    "read_settings_file",
    "redact_database_url",
]

ANTHROPIC_URL = "https://api.anthropic.com"

LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LogFormat = Literal["text", "json"]

# Plain scheme names users type, mapped to the async driver SQLAlchemy needs.
_ASYNC_SCHEMES = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
}


Tier = Literal["1", "2", "3", "4", "unlimited"]


class UpstreamSettings(BaseModel):
    """One upstream in ``[[upstreams]]``: another key, region, or any Anthropic-compatible server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="A short name for metrics, usage records and logs.")
    url: str = Field(description="Base URL, e.g. https://api.anthropic.com.")
    api_key: SecretStr | None = Field(default=None, description="The upstream's API key.")
    api_key_env: str | None = Field(
        default=None,
        description="Name of an environment variable holding the key (keeps it out of the file).",
    )
    priority: int = Field(default=0, description="Lower is preferred by priority routing.")
    tier: Tier = Field(default="1", description="Anthropic usage tier assumed until replies' headers say.")
    requests_per_minute: int | None = Field(default=None, gt=0, description="Overrides the tier's limit.")
    input_tokens_per_minute: int | None = Field(default=None, gt=0, description="Overrides the tier's limit.")
    output_tokens_per_minute: int | None = Field(
        default=None, gt=0, description="Overrides the tier's limit."
    )
    max_concurrency: int = Field(default=64, gt=0, description="Calls in flight to this upstream at most.")

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {value!r}")
        return value.rstrip("/")


_BOT_SYSTEM_PROMPT = (
    "You answer questions from viewers in a live-stream chat. Reply in plain text, in one to three short "
    "sentences and at most {max_chars} characters: no markdown, no lists, no links, no greeting. If a "
    "question is unclear or inappropriate, say so in one sentence."
)


class BotSettings(BaseModel):
    """The chat bot (``[bot]`` in the settings file): ``claudegate bot twitch``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # -- chat connection ----------------------------------------------------------------------------------
    irc_host: str = Field(default="irc.chat.twitch.tv", description="IRC server of the chat.")
    irc_port: int = Field(default=6697, ge=1, le=65535, description="IRC server port.")
    irc_tls: bool = Field(default=True, description="Connect with TLS.")
    nick: str | None = Field(default=None, description="The bot account's login name (lower case).")
    token_env: str = Field(
        default="TWITCH_OAUTH_TOKEN",
        description="Environment variable holding the account's OAuth token (sent as PASS oauth:…).",
    )
    channel: str | None = Field(default=None, description="Channel to join when --channel is not given.")
    capabilities: list[str] = Field(
        default_factory=lambda: ["twitch.tv/tags", "twitch.tv/commands"],
        description="IRCv3 capabilities to request, each on its own (a refusal of one keeps the others).",
    )
    reconnect_min_s: float = Field(default=1.0, gt=0, description="First delay before reconnecting.")
    reconnect_max_s: float = Field(default=60.0, gt=0, description="Longest delay between reconnections.")
    ping_interval_s: float = Field(
        default=240.0, gt=0, description="Send a PING after this long without hearing from the server."
    )
    ping_timeout_s: float = Field(
        default=30.0, gt=0, description="Reconnect when a PING gets no reply within this long."
    )
    # -- questions ----------------------------------------------------------------------------------------
    command_prefix: str = Field(default="!ask", min_length=1, description="What starts a question.")
    cooldown_s: float = Field(default=60.0, ge=0, description="One question per viewer per this long.")
    min_question_chars: int = Field(default=5, ge=1, description="Shortest question accepted.")
    max_question_chars: int = Field(default=500, ge=1, description="Longest question accepted.")
    blocked_phrases: list[str] = Field(
        default_factory=list,
        description="Questions containing one of these words or phrases (any case) are refused.",
    )
    max_pending: int = Field(
        default=300, ge=1, description="Questions in progress at most; more are refused as busy at once."
    )
    # -- answers ------------------------------------------------------------------------------------------
    model: str = Field(
        default="claude-haiku-4-5", description="The model that answers (or a model policy: fast, deep…)."
    )
    system_prompt: str = Field(
        default=_BOT_SYSTEM_PROMPT,
        description="Instructions for brevity; {max_chars} becomes the answer's character budget.",
    )
    answer_max_chars: int = Field(
        default=450, ge=40, le=500, description="Longest answer line, @viewer included, in characters."
    )
    chars_per_token: float = Field(
        default=4.0, gt=0, description="Characters per output token, to turn the budget into max_tokens."
    )
    deadline_s: float = Field(
        default=10.0, gt=0, description="Deadline of each call: a question that cannot start by then is told."
    )
    answer_timeout_s: float = Field(
        default=20.0, gt=0, description="Give up on an answer (the 'too slow' message) after this long."
    )
    # -- telling viewers ----------------------------------------------------------------------------------
    notice_after_s: float = Field(
        default=1.75,
        ge=0,
        description="A viewer whose answer is predicted later than this after asking is told their wait.",
    )
    ack_after_s: float = Field(
        default=1.5,
        ge=0,
        description="Waits are told this long after a question at the earliest (answers due sooner, never).",
    )
    notice_batch_s: float = Field(
        default=0.25, ge=0, description="Apologies are gathered this long, to tell many viewers in one line."
    )
    moderator: bool | None = Field(
        default=None,
        description=(
            "Overrides the standing Twitch reports (USERSTATE badges): true paces at a moderator's 100 "
            "messages per 30 s, false at 20; unset follows Twitch, at 20 until it has said."
        ),
    )
    messages_per_window: int | None = Field(
        default=None, ge=1, description="Overrides the message limit the standing implies."
    )
    pack_answers_per_line: int = Field(
        default=6,
        ge=1,
        description="When lines are scarce, at most this many answers share a line (each shortened to fit).",
    )
    message_window_s: float = Field(default=30.0, gt=0, description="Twitch's message-limit window.")
    message_safety: float = Field(
        default=0.95,
        gt=0,
        le=1,
        description="Share of the message limit the bot uses (lockouts last 30 min).",
    )
    duplicate_window_s: float = Field(
        default=30.0, ge=0, description="The same text is never sent twice within this long."
    )
    shutdown_grace_s: float = Field(
        default=15.0, ge=0, description="At shutdown, how long accepted questions get to be answered."
    )
    # -- operations ---------------------------------------------------------------------------------------
    org: str = Field(default="twitch-bot", description="Organisation the bot's calls are accounted to.")
    metrics_host: str = Field(default="127.0.0.1", description="Address of /metrics and /health.")
    metrics_port: int | None = Field(
        default=9109, ge=0, le=65535, description="Port of /metrics and /health; unset disables them."
    )
    health_window_s: float = Field(default=60.0, gt=0, description="Error rate is measured over this long.")
    degraded_queue_use: float = Field(default=0.7, gt=0, description="Queue use from which health degrades.")
    unhealthy_queue_use: float = Field(
        default=0.95, gt=0, description="Queue use from which it is unhealthy."
    )
    degraded_error_rate: float = Field(
        default=0.1, ge=0, description="Error rate from which health degrades."
    )
    unhealthy_error_rate: float = Field(
        default=0.5, ge=0, description="Error rate from which it is unhealthy."
    )

    @property
    def message_limit(self) -> int:
        """Messages the bot allows itself per window before Twitch reports its standing: the overrides, or a
        plain account's 20, less the safety margin."""
        return self.limit_for(bool(self.moderator))

    def limit_for(self, elevated: bool) -> int:
        """Messages per window for a standing (moderator or broadcaster: ``elevated``), unless overridden."""
        if self.moderator is not None:
            elevated = self.moderator
        base = self.messages_per_window or (100 if elevated else 20)
        return max(1, int(base * self.message_safety))

    @field_validator("nick", "channel")
    @classmethod
    def _irc_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().lstrip("#").lower()
        if not value or any(ch in value for ch in " ,\r\n\x00"):
            raise ValueError(f"not a valid chat name: {value!r}")
        return value


class ConfigError(Exception):
    """The configuration file or environment is unusable; the message says what to fix."""


def normalize_database_url(url: str) -> str:
    """Give a database URL the async driver claudegate uses (``postgresql://`` → ``postgresql+asyncpg://``)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(
            f"database_url must look like sqlite+aiosqlite:///path or postgresql://…, got {url!r}"
        )
    return f"{_ASYNC_SCHEMES.get(scheme.lower(), scheme)}://{rest}"


def redact_database_url(url: str) -> str:
    """The URL with its password replaced, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.partition("@")
    if not (sep and at and ":" in userinfo and "/" not in userinfo):
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


class Settings(BaseSettings):
    """Everything claudegate reads from its environment, in one flat, typed object."""

    model_config = SettingsConfigDict(
        env_prefix="CLAUDEGATE_",
        extra="forbid",
        validate_default=True,
        populate_by_name=True,
    )

    home: Path = Field(
        default_factory=default_home,
        description=(
            "Data directory: holds the SQLite database and the usage spill file unless database_url and "
            "usage_spill_file name others. Default: the directory of the --config file, else the platform's "
            "user data directory (~/.local/share/claudegate on Linux)."
        ),
    )
    host: str = Field(default="127.0.0.1", description="Address the gateway listens on.")
    port: int = Field(default=8080, ge=0, le=65535, description="TCP port the gateway listens on.")
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description=(
            "Gateway processes serving the port together (more than one needs redis_url, where they share "
            "their limits)."
        ),
    )
    shutdown_grace_s: float = Field(
        default=30.0,
        gt=0,
        description=(
            "At shutdown (SIGTERM, SIGINT), how long calls in flight get to finish; then each open stream "
            "ends with an SSE error event (overloaded_error) and every other call with a 529."
        ),
    )
    database_url: str = Field(
        default="",
        repr=False,
        description=(
            "Where keys, usage and batch ownership are stored: a SQLite file or PostgreSQL "
            "(postgresql://user:password@host/db; the asyncpg driver is chosen for you). Unset: "
            "claudegate.db in the data directory (home)."
        ),
    )
    anthropic_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("ANTHROPIC_API_KEY", "anthropic_api_key"),
        description=(
            "The real Anthropic API key (environment variable ANTHROPIC_API_KEY, unprefixed). It never "
            "leaves the server. Without it, and without upstream_url, the built-in simulator serves."
        ),
    )
    upstream_url: str | None = Field(
        default=None,
        description=(
            "Base URL of the upstream Anthropic-compatible API. Unset: https://api.anthropic.com when "
            "ANTHROPIC_API_KEY is set, otherwise the built-in simulator."
        ),
    )
    pass_unknown_routes: bool = Field(
        default=True,
        description=(
            "Relay /v1 routes the gateway does not know (endpoints newer than it) to the upstream. What such "
            "routes create upstream is shared by every organisation; false answers them 404."
        ),
    )
    admin_token: SecretStr | None = Field(
        default=None,
        description=("Bearer token for the /admin API. Unset: the admin API answers 403 to every call."),
    )
    console_secret: SecretStr | None = Field(
        default=None,
        description=(
            "Signs the web console's session cookies. Unset: derived from the admin token, so every gateway "
            "process with the same admin token accepts the same sessions; changing either signs everyone out."
        ),
    )
    prices_file: Path | None = Field(
        default=None,
        description="A TOML price table whose rows replace or extend the built-in one (same format).",
    )
    usage_flush_interval_s: float = Field(
        default=0.5, gt=0, description="How often buffered usage records are written to the database."
    )
    usage_batch_size: int = Field(
        default=500, gt=0, description="Write usage records as soon as this many are buffered."
    )
    usage_spill_file: Path = Field(
        default=Path(SPILL_FILE),
        description=(
            "Where usage records go (JSON lines) if the database cannot take them at shutdown; they are "
            "imported back into the database at the next start. A relative path is taken in the data "
            "directory (home)."
        ),
    )
    key_cache_ttl_s: float = Field(
        default=5.0,
        ge=0,
        description=(
            "How long a resolved gateway key is trusted without asking the database again; also the longest "
            "a key revoked through another process keeps working here. 0 disables the cache."
        ),
    )
    simulator_tier: str = Field(
        default="unlimited",
        description="Rate-limit tier of the embedded simulator (when it is the upstream).",
    )
    log_level: LogLevel = Field(
        default="info",
        description=(
            "Logging level: debug (also each call's admission and attempts), info (one access line per "
            "call, start and stop), warning (only what needs attention) or error."
        ),
    )
    log_format: LogFormat = Field(
        default="text", description="Log lines as text (key=value) or json (one JSON object per line)."
    )
    log_payloads: bool = Field(
        default=False,
        description=(
            "Also log each call's request body at debug level. It holds prompts: leave off unless you "
            "need them. Keys and tokens are never logged."
        ),
    )
    otel_endpoint: str | None = Field(
        default=None,
        description=(
            "OpenTelemetry: base URL of an OTLP/HTTP collector (e.g. http://127.0.0.1:4318) to send each "
            "call's spans to. Unset: no tracing, at no cost. Needs the 'otel' extra."
        ),
    )
    otel_service_name: str = Field(
        default="claudegate", min_length=1, description="service.name of the spans sent to otel_endpoint."
    )

    # -- flow control -------------------------------------------------------------------------------------
    upstreams: list[UpstreamSettings] = Field(
        default_factory=list,
        description=(
            "Several upstreams (TOML [[upstreams]] tables). When set, upstream_url and ANTHROPIC_API_KEY are "
            "not used for routing."
        ),
    )
    upstream_tier: Tier = Field(
        default="1",
        description=(
            "Anthropic usage tier assumed for the single upstream until the first reply's rate-limit headers "
            "give the real limits."
        ),
    )
    upstream_max_concurrency: int = Field(
        default=64, gt=0, description="Calls in flight to the single upstream."
    )
    routing: Literal["priority", "round_robin", "least_load"] = Field(
        default="priority", description="How an upstream is chosen among healthy ones."
    )
    sticky: Literal["none", "conversation", "prefix"] = Field(
        default="prefix",
        description=(
            "Keep related calls on one upstream so its prompt cache keeps hitting: by conversation "
            "(x-claudegate-conversation header, else metadata.user_id) or by prompt prefix (system, "
            "tools)."
        ),
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis for buckets, limits and breaker state shared by several gateway processes.",
    )
    redis_prefix: str = Field(
        default="claudegate:",
        min_length=1,
        description=(
            "Prefix of every Redis key the gateway uses: gateways that share a prefix share their state "
            "(one account); give deployments serving different accounts different prefixes on one Redis."
        ),
    )
    default_deadline_s: float = Field(
        default=600.0, gt=0, description="Deadline of a call whose key and request set none."
    )
    flow_burst: float = Field(
        default=1.0,
        gt=0,
        le=1.0,
        description="Bucket capacity as a share of a minute's allowance (lower spreads bursts out).",
    )
    retry_max_attempts: int = Field(default=4, ge=1, description="Attempts per call, the first included.")
    breaker_failure_threshold: int = Field(
        default=5, ge=1, description="Consecutive failures that open an upstream's circuit breaker."
    )
    breaker_open_s: float = Field(
        default=30.0, gt=0, description="How long an open breaker keeps traffic away before a probe."
    )
    model_policies: dict[str, list[str]] = Field(
        default_factory=dict,
        description=(
            "Named model policies usable as the model of any call ([model_policies] table: name = [models]), "
            "each a chain tried in order when a model is overloaded or unavailable. They replace or extend "
            "the built-in fast (Haiku, then Sonnet), balanced (Sonnet, then Haiku) and deep (Opus, then "
            "Sonnet)."
        ),
    )

    config_poll_s: float = Field(
        default=2.0,
        gt=0,
        description="How often the gateway checks its configuration file for a change to reload.",
    )

    # -- compression and response cache -------------------------------------------------------------------
    compress_replies: bool = Field(
        default=True,
        description=(
            "Compress JSON and event-stream replies (zstd, br, gzip) for clients whose accept-encoding asks."
        ),
    )
    cache_orgs: list[str] = Field(
        default_factory=list,
        description=(
            'Organisations (by name; "*" for all) whose identical Messages calls are answered from the '
            "response cache. Any caller may also set x-claudegate-cache: on, off or refresh per request."
        ),
    )
    cache_ttl_s: float = Field(default=300.0, gt=0, description="How long a cached reply is served.")
    cache_backend: Literal["memory", "redis"] = Field(
        default="memory",
        description=(
            "Where cached replies live: in each gateway process, or in Redis (redis_url), shared by all "
            "processes on one redis_prefix."
        ),
    )
    cache_max_bytes: int = Field(
        default=64 * 1024 * 1024, gt=0, description="Memory the response cache may hold (oldest use goes)."
    )

    # -- call diagnostics ---------------------------------------------------------------------------------
    payload_log_orgs: list[str] = Field(
        default_factory=list,
        description=(
            'Organisations (by name; "*" for all) whose Messages requests are kept, credentials masked, so '
            "`claudegate calls show --curl` can reproduce them. Empty (the default): none."
        ),
    )
    payload_retention_days: float = Field(
        default=7.0, gt=0, description="How long logged payloads are kept before they are purged."
    )

    # -- alerts -------------------------------------------------------------------------------------------
    alert_webhooks: list[str] = Field(
        default_factory=list,
        repr=False,  # a Slack webhook URL is a credential
        description="URLs that receive alerts (POST, JSON). Empty: no alerts.",
    )
    alert_format: Literal["slack", "json"] = Field(
        default="slack",
        description='Alert body: "slack" ({"text": ...}) or "json" (kind, subject, text, details, at).',
    )
    alert_error_rate: float = Field(
        default=0.5, gt=0, le=1, description="Alert when more than this share of calls fail (5xx)."
    )
    alert_error_window_s: float = Field(default=60.0, gt=0, description="The error rate's window.")
    alert_error_min_calls: int = Field(
        default=20, ge=1, description="Calls in the window before the error rate may alert."
    )
    alert_budget_thresholds: list[float] = Field(
        default_factory=lambda: [0.8, 1.0],
        description="Shares of a budget cap that alert once reached (once per threshold and period).",
    )
    alert_repeat_s: float = Field(
        default=600.0, gt=0, description="The same alert (kind and subject) is sent at most once per this."
    )
    alert_max_per_minute: int = Field(default=20, ge=1, description="Alerts sent at most in any minute.")

    # -- chat API -----------------------------------------------------------------------------------------
    chat_model: str = Field(
        default="claude-sonnet-4-6",
        description="Model of a new chat that names none (and whose prompt version names none).",
    )
    chat_max_tokens: int = Field(default=1024, gt=0, description="max_tokens of a chat call that sets none.")
    chat_history_tokens: int = Field(
        default=100_000,
        gt=0,
        description=(
            "Token budget of a chat call's conversation: the most recent turns that fit, with the new "
            "message, are sent (the system prompt comes on top)."
        ),
    )
    chat_cache_breakpoints: bool = Field(
        default=True,
        description="Place prompt-cache breakpoints in chat calls automatically (tools, system, history).",
    )

    # -- application patterns (in-process client and chat API) -------------------------------------------
    tool_loop_max_iterations: int = Field(
        default=5, ge=1, description="Model calls a tool runner makes at most before it ends with an error."
    )
    image_max_long_side_px: int = Field(
        default=1568, ge=1, description="Images sent through the image helpers are resized to fit this."
    )
    continuation_max: int = Field(
        default=3,
        ge=0,
        description="How many times a reply stopped by max_tokens is continued when continuation is asked.",
    )
    compaction_share: float = Field(
        default=0.75,
        gt=0,
        le=1,
        description=(
            "Share of the model's context window past which a conversation's older turns are compacted into "
            "a summary."
        ),
    )
    compaction_model: str = Field(
        default="claude-haiku-4-5", description="The (cheaper) model that writes compaction summaries."
    )

    # -- chat bots ----------------------------------------------------------------------------------------
    bot: BotSettings = Field(
        default_factory=BotSettings, description="The chat bot ([bot] table; see BotSettings)."
    )

    @model_validator(mode="before")
    @classmethod
    def _in_home(cls, data: Any) -> Any:
        """Place the database and the spill file in the data directory unless they are named."""
        if not isinstance(data, dict):
            return data
        home = Path(data["home"]) if data.get("home") else default_home()
        data = {**data, "home": home}
        if not data.get("database_url"):
            data["database_url"] = sqlite_url(home)
        spill = Path(data.get("usage_spill_file") or SPILL_FILE)
        data["usage_spill_file"] = spill if spill.is_absolute() else home / spill
        return data

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        return normalize_database_url(value)

    @field_validator("otel_endpoint")
    @classmethod
    def _otel_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"otel_endpoint must start with http:// or https://, got {value!r}")
        return value.rstrip("/")

    @field_validator("upstream_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"upstream_url must start with http:// or https://, got {value!r}")
        return value.rstrip("/")

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @property
    def database_url_redacted(self) -> str:
        """The database URL with any password hidden, for messages."""
        return redact_database_url(self.database_url)

    @property
    def resolved_upstream_url(self) -> str | None:
        """The upstream to forward to, or None when the built-in simulator should serve."""
        if self.upstream_url is not None:
            return self.upstream_url
        return ANTHROPIC_URL if self.anthropic_api_key is not None else None

    @classmethod
    def load(cls, config_file: Path | None = None) -> Settings:
        """Settings from ``config_file`` (TOML, optional) overridden by the environment.

        Raises :class:`ConfigError` with a readable message when the file is missing or invalid.
        """
        file_values = read_settings_file(config_file) if config_file is not None else {}
        try:
            # Environment values are passed as init values on top of the file's, so they win; reading them
            # explicitly (rather than reordering sources) keeps ``Settings(port=1)`` meaning what it says.
            env_values = EnvSettingsSource(cls)()
            return cls(**{**_by_field_name(cls, file_values), **_by_field_name(cls, env_values)})
        except ValidationError as exc:
            raise ConfigError(_describe(exc, config_file)) from None


def read_settings_file(config_file: Path) -> dict[str, Any]:
    """The values of a TOML settings file, with its directory as the data directory (``home``) unless the
    file names one (a relative ``home`` is taken from the file's directory)."""
    try:
        values = tomllib.loads(config_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"configuration file {config_file} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read configuration file {config_file}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {config_file} is not valid TOML: {exc}") from None
    directory = config_file.resolve().parent
    home = values.get("home")
    values["home"] = directory / home if isinstance(home, str) and home else directory
    return values


def _by_field_name(cls: type[Settings], values: dict[str, Any]) -> dict[str, Any]:
    """Key values by field name, so ``ANTHROPIC_API_KEY`` from the environment replaces the file's
    ``anthropic_api_key`` instead of competing with it. Unknown keys are kept for validation to reject."""
    names: dict[str, str] = {}
    for name, info in cls.model_fields.items():
        names[name] = name
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names.update({choice.lower(): name for choice in alias.choices if isinstance(choice, str)})
    return {names.get(key.lower(), key): value for key, value in values.items()}


def _describe(exc: ValidationError, config_file: Path | None) -> str:
    where = f" (from {config_file} or the environment)" if config_file else " (from the environment)"
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        field = ".".join(str(part) for part in error["loc"]) or "settings"
        message = "unknown setting" if error["type"] == "extra_forbidden" else error["msg"]
        problems.append(f"{field}: {message}")
    return f"invalid configuration{where}: " + "; ".join(problems)
