"""The one typed settings object, read from the environment (prefix EXCHANGE_) and CLI options."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EXCHANGE_", extra="ignore")

    data_dir: Path = Field(default=Path("data"), description="journal, snapshots and the embedded database")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the store; default: SQLite file in the data directory")
    snapshot_every_commands: int = Field(default=100_000, ge=0)
    audit_every_commands: int = Field(default=10_000, ge=0)

    # -- the API server (`exchange serve`) ---------------------------------------------------------
    host: str = Field(default="127.0.0.1", description="address the API server binds")
    port: int = Field(default=8000, ge=0, le=65535)
    master_key: SecretStr | None = Field(
        default=None, description="hex, >= 32 bytes: API secrets are derived from it (default: <data>/master.key)")
    rate_per_key_per_s: int = Field(default=200, ge=1, description="sustained requests per second per API key")
    burst_per_key: int = Field(default=400, ge=1)
    rate_per_ip_per_s: int = Field(default=400, ge=1, description="sustained requests per second per client IP")
    burst_per_ip: int = Field(default=800, ge=1)
    request_body_bytes_max: int = Field(default=16_384, ge=256, description="larger bodies get 413")
    ws_message_bytes_max: int = Field(default=16_384, ge=256)
    # -- what one client can hold (exchange/api/connection_guard.py, ws_orders.py) ---------------
    connections_max: int = Field(default=4_096, ge=1, description="open HTTP connections in all; more get 503")
    connections_per_ip_max: int = Field(default=256, ge=1, description="open HTTP connections per client IP")
    headers_timeout_s: float = Field(default=10.0, gt=0, le=300, description="time to send a request's head "
                                     "(slowloris); then 408 and close")
    body_timeout_s: float = Field(default=30.0, gt=0, le=600, description="time to send a request's body")
    header_bytes_max: int = Field(default=16_384, ge=1_024, description="a larger request head gets 431")
    keep_alive_timeout_s: int = Field(default=5, ge=1, le=300, description="idle keep-alive connections close")
    ws_sessions_per_key_max: int = Field(default=8, ge=1, description="order-entry WebSockets per API key")
    ws_sessions_per_ip_max: int = Field(default=32, ge=1, description="order-entry WebSockets per client IP")
    trusted_proxies: str = Field(default="", description="comma-separated IPs/CIDRs of reverse proxies whose "
                                 "X-Forwarded-For is honoured; empty: the socket's peer is the client")
    ws_in_flight_max: int = Field(default=256, ge=1, description="unanswered requests per WebSocket connection")
    session_check_ms: int = Field(default=250, ge=10, le=1_000, description="how often an open WebSocket session "
                                  "rechecks that its key is not revoked and its account not disabled")
    feed_queue_messages_max: int = Field(
        default=10_000, ge=1, description="market feed: outbound messages queued per connection before it is a slow "
        "consumer (closed with 1013)")
    demo: bool = Field(default=True, description="`exchange serve` runs the simulated demo market (--demo/--no-demo)")
    demo_rate_per_s: float = Field(default=20.0, gt=0, le=5_000, description="the demo market's commands per second")
    feed_gateway: bool = Field(default=True, description="`exchange serve` also runs a market-data feed gateway "
                               "process (restarted if it dies)")
    feed_host: str | None = Field(default=None, description="address the feed gateway binds (default: host)")
    feed_port: int = Field(default=8001, ge=0, le=65535, description="the feed gateway's port (/v1/ws/market)")
    signature_window_s: int = Field(default=5, ge=1, le=300, description="allowed clock skew of signed requests")
    auth_failures_per_ip_per_s: int = Field(default=1, ge=1, description="failed authentications allowed per "
                                            "second per client IP (and per key id from one IP), sustained")
    auth_failures_burst_per_ip: int = Field(default=20, ge=1, description="failed authentications from one IP "
                                            "before it gets 429 auth_failures_limited")
    auth_failures_burst_per_key_ip: int = Field(default=10, ge=1, description="failed authentications of one key "
                                                "id from one IP before 429 (other IPs are not affected)")
    replay_signatures_max: int = Field(default=200_000, ge=1_000, le=10_000_000, description="signatures of acting "
                                       "requests remembered inside the window to refuse replays (bounded memory)")
    idempotency_retention_s: int = Field(default=86_400, ge=60)
    submit_timeout_s: int = Field(default=10, ge=1, description="wait this long for the sequencer, then 503")
    shutdown_drain_s: int = Field(default=10, ge=0, description="graceful shutdown: finish in-flight requests")

    # -- settlement jobs run by the exchange itself (exchange/jobs/scheduler.py) -------------------
    scheduler: bool = Field(default=True, description="`exchange serve` runs daily settlement after each cut and "
                            "delivery settlement at each telemetry deadline; off for deployments that schedule "
                            "the jobs themselves")
    calendar_poll_s: float = Field(default=60.0, gt=0, le=3_600, description="how often a running exchange lists "
                                   "the calendar's series that have come due")
    scheduler_poll_s: float = Field(default=5.0, gt=0, le=300, description="how often the scheduler looks for due "
                                    "jobs")
    job_grace_s: int = Field(default=5, ge=0, le=3_600, description="a job runs this long after its cut or "
                             "deadline (the sequencer's time has moved past it everywhere by then)")
    job_retry_s_max: int = Field(default=900, ge=1, description="a failed job is retried after 10 s, 20 s, ... "
                                 "doubling up to this")
    job_timeout_s: int = Field(default=3_600, ge=10, description="a job still running after this is killed and "
                               "retried")
    job_nice: int = Field(default=10, ge=0, le=19, description="a settlement job against a running exchange runs "
                          "at idle CPU priority (Linux SCHED_IDLE, else this Unix nice) so order entry keeps its "
                          "cores first; 0: normal priority")
    journal_retention_days: int = Field(default=0, ge=0, le=36_500, description="move journal segments older than "
                                        "this many days, covered by the newest snapshot and the store, into "
                                        "journal-archive/ (checked hourly by the scheduler); 0 keeps them all")
    command_body_bytes_max: int = Field(default=16 * 1024 * 1024, ge=16_384, description="largest operator "
                                        "settlement command (POST /v1/admin/commands: variation margin of every "
                                        "account)")
    telemetry_upload_bytes_max: int = Field(default=4 * 1024**3, ge=1_024, description="largest telemetry file "
                                            "accepted by PUT /v1/admin/telemetry/{name}")
    clock_offset_s: int = Field(default=0, ge=-10 * 365 * 86_400, le=10 * 365 * 86_400, description="drills and "
                                "tests only: the exchange's clock runs this many seconds from the machine's (a "
                                "settlement cut can then be rehearsed at any hour); never set it in production")

    # -- delivery telemetry (`exchange probe ...`, delivery settlement) -------------------------------
    probe_key: SecretStr | None = Field(
        default=None, description="hex, >= 32 bytes: HMAC key of the reference probe (default: <data>/probe.key)")

    def to_env(self) -> dict[str, str]:
        """These settings as the `EXCHANGE_*` variables that reproduce them in a child process (secrets
        included: pass the result only to processes of this exchange)."""
        env: dict[str, str] = {}
        for name, value in self:
            if value is None:
                continue
            if isinstance(value, SecretStr):
                text = value.get_secret_value()
            elif isinstance(value, bool):
                text = "true" if value else "false"
            else:
                text = str(value)
            env[f"EXCHANGE_{name.upper()}"] = text
        return env

    def load_master_key(self) -> bytes:
        """The key API secrets are derived from: EXCHANGE_MASTER_KEY (hex), else <data>/master.key,
        created (random, mode 0600) on first use. Losing it invalidates every API key."""
        return self._load_key(self.master_key, "master.key", "master key", "EXCHANGE_MASTER_KEY")

    def load_probe_key(self, create: bool = False) -> bytes:
        """The key the reference probe signs telemetry records with: EXCHANGE_PROBE_KEY (hex), else
        <data>/probe.key. Only the exchange creates it (`exchange init`, `exchange serve`: random, mode
        0600); everything else fails and says where it is expected, because a key invented on the spot
        would sign records that the exchange then rejects as bad_signature. Records signed with another
        key are rejected as bad_signature."""
        return self._load_key(self.probe_key, "probe.key", "probe key", "EXCHANGE_PROBE_KEY", create)

    def _load_key(self, configured: SecretStr | None, filename: str, what: str, env: str,
                  create: bool = True) -> bytes:
        """A secret key of at least 256 bits: from the setting (hex), else from <data>/<filename>,
        which is created with random bits and mode 0600 the first time when `create`."""
        if configured is not None:
            try:
                key = bytes.fromhex(configured.get_secret_value())
            except ValueError:
                raise ValueError(f"the {what} ({env}) must be hex digits") from None
        else:
            path = self.data_dir / filename
            if not path.exists() and not create:
                raise ValueError(f"no {what}: set {env} (64 hex digits) or put it in {path.resolve()} (the exchange "
                                 f"creates it there at `exchange init` or its first `exchange serve`)")
            if not path.exists():
                self.data_dir.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as out:
                    out.write(secrets.token_hex(32) + "\n")
            try:
                key = bytes.fromhex(path.read_text().strip())
            except ValueError:
                raise ValueError(f"{path} must hold the {what} as hex digits") from None
        if len(key) < 32:
            raise ValueError(f"the {what} must be at least 32 bytes (64 hex digits)")
        return key

    def clock_ns(self) -> int:
        """The exchange's time in ns since the epoch: the machine's, shifted by `clock_offset_s`."""
        return time.time_ns() + self.clock_offset_s * 1_000_000_000

    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'exchange.db').resolve()}"
