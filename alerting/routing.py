"""The routing tree: which receivers hear about an alert, and with which timing.

Alertmanager's rules: the root takes every alert; an alert descends into the first child whose
matchers all match, and into later siblings too while the matching child says ``continue``;
a node none of whose children match is where the alert lands. Each landing node is one
notification stream with its own ``group_wait``, ``repeat_interval`` and ``send_resolved``,
inherited from the parent where unset.
"""

from __future__ import annotations

from dataclasses import dataclass

from alerting.config import RouteConfig
from alerting.matchers import Labels, Matcher, all_match


@dataclass(frozen=True)
class Route:
    id: str
    matchers: tuple[Matcher, ...]
    receivers: tuple[str, ...]
    group_wait: float
    repeat_interval: float
    send_resolved: bool
    continue_: bool
    children: tuple["Route", ...]


class Router:
    def __init__(self, root: RouteConfig):
        self.root = self._build(root, "root", None)
        self._by_id: dict[str, Route] = {}
        self._index(self.root)

    def _build(self, cfg: RouteConfig, path: str, parent: Route | None) -> Route:
        group_wait = cfg.group_wait if cfg.group_wait is not None else (parent.group_wait if parent else 0.0)
        repeat = cfg.repeat_interval if cfg.repeat_interval is not None else (parent.repeat_interval if parent else 3600.0)
        resolved = cfg.send_resolved if cfg.send_resolved is not None else (parent.send_resolved if parent else True)
        proto = Route(cfg.name or path, cfg.compiled_matchers(), tuple(cfg.all_receivers()), group_wait, repeat,
                      resolved, cfg.continue_, ())
        children = tuple(self._build(c, f"{path}.{i}", proto) for i, c in enumerate(cfg.routes))
        return Route(proto.id, proto.matchers, proto.receivers, group_wait, repeat, resolved, cfg.continue_, children)

    def _index(self, route: Route) -> None:
        if route.id in self._by_id:
            raise ValueError(f"two routes are both named {route.id!r}; route names must be unique")
        self._by_id[route.id] = route
        for child in route.children:
            self._index(child)

    def match(self, labels: Labels) -> list[Route]:
        """The landing routes of an alert, in tree order (at least the root)."""
        return self._visit(self.root, labels, root=True)

    def _visit(self, route: Route, labels: Labels, root: bool = False) -> list[Route]:
        if not root and not all_match(route.matchers, labels):
            return []
        found: list[Route] = []
        for child in route.children:
            hit = self._visit(child, labels)
            if hit:
                found.extend(hit)
                if not child.continue_:
                    break
        return found or [route]

    def get(self, route_id: str) -> Route | None:
        return self._by_id.get(route_id)

    def routes(self) -> list[Route]:
        return list(self._by_id.values())
