"""The SprintRelease API: pydantic models of spec and status.

These models are the single source of the CRD (see `crd.py`). Validation that the API
server must do lives here too, as schema constraints and CEL rules, so that a bad manifest
is rejected before the operator ever sees it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "sprintops.io"
VERSION = "v1alpha1"
KIND = "SprintRelease"
PLURAL = "sprintreleases"
SINGULAR = "sprintrelease"
SHORT_NAMES = ["sr"]

Cluster = Literal["even", "odd"]
CLUSTERS: tuple[Cluster, Cluster] = ("even", "odd")
Phase = Literal[
    "Pending",
    "Deploying",
    "Progressing",
    "Paused",
    "RollingBack",
    "RolledBack",
    "Succeeded",
    "Failed",
]
TERMINAL_PHASES: frozenset[str] = frozenset({"RolledBack", "Succeeded", "Failed"})


def other(cluster: Cluster) -> Cluster:
    return "odd" if cluster == "even" else "even"


def parity_cluster(sprint: int) -> Cluster:
    """Even sprints deploy to cluster even, odd ones to odd."""
    return "even" if sprint % 2 == 0 else "odd"


BUILTIN_METRICS = ("request-success-rate", "request-duration-p99")

# Go-style durations ("2s", "1m30s", "500ms"); CEL's duration() parses the same grammar.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

Duration = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=32)]
Name = Annotated[str, Field(min_length=1, max_length=253)]
Label = Annotated[str, Field(pattern=DNS1123_LABEL, max_length=63)]


def rules(*pairs: tuple[str, str] | tuple[str, str, str]) -> dict[str, Any]:
    """CEL `x-kubernetes-validations`: (rule, message[, fieldPath])."""
    out = []
    for pair in pairs:
        rule: dict[str, str] = {"rule": pair[0], "message": pair[1]}
        if len(pair) == 3:
            rule["fieldPath"] = pair[2]
        out.append(rule)
    return {"x-kubernetes-validations": out}


# On the whole object, because only there can a rule see the status: the Route 53 record and
# the VirtualService route are fixed while traffic is on the move, or a rollback would move
# the new target and leave the old one split.
OBJECT_RULES = rules(
    (
        "!has(oldSelf.status) || !has(oldSelf.status.weights) || !has(oldSelf.status.phase)"
        " || oldSelf.status.phase in ['RolledBack', 'Succeeded', 'Failed']"
        " || (self.spec.traffic.route53 == oldSelf.spec.traffic.route53"
        " && self.spec.traffic.istio == oldSelf.spec.traffic.istio)",
        "spec.traffic.route53 and spec.traffic.istio cannot change while the release's traffic "
        "is moving; abort the release first",
        ".spec.traffic",
    )
)


def _keyed_by_name(max_length: int) -> Any:
    """A list whose items' names are unique (the API server refuses a repeated one)."""
    extra: dict[str, Any] = {
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
    }
    return Field(max_length=max_length, json_schema_extra=extra)


class Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        frozen=True,
    )


class SecretKeyRef(Model):
    """A key of a Secret in the SprintRelease's namespace."""

    name: Name
    """Name of the Secret."""
    key: Annotated[str, Field(min_length=1, max_length=253)] = "kubeconfig"
    """Key in the Secret that holds the kubeconfig."""


class TokenSecretRef(Model):
    """A key of a Secret in the SprintRelease's namespace that holds a bearer token."""

    name: Name
    """Name of the Secret."""
    key: Annotated[str, Field(min_length=1, max_length=253)] = "token"
    """Key in the Secret that holds the token."""


class PrometheusRef(Model):
    """Where health checks are queried."""

    address: Annotated[str, Field(pattern=r"^https?://", max_length=2048)]
    """Prometheus base URL."""
    bearer_token_secret_ref: TokenSecretRef | None = None
    """Secret holding a bearer token sent with every query; default none."""


class ClusterRef(Model):
    """How the operator reaches one workload cluster, and where its metrics are."""

    kubeconfig_secret_ref: SecretKeyRef
    """Secret holding a kubeconfig for the cluster."""
    prometheus: PrometheusRef | None = None
    """The Prometheus holding this cluster's mesh metrics; default spec.analysis.prometheus,
    then the operator's own setting."""
    mesh_cluster: Name | None = None
    """The cluster's name in its mesh (Istio's destination_cluster label), filled in for
    {{ cluster }} in queries; default the key (even or odd)."""


class Clusters(Model):
    """The two workload clusters that take turns."""

    even: ClusterRef
    """The cluster that even sprints deploy to."""
    odd: ClusterRef
    """The cluster that odd sprints deploy to."""


class ServiceSpec(Model):
    """The service deployed to the idle cluster."""

    name: Annotated[
        Label, Field(json_schema_extra=rules(("self == oldSelf", "spec.service.name is immutable")))
    ]
    """Name of the Deployment and Service; immutable."""
    namespace: Label
    """Namespace of the Deployment and Service in the workload cluster."""
    replicas: Annotated[int, Field(ge=1, le=1000)] = 1
    """Replicas of the new Deployment."""
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    """Port the Service exposes and targets."""
    template: dict[str, Any]
    """A pod template (metadata and spec), applied as the Deployment's template."""


class HostedZone(Model):
    """The hosted zone, by id or by name; exactly one of the two."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "has(self.id) != has(self.name)",
                "spec.traffic.route53.hostedZone needs exactly one of id and name",
            )
        )
    )

    id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    """Hosted zone id, e.g. Z0123456789ABC."""
    name: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    """Hosted zone name, e.g. example.com."""


class AliasTarget(Model):
    """An alias target (A or AAAA records only)."""

    dns_name: Annotated[str, Field(min_length=1, max_length=255)]
    """DNS name of the alias target."""
    hosted_zone_id: Annotated[str, Field(min_length=1, max_length=64)]
    """Hosted zone id of the alias target."""
    evaluate_target_health: bool = False
    """Whether Route 53 evaluates the target's health."""


class WeightedRecord(Model):
    """One cluster's weighted record: a value or an alias, not both."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "has(self.value) != has(self.alias)",
                "spec.traffic.route53.records needs exactly one of value and alias per record",
            )
        )
    )

    set_identifier: Annotated[str, Field(min_length=1, max_length=128)]
    """SetIdentifier of the weighted record."""
    value: Annotated[str, Field(min_length=1, max_length=4000)] | None = None
    """Record value (e.g. the cluster's load balancer host name)."""
    alias: AliasTarget | None = None
    """Alias target instead of a value."""


class WeightedRecords(Model):
    """The weighted record of each cluster."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "self.even.setIdentifier != self.odd.setIdentifier",
                "spec.traffic.route53.records.odd.setIdentifier must differ from "
                "spec.traffic.route53.records.even.setIdentifier",
                ".odd.setIdentifier",
            )
        )
    )

    even: WeightedRecord
    """Record that sends traffic to the even cluster."""
    odd: WeightedRecord
    """Record that sends traffic to the odd cluster."""


class Route53(Model):
    """The Route 53 weighted record pair that splits traffic between the clusters."""

    hosted_zone: HostedZone
    """Hosted zone holding the records."""
    record_name: Annotated[str, Field(min_length=1, max_length=255)]
    """Fully qualified record name."""
    record_type: Literal["A", "AAAA", "CNAME"] = "CNAME"
    """Record type: A, AAAA or CNAME."""
    ttl: Annotated[int, Field(ge=0, le=172800)] = 60
    """TTL in seconds, shared by both records."""
    records: WeightedRecords
    """The even and odd records."""


class ObjectRef(Model):
    """A namespaced object."""

    name: Name
    """Name of the object."""
    namespace: Label
    """Namespace of the object."""


class Destination(Model):
    """A destination of the weighted route."""

    host: Annotated[str, Field(min_length=1, max_length=255)]
    """Destination host."""
    subset: Annotated[str, Field(max_length=63)] | None = None
    """Destination subset (e.g. selecting topology.istio.io/cluster)."""


class Destinations(Model):
    """The destination of each cluster in the route."""

    even: Destination
    """Destination that reaches the even cluster."""
    odd: Destination
    """Destination that reaches the odd cluster."""


class Istio(Model):
    """The Istio VirtualService whose named route is weighted."""

    virtual_service: ObjectRef
    """The VirtualService, present in every listed cluster."""
    route: Annotated[str, Field(min_length=1, max_length=253)]
    """Name of the http route whose destination weights are set."""
    clusters: Annotated[
        list[Cluster],
        Field(min_length=1, max_length=2, json_schema_extra={"x-kubernetes-list-type": "set"}),
    ] = ["even", "odd"]
    """Clusters holding a copy of the VirtualService."""
    destinations: Destinations
    """Destinations of the even and odd clusters."""


class Traffic(Model):
    """How traffic moves to the new cluster."""

    steps: Annotated[
        list[Annotated[int, Field(ge=1, le=100)]],
        Field(
            min_length=1,
            max_length=10,
            json_schema_extra=rules(
                (
                    "self.isSorted() && self.all(x, self.exists_one(y, y == x))",
                    "spec.traffic.steps must be strictly increasing",
                ),
                (
                    "size(self) == 0 || self[size(self) - 1] == 100",
                    "spec.traffic.steps must end at 100",
                ),
            ),
        ),
    ] = [10, 50, 100]
    """Percent of traffic on the new cluster at each step; strictly increasing, ends at 100."""
    route53: Route53
    """The Route 53 weighted record pair."""
    istio: Istio
    """The Istio VirtualService route."""


class Metric(Model):
    """A health check: a built-in metric or a custom PromQL query, with a threshold."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "has(self.min) || has(self.max)",
                "spec.analysis.metrics[].min or spec.analysis.metrics[].max is required",
            ),
            (
                f"has(self.query) || self.name in {list(BUILTIN_METRICS)!r}",
                "spec.analysis.metrics[].query is required unless name is a built-in metric "
                f"({', '.join(BUILTIN_METRICS)})",
            ),
        )
    )

    name: Annotated[str, Field(min_length=1, max_length=63)]
    """Metric name; a built-in name needs no query."""
    query: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    """PromQL; {{ cluster }}, {{ namespace }}, {{ service }} and {{ interval }} are filled in."""
    min_: float | None = Field(default=None, alias="min")
    """Lowest passing value."""
    max_: float | None = Field(default=None, alias="max")
    """Highest passing value."""


class EffectSize(Model):
    """How far the new cluster's mean may move from the old one's before a significant
    shift counts (Kayenta's effect size): ratios of the means, new / old."""

    allowed_increase: Annotated[float, Field(ge=1, le=100)] = 1.0
    """A significant rise is High only if the mean ratio is at least this (1: any rise)."""
    allowed_decrease: Annotated[float, Field(gt=0, le=1)] = 1.0
    """A significant drop is Low only if the mean ratio is at most this (1: any drop)."""


class ComparisonMetric(Model):
    """A metric compared between the new cluster and the old one over the same time."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                f"has(self.query) || self.name in {list(BUILTIN_METRICS)!r}",
                "spec.analysis.comparison.metrics[].query is required unless name is a "
                f"built-in metric ({', '.join(BUILTIN_METRICS)})",
            ),
        )
    )

    name: Annotated[str, Field(min_length=1, max_length=63)]
    """Metric name; a built-in name needs no query."""
    query: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    """PromQL for one cluster; {{ cluster }}, {{ namespace }}, {{ service }} and
    {{ interval }} are filled in, once per cluster."""
    direction: Literal["increase", "decrease", "either"] | None = None
    """Which change is a regression. Default: decrease for request-success-rate, increase
    for request-duration-p99, either for a query."""
    effect_size: EffectSize = EffectSize()
    """How large a significant change must be to count."""
    critical: bool = False
    """A critical metric that regresses fails the round whatever the score."""


class Comparison(Model):
    """The new cluster judged against the old one, which serves the same traffic at the same
    time with last sprint's build (Kayenta's NetflixACAJudge: Mann-Whitney U)."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "self.marginal <= self.pass",
                "spec.analysis.comparison.marginal must not be above spec.analysis.comparison.pass",
                ".marginal",
            ),
        )
    )

    confidence: Annotated[float, Field(ge=0.5, le=0.999)] = 0.98
    """Confidence of the shift's interval."""
    pass_: Annotated[int, Field(ge=0, le=100, alias="pass")] = 95
    """Score (percent of judged metrics that pass) at or above which the round passes."""
    marginal: Annotated[int, Field(ge=0, le=100)] = 75
    """Score at or above which a round that does not pass holds; below it the round fails."""
    nan_strategy: Literal["remove", "replace"] = "remove"
    """NaN samples are removed, or replaced by 0."""
    remove_outliers: bool = False
    """Drop samples beyond 1.5 IQR outside the quartiles before judging."""
    metrics: Annotated[
        list[ComparisonMetric],
        Field(
            min_length=1,
            max_length=20,
            json_schema_extra={
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
            },
        ),
    ]
    """The metrics compared; names are unique."""


class Analysis(Model):
    """Health gates between steps."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "duration(self.interval) <= duration(self.bakeTime)",
                "spec.analysis.interval must not be longer than spec.analysis.bakeTime",
                ".interval",
            ),
            (
                "duration(self.interval) + duration(self.bakeTime)"
                " <= duration(self.progressDeadline)",
                "spec.analysis.progressDeadline must leave room for one interval and the bake: "
                "a step's bake starts at a check round, once its traffic has arrived",
                ".progressDeadline",
            ),
        )
    )

    interval: Duration = "10s"
    """Time between health checks (Go duration, e.g. 10s)."""
    bake_time: Duration = "1m"
    """How long each step must stay healthy before the next (Go duration)."""
    failure_limit: Annotated[int, Field(ge=1, le=100)] = 2
    """Consecutive failed checks that trigger rollback."""
    no_data: Literal["hold", "fail", "pass"] = "hold"
    """What a query without samples counts as: hold, fail or pass."""
    progress_deadline: Duration = "10m"
    """A step that cannot pass its checks for this long is rolled back (Go duration)."""
    prometheus: PrometheusRef | None = None
    """Prometheus to query for both clusters unless spec.clusters.<key>.prometheus says
    otherwise; default is the operator's own setting."""
    metrics: Annotated[
        list[Metric],
        _keyed_by_name(20),
    ] = []
    """Health checks; names are unique."""
    comparison: Comparison | None = None
    """The new cluster against the old one, same time, same traffic."""
    min_requests: Annotated[int, Field(ge=0, le=1_000_000_000)] = 50
    """Requests the new cluster must have served in a check round's window; a round with
    fewer counts as no data (noData decides). 0 turns this off."""
    traffic_tolerance: Annotated[float, Field(ge=0, le=100)] = 2
    """A step's bake starts once the share of requests observed on the new cluster is
    within this many percentage points of the step's weight. 100 turns the wait off."""


class Rollback(Model):
    """What happens when a health gate fails."""

    automatic: bool = True
    """Roll back on failure; when false, the release pauses for a person instead."""


class Idle(Model):
    """The previous cluster after success."""

    scale_down_after: Duration = "1h"
    """The previous cluster's Deployment is scaled to 0 this long after success."""


GateType = Literal["pre-rollout", "confirm-step", "confirm-promotion", "post-rollout"]
Day = Literal["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
DAYS: tuple[Day, ...] = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
CLOCK_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class Gate(Model):
    """A go/no-go answered by an outside system (a webhook the operator's admin defined) or
    by a person (`kubectl sprint approve`)."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "has(self.webhook) != (has(self.manual) && self.manual)",
                "spec.gates[] needs exactly one of webhook and manual: true",
            ),
            (
                "self.type != 'post-rollout' || !has(self.manual) || !self.manual",
                "spec.gates[]: a post-rollout gate only informs; it cannot be manual",
                ".manual",
            ),
        )
    )

    name: Label
    """Gate name, unique in the release; shown in status and Events."""
    type: GateType
    """When it is asked: pre-rollout (before any traffic moves), confirm-step (before each
    increase), confirm-promotion (before 100%) or post-rollout (after success; informs)."""
    webhook: Label | None = None
    """Name of a gate endpoint in the operator's configuration. A release never names a
    URL: whoever may write a SprintRelease cannot make the operator call one."""
    manual: bool = False
    """A person approves with `kubectl sprint approve`."""


class Window(Model):
    """Weekly hours in which traffic may increase."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "self.start != self.end",
                "spec.schedule.windows[].end must differ from start",
                ".end",
            ),
        )
    )

    days: Annotated[
        list[Day],
        Field(min_length=1, max_length=7, json_schema_extra={"x-kubernetes-list-type": "set"}),
    ]
    """Days the window opens on (Mon..Sun), in its time zone."""
    start: Annotated[str, Field(pattern=CLOCK_PATTERN, max_length=5)]
    """Opening time, HH:MM."""
    end: Annotated[str, Field(pattern=CLOCK_PATTERN, max_length=5)]
    """Closing time, HH:MM; before start means the window runs past midnight."""
    time_zone: Annotated[
        str,
        Field(
            min_length=1,
            max_length=64,
            # A name, never an offset: CEL also takes "+05:30" and "Local", which are no
            # IANA zone. An unknown name fails the evaluation, which the apiserver reports.
            pattern=r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$",
            json_schema_extra=rules(
                (
                    "self != 'Local' && timestamp('2000-01-01T00:00:00Z').getHours(self) >= 0",
                    "spec.schedule.windows[].timeZone must be an IANA time zone, "
                    "e.g. Europe/Berlin",
                )
            ),
        ),
    ] = "UTC"
    """IANA time zone of the days and times, e.g. Europe/Berlin."""


class Schedule(Model):
    """When traffic may increase. Rollbacks and aborts are never held."""

    windows: Annotated[list[Window], Field(max_length=20)] = []
    """Change windows; outside all of them the release holds before its next increase.
    None listed: always open."""


class Notifications(Model):
    """Who hears about the release."""

    receivers: Annotated[
        list[Label], Field(max_length=10, json_schema_extra={"x-kubernetes-list-type": "set"})
    ] = []
    """Names of receivers in the operator's configuration, besides its default ones."""


class SprintReleaseSpec(Model):
    """A sprint's release of one service, rolled from the live cluster to the idle one."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "!has(self.traffic.route53.records.even.alias) && "
                "!has(self.traffic.route53.records.odd.alias) || "
                "self.traffic.route53.recordType in ['A', 'AAAA']",
                "spec.traffic.route53.recordType must be A or AAAA for an alias record",
                ".traffic.route53.recordType",
            ),
        )
    )

    sprint: Annotated[
        int,
        Field(
            ge=0,
            le=1_000_000,
            json_schema_extra=rules(("self == oldSelf", "spec.sprint is immutable")),
        ),
    ]
    """Sprint number; even sprints deploy to cluster even, odd ones to odd. Immutable."""
    service: ServiceSpec
    """The service to deploy."""
    clusters: Clusters
    """The two workload clusters."""
    traffic: Traffic
    """Traffic steps, Route 53 and Istio."""
    analysis: Analysis = Analysis()
    """Health gates."""
    rollback: Rollback = Rollback()
    """Rollback behaviour."""
    idle: Idle = Idle()
    """What happens to the previous cluster."""
    gates: Annotated[
        list[Gate],
        _keyed_by_name(20),
    ] = []
    """Go/no-go answers from outside systems and people; names are unique."""
    schedule: Schedule = Schedule()
    """Change windows."""
    notifications: Notifications = Notifications()
    """Receivers told about the release's progress."""


class Weights(Model):
    """Traffic percent per cluster; the pair sums to 100."""

    even: Annotated[int, Field(ge=0, le=100)] = 0
    """Percent on the even cluster."""
    odd: Annotated[int, Field(ge=0, le=100)] = 0
    """Percent on the odd cluster."""

    def of(self, cluster: Cluster) -> int:
        return self.even if cluster == "even" else self.odd

    @staticmethod
    def split(cluster: Cluster, percent: int) -> Weights:
        """`percent` on `cluster`, the rest on the other one."""
        rest = 100 - percent
        if cluster == "even":
            return Weights(even=percent, odd=rest)
        return Weights(even=rest, odd=percent)

    @property
    def live(self) -> Cluster | None:
        """The cluster carrying all traffic, if one does."""
        if self.even > 0 and self.odd == 0:
            return "even"
        if self.odd > 0 and self.even == 0:
            return "odd"
        return None


class CheckResult(Model):
    """One health check result."""

    metric: str
    """Metric name."""
    value: float | None = None
    """Observed value; absent when there was no data or Prometheus failed."""
    threshold: str
    """Threshold, e.g. '>= 99' or '<= 500'."""
    passed: bool
    """Whether the check passed."""
    verdict: Literal["pass", "fail", "hold", "noData", "error"] = "pass"
    """pass, fail, hold, noData (counted as analysis.noData says) or error (Prometheus)."""
    time: str
    """When the check ran (RFC 3339)."""
    step_index: int | None = None
    """Step the check belonged to."""
    note: str | None = None
    """Why there was no value: no samples, NaN, several series, or the Prometheus error."""


class Condition(Model):
    """A standard Kubernetes condition."""

    type: Literal["Ready", "Progressing", "Degraded"]
    """Ready, Progressing or Degraded."""
    status: Literal["True", "False", "Unknown"]
    """True, False or Unknown."""
    reason: str = ""
    """One-word CamelCase reason."""
    message: str = ""
    """Human-readable detail."""
    last_transition_time: str | None = None
    """When the status last changed (RFC 3339)."""
    observed_generation: int | None = None
    """Generation the condition was computed for."""


class Controls(Model):
    """Manual requests, as tokens (RFC 3339 times): the operator acts on a token once.

    Set on the object as annotations `sprintops.io/<verb>` (what `kubectl sprint` does), and
    echoed in status.controls once handled."""

    pause: str | None = None
    """Token of a pause request."""
    resume: str | None = None
    """Token of a resume request."""
    abort: str | None = None
    """Token of an abort (roll back now) request."""
    promote: str | None = None
    """Token of a promote request; 'force:' in front also skips failing checks."""
    approve: str | None = None
    """Token of an approval of the manual gates the release waits for; '/by:NAME' after
    the time says who (as their client reported it)."""


class ObservedTraffic(Model):
    """Requests that really arrived, from Prometheus; absent where it had no answer."""

    even: float | None = None
    """Percent of the requests served by cluster even."""
    odd: float | None = None
    """Percent of the requests served by cluster odd."""
    requests: float | None = None
    """Requests the new cluster served in the window."""
    time: str
    """When it was observed (RFC 3339)."""


class Hold(Model):
    """Why a release that could take its next increase does not (yet)."""

    reason: Literal["freeze", "window", "gate", "approval"]
    """freeze, window, gate (an outside system) or approval (a person)."""
    step: int
    """Index into spec.traffic.steps of the increase held."""
    since: str
    """When this hold began (RFC 3339)."""
    counts: bool = False
    """Whether it counts toward spec.analysis.progressDeadline (a gate that does not
    answer); a freeze, a closed window, a refusal or a person's wait does not."""
    approved: list[str] = []
    """Gates that said go for this increase."""
    ready_at: str | None = None
    """When the step was last ready to go (baked, checks passing) during this hold: checks
    that stop passing for progressDeadline end a hold that does not count."""
    heard: list[str] = []
    """Gate answers (gate:verdict) audited during this hold: each once, however a flaky
    gate alternates."""


class ApprovalWait(Model):
    """A step's wait for a person: the approval token standing when it began never counts,
    only one set during the wait (a client's clock is not trusted)."""

    step: int
    """Index into spec.traffic.steps of the increase waited for."""
    standing: str | None = None
    """The sprintops.io/approve annotation when the wait began."""
    since: str
    """When the wait began (RFC 3339)."""


class Decision(Model):
    """A decision made by a person or an outside system, kept for the audit."""

    time: str
    """When it was seen (RFC 3339)."""
    kind: Literal["gate", "approval", "freeze", "window"]
    """gate, approval, freeze or window."""
    name: str
    """The gate, the approver, or what held."""
    step: int
    """The step (1-based) the decision was about."""
    verdict: Literal["approved", "refused", "unanswered", "held", "cleared"]
    """approved, refused, unanswered, held or cleared."""
    by: str | None = None
    """Who: the person as their client reported it, or the gate's endpoint name."""
    message: str = ""
    """The answer in short."""


class Notice(Model):
    """A notification waiting for delivery; kept until every receiver took it or gave up,
    so a restarted operator delivers it again (at least once)."""

    key: str
    """Idempotency key, the same in every delivery of this notification."""
    event: str
    """release.started, step.applied, release.paused, release.resumed, release.held,
    release.rolledBack, release.succeeded, release.failed or drift.corrected."""
    time: str
    """When it happened (RFC 3339)."""
    message: str = ""
    """What the status said."""
    phase: Phase | None = None
    """The release's phase then."""
    step: str | None = None
    """Progress as n/m then."""
    weights: Weights | None = None
    """The weights then."""
    failing: list[str] = []
    """Checks that failed in the last round then."""


class StepRecord(Model):
    """When a step started and finished."""

    weight: int
    """The new cluster's weight at this step."""
    started_at: str
    """When the weights were applied (RFC 3339)."""
    baked_from: str | None = None
    """When the observed share reached the step's weight and the bake began (RFC 3339)."""
    completed_at: str | None = None
    """When the step's gate passed (RFC 3339)."""


class SprintReleaseStatus(Model):
    """What the operator knows; a restarted operator resumes from here."""

    phase: Phase | None = None
    """Pending, Deploying, Progressing, Paused, RollingBack, RolledBack, Succeeded or Failed."""
    target_cluster: Cluster | None = None
    """The cluster this release deploys to."""
    previous_cluster: Cluster | None = None
    """The cluster that was live before."""
    step_index: int | None = None
    """Index into spec.traffic.steps of the step applied last; absent before the first."""
    step: str | None = None
    """Progress as n/m, for printing."""
    target_weight: int | None = None
    """The new cluster's percent of traffic, for printing; while rolling back, the most it
    may still carry until the retreat is done."""
    weights: Weights | None = None
    """Weights last written to Route 53 and every VirtualService copy."""
    step_started_at: str | None = None
    """When the current step's weights were applied (RFC 3339)."""
    bake_started_at: str | None = None
    """When the current step's traffic arrived and its bake began (RFC 3339)."""
    observed_traffic: ObservedTraffic | None = None
    """The share of requests each cluster served over the last check round's window."""
    deploy_started_at: str | None = None
    """When the new Deployment was first applied (RFC 3339)."""
    deployment_available_at: str | None = None
    """When the new Deployment was first observed Available (RFC 3339)."""
    steps: list[StepRecord] = []
    """Per-step timings."""
    consecutive_failures: int = 0
    """Failed checks in a row in the current step."""
    last_check_at: str | None = None
    """When the current step was last checked (RFC 3339)."""
    last_check_passed: bool | None = None
    """Whether every check of the last round passed."""
    promotion: Literal["skipBakes", "force"] | None = None
    """Set by promote: skipBakes skips the remaining bakes; force also skips the checks."""
    controls: Controls | None = None
    """The manual requests already acted on."""
    analysis: Annotated[list[CheckResult], Field(max_length=100)] = []
    """Recent check results, newest last; bounded."""
    conditions: Annotated[
        list[Condition],
        Field(
            max_length=8,
            json_schema_extra={
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
        ),
    ] = []
    """Ready, Progressing and Degraded."""
    observed_generation: int | None = None
    """The spec generation the status reflects."""
    message: str | None = None
    """Why the release is where it is."""
    completed_at: str | None = None
    """When the release reached a terminal phase (RFC 3339)."""
    scale_down_at: str | None = None
    """When the previous cluster's Deployment is due to be scaled to 0 (RFC 3339)."""
    scaled_down_at: str | None = None
    """When the previous cluster's Deployment was scaled to 0 (RFC 3339)."""
    scale_down_skipped: str | None = None
    """Why the previous cluster's Deployment was left running after all."""
    paused_at: str | None = None
    """When the release was paused (RFC 3339); it holds until a resume newer than this."""
    pause_reason: str | None = None
    """PausedByRequest or ChecksFailed."""
    blocked_since: str | None = None
    """When the blocker in status.message was first seen (RFC 3339); counts toward
    spec.analysis.progressDeadline."""
    spec_hash: str | None = None
    """Hash of what shapes the rollout (service, traffic, analysis) as this run started it."""
    hold: Hold | None = None
    """What holds the next increase: a freeze, a change window, a gate or an approval."""
    held_seconds: float = 0
    approval_wait: ApprovalWait | None = None
    """The approval the next increase waits for, while it does."""
    """Seconds of this step's finished holds that do not count toward progressDeadline."""
    decisions: Annotated[list[Decision], Field(max_length=100)] = []
    """Gate answers, approvals, freezes and windows that held, newest last; bounded."""
    outbox: Annotated[list[Notice], Field(max_length=50)] = []
    """Notifications not yet delivered to every receiver."""
    notification_errors: Annotated[list[str], Field(max_length=10)] = []
    """Notifications that a receiver never took, newest last; bounded."""
    pending_copies: Annotated[
        list[Cluster], Field(max_length=2, json_schema_extra={"x-kubernetes-list-type": "set"})
    ] = []
    """VirtualService copies not yet at status.weights (their cluster did not answer);
    repaired when it returns."""

    def merge_patch(self, stored: dict[str, Any] | None) -> dict[str, Any]:
        """A JSON merge patch from the stored status to this one: unset fields become null
        (removed), and no null is ever sent inside a value, where the schema would reject it."""
        patch: dict[str, Any] = self.model_dump(by_alias=True, exclude_none=True, mode="json")
        for key in stored or {}:
            patch.setdefault(key, None)
        return patch
