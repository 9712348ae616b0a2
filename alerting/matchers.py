"""Label matchers shared by routes, silences and inhibition rules (Alertmanager's syntax).

An alert's labels are *multi-valued*: an alert corroborated by a camera and a microphone has
``modality = {"vision", "audio"}`` and ``source = {"cam-1", "mic-1"}``. A matcher therefore
asks about membership:

* ``name=value``   some value equals ``value``
* ``name!=value``  no value equals ``value``
* ``name=~regex``  some value matches ``regex`` (anchored, like Alertmanager)
* ``name!~regex``  no value matches ``regex``

So ``modality=vision`` matches every alert a camera took part in, and the pair
``modality=audio, modality!=vision`` matches audio-only alerts. A label the alert does not
have behaves as the empty set (``x!=y`` matches, ``x=y`` does not).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

Labels = Mapping[str, tuple[str, ...]]
Op = Literal["=", "!=", "=~", "!~"]

_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


class MatcherError(ValueError):
    """A matcher that cannot be parsed; the message shows the accepted forms."""


@dataclass(frozen=True)
class Matcher:
    name: str
    op: Op
    value: str
    _regex: re.Pattern | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, text: str) -> "Matcher":
        """``site=north``, ``source=~cam-.*``, ``severity!=info``; quotes around the value are
        optional."""
        m = _MATCHER.match(text)
        if not m:
            raise MatcherError(f"cannot read matcher {text!r}: write name=value, name!=value, "
                               "name=~regex or name!~regex (e.g. site=north, source=~cam-.*)")
        name, op, value = m.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        return cls.make(name, op, value)  # type: ignore[arg-type]

    @classmethod
    def make(cls, name: str, op: Op, value: str) -> "Matcher":
        regex = None
        if op in ("=~", "!~"):
            try:
                regex = re.compile(f"(?:{value})")
            except re.error as exc:
                raise MatcherError(f"bad regex in matcher {name}{op}{value}: {exc}") from None
        return cls(name, op, value, regex)

    def matches(self, labels: Labels) -> bool:
        values = labels.get(self.name, ())
        if self.op == "=":
            return self.value in values
        if self.op == "!=":
            return self.value not in values
        hit = any(self._regex.fullmatch(v) for v in values)  # type: ignore[union-attr]
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.value}"


def parse_all(texts: Iterable[str]) -> tuple[Matcher, ...]:
    return tuple(Matcher.parse(t) for t in texts)


def from_maps(match: Mapping[str, str | list[str]] | None = None,
              match_re: Mapping[str, str] | None = None,
              matchers: Iterable[str] = ()) -> tuple[Matcher, ...]:
    """Matchers from the three spellings a YAML file may use: ``match`` (equality; a list
    means any of), ``match_re`` (regex) and ``matchers`` (strings)."""
    out: list[Matcher] = []
    for name, value in (match or {}).items():
        if isinstance(value, list):
            out.append(Matcher.make(name, "=~", "|".join(re.escape(v) for v in value)))
        else:
            out.append(Matcher.make(name, "=", str(value)))
    for name, value in (match_re or {}).items():
        out.append(Matcher.make(name, "=~", value))
    out.extend(parse_all(matchers))
    return tuple(out)


def all_match(matchers: Iterable[Matcher], labels: Labels) -> bool:
    return all(m.matches(labels) for m in matchers)
