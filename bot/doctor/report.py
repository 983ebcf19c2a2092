"""What a check finds, and the report it goes into: one line per check as text, or JSON for scripts."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from enum import StrEnum


class Status(StrEnum):
    PASS = "PASS"  # noqa: S105 - a status, not a password
    WARN = "WARN"  # works, but something deserves a look; does not change the exit code
    FAIL = "FAIL"  # the bot will not work as configured; the line says how to fix it
    SKIP = "SKIP"  # not configured, or it needs a check that failed (that one is the FAIL to fix)


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    found: str
    fix: str | None = None


def passed(name: str, found: str) -> CheckResult:
    return CheckResult(name, Status.PASS, found)


def warned(name: str, found: str, fix: str | None = None) -> CheckResult:
    return CheckResult(name, Status.WARN, found, fix)


def failed(name: str, found: str, fix: str) -> CheckResult:
    return CheckResult(name, Status.FAIL, found, fix)


def skipped(name: str, reason: str) -> CheckResult:
    return CheckResult(name, Status.SKIP, reason)


def exit_code(results: list[CheckResult]) -> int:
    return 1 if any(result.status is Status.FAIL for result in results) else 0


def render_text(results: list[CheckResult]) -> str:
    width = max((len(result.name) for result in results), default=0)
    lines = []
    for result in results:
        line = f"{result.status:<4}  {result.name:<{width}}  {result.found}"
        if result.fix:
            line += f" — fix: {result.fix}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def render_json(results: list[CheckResult]) -> str:
    report = {
        "ok": exit_code(results) == 0,
        "checks": [{**asdict(result), "status": str(result.status)} for result in results],
    }
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"
