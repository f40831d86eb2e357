"""Who has each case open in this server process: the "who is on the case" of the live updates (case_events.py)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Presence:
    """Who has each case open in this server process (a reviewer with two tabs counts once)."""

    viewers: dict[int, Counter] = field(default_factory=dict)
    version: int = 0  # bumped on every arrival and departure: streams compare it to know when to tell

    def arrive(self, case_id: int, name: str) -> None:
        self.viewers.setdefault(case_id, Counter())[name] += 1
        self.version += 1

    def leave(self, case_id: int, name: str) -> None:
        here = self.viewers.get(case_id)
        if here is None:
            return
        here[name] -= 1
        if here[name] <= 0:
            del here[name]
        if not here:
            del self.viewers[case_id]
        self.version += 1

    def names(self, case_id: int) -> list[str]:
        return sorted(self.viewers.get(case_id, ()))
