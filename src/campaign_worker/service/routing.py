"""Command class -> its one handler: the routing table of the service, joined from the
`ROUTES` of each module in `handlers/`."""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping

from campaign_worker.domain.commands import Command
from campaign_worker.service.handlers import (
    billing,
    catalog,
    creatives,
    duplication,
    holds,
    lifecycle,
)
from campaign_worker.service.handlers.route import Route

MODULES = (lifecycle, creatives, holds, catalog, duplication, billing)


class RoutingError(Exception):
    """The routing table and the commands disagree: the worker must not start."""


def _table(routes: Iterable[Route]) -> dict[type, Route]:
    table: dict[type, Route] = {}
    for route in routes:
        for command in route.commands:
            if command in table:
                raise RoutingError(f"{command.__name__} has two handlers")
            table[command] = route
    return table


ROUTES: Mapping[type, Route] = _table(r for module in MODULES for r in module.ROUTES)


def check_routes(commands: Iterable[type] = typing.get_args(Command)) -> None:
    """Every command class has exactly one handler, and every handler takes commands that
    exist. Raises RoutingError (at start-up, never on a message)."""
    wanted = set(_flatten(commands))
    missing = sorted(c.__name__ for c in wanted - ROUTES.keys())
    unknown = sorted(c.__name__ for c in ROUTES.keys() - wanted)
    if missing or unknown:
        raise RoutingError(f"commands without a handler: {missing}; handlers of unknown: {unknown}")


def _flatten(types: Iterable[object]) -> Iterable[type]:
    for t in types:
        args = typing.get_args(t)
        if args:
            yield from _flatten(args)
        elif isinstance(t, type):
            yield t
