"""What every provider whose media comes through the gateway checks of a request."""

from __future__ import annotations

from ..messages import SessionRequest

__all__ = ["call_ends"]


def call_ends(
    provider: str,
    entry: str,
    request: SessionRequest,
    *,
    configured_from: str | None,
    from_key: str = "from_number",
    to_example: str = "+1...",
    from_hint: str = "'+1...'",
) -> tuple[str, str]:
    """The call's ``to`` and ``from_`` (the request's, else the provider entry's
    ``from_key``). A ``url``, ``headers`` or ``subprotocols`` is a ``TypeError`` (the session
    dials the media gateway, not a URL of the caller's); a missing end is a ``ValueError``
    naming what to pass."""
    for field_name in ("url", "headers", "subprotocols"):
        if getattr(request, field_name) is not None:
            raise TypeError(
                f"the {provider} provider takes no {field_name!r}: it dials the media gateway"
            )
    to, from_ = request.to, request.from_ or configured_from
    if not to:
        raise ValueError(f"create_session(provider={provider!r}) needs to={to_example!r}")
    if not from_:
        raise ValueError(
            f"create_session(provider={provider!r}) needs from_={from_hint}, "
            f"or providers.{entry}.{from_key} in the config"
        )
    return to, from_
