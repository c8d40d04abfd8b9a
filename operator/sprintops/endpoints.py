"""Gate endpoints and notification receivers, defined by the operator's admin.

They come from a file (the chart mounts it from a Secret: URLs and tokens are secrets), and
a SprintRelease refers to them by name only. So whoever may write a release cannot make the
operator call a URL of their choosing inside the cluster (no server-side request forgery).

    gates:
      change-board: {url: https://cab.example.com/sprintops, timeout: 5s}
    receivers:
      releases-slack: {type: slack, url: https://hooks.slack.com/services/..., default: true}
      audit: {type: webhook, url: https://audit.example.com/hooks, bearerToken: ...}
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from sprintops.api import DNS1123_LABEL, Duration
from sprintops.durations import seconds

# Bounds of a call: a round waits for its gates, so a rollback may wait as long too.
TIMEOUT_RANGE = (0.5, 30.0)


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid"
    )


class Endpoint(_Model):
    # SecretStr: a URL with a token in it never prints, not even in a validation error.
    url: SecretStr
    bearer_token: SecretStr | None = None
    timeout: Duration = "5s"

    @field_validator("url")
    @classmethod
    def _http(cls, url: SecretStr) -> SecretStr:
        text = url.get_secret_value()
        try:
            parsed = urlsplit(text)
            host = parsed.hostname or ""
            host.encode("idna")  # an empty or overlong label is refused here, not mid-call
            port = parsed.port  # raises on a port that is not a number
        except (ValueError, UnicodeError):
            raise ValueError("not a URL") from None
        if parsed.scheme not in ("http", "https") or not host or port == 0:
            raise ValueError("not an http(s) URL with a host")
        if any(c.isspace() for c in host):
            raise ValueError("not a URL")
        if any(ord(c) < 32 or ord(c) == 127 for c in text):
            raise ValueError("a control character in the URL")
        return url

    @field_validator("bearer_token")
    @classmethod
    def _header_safe(cls, token: SecretStr | None) -> SecretStr | None:
        if token is None:
            return None
        # A trailing newline is what `--set-file` and YAML's `|` leave: not part of it.
        text = token.get_secret_value().strip()
        if not text or any(ord(c) < 32 or ord(c) == 127 for c in text):
            raise ValueError("empty, or a control character in the token")
        return SecretStr(text)

    @field_validator("timeout")
    @classmethod
    def _bounded(cls, timeout: str) -> str:
        low, high = TIMEOUT_RANGE
        if not low <= seconds(timeout) <= high:
            raise ValueError(f"must be between {low:g}s and {high:g}s")
        return timeout


class Receiver(Endpoint):
    type: Literal["webhook", "slack"] = "webhook"
    # Told about every release, named or not.
    default: bool = False


Name = Annotated[str, Field(pattern=DNS1123_LABEL, max_length=63)]


class Endpoints(_Model):
    gates: dict[Name, Endpoint] = {}
    receivers: dict[Name, Receiver] = {}

    def receivers_for(self, named: list[str]) -> tuple[list[str], list[str]]:
        """The receivers of a release: the default ones and those it names, and the names
        it gives that are not defined."""
        chosen = [n for n, r in self.receivers.items() if r.default]
        chosen += [n for n in named if n in self.receivers and n not in chosen]
        return chosen, [n for n in named if n not in self.receivers]


class EndpointsError(ValueError):
    """What is wrong with the endpoints file, without a word of its secrets."""


def load(path: str | None) -> Endpoints:
    """The configured endpoints; none without a file. Errors name the place, never the
    value: a typo must not print a URL or a token into the log."""
    if not path:
        return Endpoints()
    text = Path(path).read_text()
    try:
        return Endpoints.model_validate(yaml.safe_load(text) or {})
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise EndpointsError(f"{path}: not YAML{where}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{_where(e['loc'])}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False)[:5]
        )
        raise EndpointsError(f"{path}: {problems}") from None


_FIELDS = {"gates", "receivers", "url", "bearerToken", "timeout", "type", "default"}


def _where(loc: tuple[int | str, ...]) -> str:
    """Where in the file, in words that are no secret: a typo's key may be a URL or a token
    that lost its colon, so only known fields and endpoint names are said."""
    named = [str(p) for p in loc if p != "[key]"]
    return ".".join(
        p
        if p in _FIELDS or (i == 1 and re.fullmatch(DNS1123_LABEL, p))  # an endpoint's name
        else "<unknown key>"
        for i, p in enumerate(named)
    )
