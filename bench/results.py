"""What a run records: one Flow per person, one ServerResult per server."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.config import ServerKind


@dataclass
class Flow:
    """One person's way from the slash command to the token."""

    level: int
    round: int
    user_id: str
    username: str
    measured: bool = True
    response_url: str = ""
    command_ack: float | None = None  # seconds; None = the request failed
    command_error: str | None = None
    submit_ack: float | None = None
    submit_error: str | None = None
    submitted: bool = False  # the submission was sent (the app may have acted on it even if it failed)
    token_latency: float | None = None
    submitted_at: float | None = None  # time.monotonic(), like the fakes' timestamps
    # The overhead split at the fake Mixpanel: submission sent -> create arrives; create answered -> token.
    before_create: float | None = None
    after_create: float | None = None
    error: str | None = None

    @property
    def complete(self) -> bool:
        return self.error is None and self.token_latency is not None


@dataclass
class ServerResult:
    kind: ServerKind
    startup: float | None = None
    peak_rss_mb: float | None = None
    exit_code: int | None = None
    flows: list[Flow] = field(default_factory=list)
    level_seconds: dict[int, float] = field(default_factory=dict)
    # per level: CPU seconds used by the app's processes and by the benchmark process (fakes + people)
    level_cpu: dict[int, tuple[float, float]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # correctness failures
    notes: list[str] = field(default_factory=list)  # worth knowing, not a failure
    counts: dict[str, int] = field(default_factory=dict)
    log_path: str = ""
    fatal: str | None = None  # could not run at all
    mixpanel_latency: float = 0.0  # seconds, every fake Mixpanel call
    settings: dict[str, str] = field(default_factory=dict)  # the app's tuning settings in this run

    def measured(self, level: int) -> list[Flow]:
        return [f for f in self.flows if f.measured and f.level == level]
