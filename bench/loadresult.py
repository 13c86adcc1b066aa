"""The one result shape both load generators (hey, wrk) parse into.

A benchmark number is only worth something if every request it counts was
answered correctly, so a result knows whether it *failed*: any transport error
(refused, reset, timeout) or any response outside 2xx marks the whole run
failed, whatever the tool's exit status said (hey exits 0 even when every
request failed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class LoadResult:
    tool: str  # "hey" | "wrk"
    requests: int  # responses received (any status); errors not included
    duration_s: float
    rps: float  # responses / duration, computed by us, not the tool's figure
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    # Status code → count. hey gives exact codes ("200"); wrk only knows
    # "2xx/3xx" and "non-2xx/3xx".
    status_counts: dict[str, int] = field(default_factory=dict)
    # Error description → count (hey: each distinct message; wrk: the socket
    # error kinds "connect", "read", "write", "timeout", or "tool" when it
    # could not run at all).
    errors: dict[str, int] = field(default_factory=dict)
    exit_status: int = 0
    raw: str = ""

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def ok_count(self) -> int:
        return sum(n for code, n in self.status_counts.items() if _is_success(code))

    @property
    def failed(self) -> bool:
        return (
            self.requests == 0
            or self.error_count > 0
            or self.ok_count != self.requests
            or self.exit_status != 0
        )

    def failure_reason(self) -> str:
        if not self.failed:
            return ""
        parts = []
        if self.exit_status != 0:
            parts.append(f"{self.tool} exited {self.exit_status}")
        if self.requests == 0:
            parts.append("no responses")
        bad = {c: n for c, n in self.status_counts.items() if not _is_success(c)}
        if bad:
            parts.append("non-2xx: " + ", ".join(f"{c}×{n}" for c, n in sorted(bad.items())))
        if self.errors:
            top = sorted(self.errors.items(), key=lambda kv: -kv[1])[:2]
            parts.append("errors: " + "; ".join(f"{n}× {msg}" for msg, n in top))
        return "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        del d["raw"]
        d["failed"] = self.failed
        return d


def _is_success(code: str) -> bool:
    # wrk cannot tell 2xx from 3xx without a Lua script; our apps never redirect.
    return code == "2xx/3xx" or (len(code) == 3 and code.startswith("2"))
