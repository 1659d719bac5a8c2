"""How an emulated number answers: ``emulator.behaviours`` maps numbers to behaviours.

Each value is ``<behaviour>`` or ``<behaviour>:<seconds>`` (the seconds it rings before that
outcome; without them, ``emulator.answer_after_s``):

- ``human`` (every number not listed): answers; machine detection says ``human``;
- ``answer-late:<s>``: the same, after ringing ``s`` seconds (past the call's ``Timeout``:
  ``no-answer``);
- ``machine``: answers; machine detection says ``machine_start`` (``MachineDetection=Enable``)
  or ``machine_end_beep`` (``DetectMessageEnd``: once the greeting's beep is heard);
- ``fax``: answers; machine detection says ``fax``;
- ``busy``: the call ends ``busy`` (no ``ringing`` event: a busy line does not ring);
- ``no-answer``: rings until the call's ``Timeout`` (Twilio's default 60 s), then ``no-answer``;
- ``failed``: the number cannot be reached: the call ends ``failed``.

A key is an E.164 number (``"+15550100"``) or a prefix ending in ``*`` (``"+1555020*"``):
an exact key wins, then the longest prefix. Pure: no I/O, no config import.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["BEHAVIOURS", "Behaviour", "behaviour_for", "behaviour_problem", "parse_behaviour"]

BEHAVIOURS = ("human", "answer-late", "machine", "fax", "busy", "no-answer", "failed")
_ANSWERS = frozenset({"human", "answer-late", "machine", "fax"})
_MAX_RING_S = 600.0  # Twilio's longest Timeout


@dataclass(frozen=True, slots=True)
class Behaviour:
    """What a number does when called; ``ring_s`` ``None``: ``emulator.answer_after_s``."""

    kind: str = "human"
    ring_s: float | None = None

    @property
    def answers(self) -> bool:
        """Whether the number picks up (after ringing)."""
        return self.kind in _ANSWERS

    def answered_by(self, machine_detection: str | None) -> str | None:
        """Twilio's ``AnsweredBy`` for this party under ``MachineDetection`` (``None``: not
        asked): ``human``, ``machine_start``, ``machine_end_beep`` or ``fax``."""
        if machine_detection is None or not self.answers:
            return None
        if self.kind == "machine":
            beep = machine_detection == "DetectMessageEnd"  # the greeting ended: its beep
            return "machine_end_beep" if beep else "machine_start"
        return "fax" if self.kind == "fax" else "human"


def behaviour_problem(spec: str) -> str | None:
    """What is wrong with a behaviour spec (``None``: nothing); never echoes the value."""
    kind, sep, seconds = spec.partition(":")
    if kind not in BEHAVIOURS:
        return f"expected one of {', '.join(BEHAVIOURS)}, optionally ':<seconds>'"
    if kind == "answer-late" and not sep:
        return "answer-late needs its ring time: answer-late:<seconds>"
    if sep:
        try:
            value = float(seconds)
        except ValueError:
            return "the ring time after ':' must be a number of seconds"
        if not (math.isfinite(value) and 0 <= value <= _MAX_RING_S):
            return f"the ring time must be 0..{_MAX_RING_S:g} seconds"
    return None


def parse_behaviour(spec: str) -> Behaviour:
    """``spec`` as a :class:`Behaviour` (``ValueError`` when :func:`behaviour_problem` says so)."""
    problem = behaviour_problem(spec)
    if problem is not None:
        raise ValueError(problem)
    kind, sep, seconds = spec.partition(":")
    return Behaviour(kind, float(seconds) if sep else None)


def behaviour_for(behaviours: Mapping[str, str], number: str) -> Behaviour:
    """The behaviour of ``number``: its exact key, else the longest matching ``prefix*`` key,
    else ``human``."""
    spec = behaviours.get(number)
    if spec is None:
        best = -1
        for key, value in behaviours.items():
            if key.endswith("*") and number.startswith(key[:-1]) and len(key) > best:
                spec, best = value, len(key)
    return Behaviour() if spec is None else parse_behaviour(spec)
