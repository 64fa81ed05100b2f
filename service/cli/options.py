"""Option values the service's own parsers refuse, told as the usage mistakes they are."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import click

from service.errors import InvalidRequestError


@contextlib.contextmanager
def option_values(options: Mapping[str, str]) -> Iterator[None]:
    """Within: a value the service's parser refuses, for a field of ``options`` (the
    service's field name → the command's option), ends the command as click's usage error
    (exit 2, "Invalid value for --month"), as a value click itself refuses does, not as a
    failure of the work (exit 1). A message names its field first ("month: …"); with one
    option, every refusal within is that option's."""
    try:
        yield
    except InvalidRequestError as exc:
        for field, option in options.items():
            if exc.message.startswith(f"{field}: ") or len(options) == 1:
                reason = exc.message.removeprefix(f"{field}: ")
                raise click.BadParameter(reason, param_hint=option) from None
        raise
