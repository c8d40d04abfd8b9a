"""Route 53 weighted record pairs: read the live split, write both weights in one batch."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from sprintops import metrics
from sprintops.api import CLUSTERS, Route53, Weights

if TYPE_CHECKING:
    from mypy_boto3_route53 import Route53Client

MAX_WEIGHT = 255  # Route 53's own limit; moto does not enforce it, so we do.


class WeightError(ValueError):
    pass


def make_client() -> Route53Client:
    # `standard` retries Throttling and PriorRequestNotComplete with backoff; set it explicitly.
    # The endpoint comes from AWS_ENDPOINT_URL_ROUTE_53 when set (boto3 reads it itself).
    cfg = Config(
        retries={"mode": "standard", "max_attempts": 8}, connect_timeout=5, read_timeout=10
    )
    client: Route53Client = boto3.client("route53", config=cfg)
    client.meta.events.register("before-send.route53", _count_request)
    client.meta.events.register("after-call.route53", _count_error)
    return client


def _count_request(event_name: str, **_: Any) -> None:
    # Every HTTP attempt ("before-send.route53.<Operation>"), so retries are counted too.
    metrics.ROUTE53_REQUESTS.labels(event_name.rsplit(".", 1)[-1]).inc()


def _count_error(parsed: dict[str, Any], model: Any, **_: Any) -> None:
    error = parsed.get("Error") if isinstance(parsed, dict) else None
    if error:
        metrics.ROUTE53_ERRORS.labels(model.name, error.get("Code", "Unknown")).inc()


def validate(even: int, odd: int) -> None:
    for name, w in (("even", even), ("odd", odd)):
        if not 0 <= w <= MAX_WEIGHT:
            raise WeightError(f"weight of {name} is {w}, outside Route 53's 0..{MAX_WEIGHT}")
    if even == 0 and odd == 0:
        # All-zero makes Route 53 answer every record equally: traffic split by accident.
        raise WeightError("weights 0/0 would split traffic equally")


class Route53Pairs:
    def __init__(self, client: Route53Client | None = None) -> None:
        self.client = client or make_client()
        self._zone_ids: dict[str, str] = {}

    def zone_id(self, spec: Route53) -> str:
        if spec.hosted_zone.id:
            return spec.hosted_zone.id.removeprefix("/hostedzone/")
        name = _fqdn(spec.hosted_zone.name or "")
        if name not in self._zone_ids:
            found = self.client.list_hosted_zones_by_name(DNSName=name, MaxItems="1")
            zones = [z for z in found["HostedZones"] if z["Name"] == name]
            if not zones:
                raise LookupError(f"hosted zone {name} not found")
            self._zone_ids[name] = zones[0]["Id"].removeprefix("/hostedzone/")
        return self._zone_ids[name]

    def read(self, spec: Route53) -> Weights | None:
        """The pair's current weights, or None when a record of the pair does not exist."""
        name = _fqdn(spec.record_name)
        found: dict[str, int] = {}
        # One page holds the pair: records are listed in name order starting at ours.
        # (A small MaxItems makes moto page forever, so take the default page size.)
        page = self.client.list_resource_record_sets(
            HostedZoneId=self.zone_id(spec), StartRecordName=name, StartRecordType=spec.record_type
        )
        ids = {spec.records.even.set_identifier: "even", spec.records.odd.set_identifier: "odd"}
        for rrset in page["ResourceRecordSets"]:
            if rrset["Name"] != name or rrset["Type"] != spec.record_type:
                continue
            cluster = ids.get(rrset.get("SetIdentifier", ""))
            if cluster is not None and "Weight" in rrset:
                found[cluster] = rrset["Weight"]
        if set(found) != set(CLUSTERS):
            return None
        # Route 53 allows up to 255; this pair is always written as percentages.
        return Weights.model_construct(even=found["even"], odd=found["odd"])

    def changes(self, spec: Route53, weights: Weights) -> list[dict[str, Any]]:
        validate(weights.even, weights.odd)
        out = []
        for cluster in CLUSTERS:
            record = getattr(spec.records, cluster)
            rrset: dict[str, Any] = {
                "Name": _fqdn(spec.record_name),
                "Type": spec.record_type,
                "SetIdentifier": record.set_identifier,
                "Weight": weights.of(cluster),
            }
            if record.alias is not None:
                rrset["AliasTarget"] = {
                    "DNSName": record.alias.dns_name,
                    "HostedZoneId": record.alias.hosted_zone_id,
                    "EvaluateTargetHealth": record.alias.evaluate_target_health,
                }
            else:
                rrset["TTL"] = spec.ttl
                rrset["ResourceRecords"] = [{"Value": record.value}]
            out.append({"Action": "UPSERT", "ResourceRecordSet": rrset})
        return out

    def write(self, spec: Route53, weights: Weights, comment: str = "sprintops") -> str:
        """UPSERTs both records in ONE batch (atomic on Route 53); returns the change id."""
        response = self.client.change_resource_record_sets(
            HostedZoneId=self.zone_id(spec),
            ChangeBatch={"Comment": comment, "Changes": self.changes(spec, weights)},  # type: ignore[typeddict-item]
        )
        return response["ChangeInfo"]["Id"]

    def wait_insync(self, change_id: str, timeout: float = 300.0, poll: float = 1.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            status = self.client.get_change(Id=change_id)["ChangeInfo"]["Status"]
            if status == "INSYNC":
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"Route 53 change {change_id} still {status} after {timeout:.0f}s"
                )
            time.sleep(poll)


def _fqdn(name: str) -> str:
    return name if name.endswith(".") else name + "."
