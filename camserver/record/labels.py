"""Spans a viewer asks for in wall-clock labels, answered from one run of the recordings' steady time.

A recording's label is its first frame's wall-clock time; its steady times (clock.Timeline) never
jump. Between two wall-clock steps every recording has the same offset (label minus steady time);
a step changes it. After the clock steps back an hour, one hour of labels holds two recordings
(the one made before the step and the one made after it): a span asked for in labels is then
ambiguous, and cutting it by labels would join both.

So the recordings overlapping a label span are grouped by their offset (a *timeline*: recordings
whose offsets differ by at most clock.STEP_S), one timeline is chosen (the one holding the
recording `seq` names, else the newest), and the span is turned into that timeline's steady time
and cut by it. The others are named, so the viewer can ask for one of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..clock import STEP_S


@dataclass(frozen=True)
class LabelChoice:
    """The timeline chosen for a label span: its steady span, and the recordings sharing the labels."""

    start: float  # steady time of the span's start on the chosen timeline
    end: float
    seq: int | None  # the chosen recording: `seq` when asked for, else the first of the newest timeline in the span
    others: tuple[int, ...] = field(default=())  # the first recording of each other timeline sharing the labels
    asked: bool = False  # the viewer named `seq`


def offset(row: dict[str, Any]) -> float:
    """A recording's label minus its steady time (0 for a row from before steady times)."""
    return 0.0 if row.get("steady_start") is None else row["start_time"] - row["steady_start"]


def timelines(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """`rows` grouped by offset (within STEP_S), each group in the order made, the groups by their first recording."""
    groups: list[list[dict[str, Any]]] = []
    for row in sorted(rows, key=offset):
        if groups and abs(offset(row) - offset(groups[-1][-1])) <= STEP_S:
            groups[-1].append(row)
        else:
            groups.append([row])
    for group in groups:
        group.sort(key=_seq)
    return sorted(groups, key=lambda g: _seq(g[0]))


def choose(rows: list[dict[str, Any]], start: float, end: float, seq: int | None = None) -> LabelChoice | None:
    """The timeline of `rows` (recordings overlapping the labels [start, end]) to cut the span from.

    Returns None when `seq` names no recording among `rows` (or there are none).
    """
    groups = timelines(rows)
    if not groups:
        return None
    if seq is None:
        chosen = max(groups, key=lambda g: _seq(g[-1]))  # the newest footage, as a player expects
    else:
        found = [g for g in groups if any(r.get("seq") == seq for r in g)]
        if not found:
            return None
        chosen = found[0]
    shift = offset(chosen[0])
    others = tuple(g[0]["seq"] for g in groups if g is not chosen and g[0].get("seq") is not None)
    return LabelChoice(start - shift, end - shift, chosen[0].get("seq") if seq is None else seq, others, seq is not None)


def _seq(row: dict[str, Any]) -> float:
    value = row.get("seq")
    return float("inf") if value is None else float(value)
