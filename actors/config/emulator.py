"""The ``emulator`` section: the local Twilio (its API's address, what each call plays)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ..checks import short_repr
from ._fields import _POSITIVE, _host_port, _http_url_or, _limit, _one_of

__all__ = [
    "EmulatorConfig",
]


_MEDIA_MODES = ("echo", "tone", "wav", "silence", "reflect")


def _media_map(value: Mapping[str, str]) -> str | None:
    wrong = [number for number, mode in value.items() if mode not in _MEDIA_MODES]
    if wrong:
        return f"the mode of {short_repr(wrong[0])} must be one of: {', '.join(_MEDIA_MODES)}"
    return None


def _optional_http_url(value: str | None) -> str | None:
    return None if value is None else _http_url_or()(value)


def _behaviour_map(value: Mapping[str, str]) -> str | None:
    # Imported here: the emulator package imports the config package.
    from ..emulator.numbers import behaviour_problem  # noqa: PLC0415

    for number, spec in value.items():
        if (problem := behaviour_problem(spec)) is not None:
            return f"the behaviour of {short_repr(number)}: {problem}"
    return None


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """The local Twilio emulator: a REST API, and a media dialer that plays each call."""

    listen: str = field(default="127.0.0.1:0", metadata={"check": _host_port})
    media: str = field(default="echo", metadata={"check": _one_of(*_MEDIA_MODES)})
    tone_hz: float = field(default=440.0, metadata=_POSITIVE)
    wav: str | None = None  # the file `media: wav` plays
    # To number -> media mode, for the calls that should not use `media`
    numbers: Mapping[str, str] = field(default_factory=dict, metadata={"check": _media_map})
    max_call_s: float = field(default=3600.0, metadata=_POSITIVE)  # then it hangs up
    # Every call rings this long before it is answered (past the call's Timeout: no-answer).
    answer_after_s: float = field(default=0.0, metadata=_limit(">=", 0))
    # The voice URL the emulator's inbound calls ask (`transport-actors emulator --dial-in`).
    voice_url: str | None = field(default=None, metadata={"check": _optional_http_url})
    # Number (or "prefix*") -> how it answers: human | answer-late:<s> | machine | fax | busy
    # | no-answer | failed, optionally ":<seconds>" of ringing (actors.emulator.numbers).
    behaviours: Mapping[str, str] = field(default_factory=dict, metadata={"check": _behaviour_map})

    def __post_init__(self) -> None:
        object.__setattr__(self, "numbers", MappingProxyType(dict(self.numbers)))
        object.__setattr__(self, "behaviours", MappingProxyType(dict(self.behaviours)))

    def media_for(self, to: str) -> str:
        return self.numbers.get(to, self.media)
