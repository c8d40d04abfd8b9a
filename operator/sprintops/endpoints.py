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

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic.alias_generators import to_camel

from sprintops.api import DNS1123_LABEL, Duration


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid"
    )


class Endpoint(_Model):
    # SecretStr: a URL with a token in it never prints, not even in a validation error.
    url: SecretStr
    bearer_token: SecretStr | None = None
    timeout: Duration = "5s"


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


def load(path: str | None) -> Endpoints:
    """The configured endpoints; none without a file."""
    if not path:
        return Endpoints()
    text = Path(path).read_text()
    return Endpoints.model_validate(yaml.safe_load(text) or {})
