"""Manual controls: pause, resume, abort and promote, as annotations with a token.

Annotations, because Argo CD syncs the spec from Git with selfHeal: a field it does not
manage is left alone, so a person's request is neither reverted nor fought over. The token
(an RFC 3339 time) makes each request count once; the operator echoes the handled tokens in
status.controls.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from kubernetes import client

from sprintops import api
from sprintops.durations import timestamp
from sprintops.kube import merge_patch, object_path

Verb = Literal["pause", "resume", "abort", "promote", "approve"]
PREFIX = f"{api.GROUP}/"


def annotation(verb: Verb) -> str:
    return PREFIX + verb


def request(
    mgmt: client.ApiClient,
    namespace: str,
    name: str,
    verb: Verb,
    *,
    force: bool = False,
    by: str | None = None,
    now: dt.datetime | None = None,
) -> str:
    """Sets the request's annotation; returns its token. `by` names who asked (an
    approval's audit), as their client reports it."""
    token = timestamp(now or dt.datetime.now(dt.UTC))
    if by:
        token += "/by:" + by
    if force:
        if verb != "promote":
            raise ValueError("only promote can be forced")
        token = "force:" + token
    path = object_path(f"{api.GROUP}/{api.VERSION}", api.KIND, namespace, name)
    merge_patch(mgmt, path, {"metadata": {"annotations": {annotation(verb): token}}})
    return token
