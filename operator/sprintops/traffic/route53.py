"""Route 53 weighted record pairs: read the live split, write both weights in one batch.

All releases share one Route53Pairs, so they share its request budget: writes due together
for one hosted zone go out as one change batch, reads of one zone as one listing, and every
request is paced (see pacing.py).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from sprintops import metrics
from sprintops.api import CLUSTERS, Route53, Weights
from sprintops.traffic.pacing import GroupCommit, Pacer
from sprintops.traffic.propagation import Propagation

if TYPE_CHECKING:
    from mypy_boto3_route53 import Route53Client

INSYNC_TIMEOUT = 300.0  # Route 53 propagates within 60 s; five times that is a fault
MAX_WEIGHT = 255  # Route 53's own limit; moto does not enforce it, so we do.
# Change batch quotas: ResourceRecord elements and characters of their values, where an
# UPSERT counts twice (a delete and a create).
MAX_BATCH_ELEMENTS = 1000
MAX_BATCH_CHARS = 32_000
Change = dict[str, Any]


# Errors no retry fixes: a release that meets one fails and says why.
PERMANENT_CODES = frozenset(
    {"InvalidChangeBatch", "InvalidInput", "NoSuchHostedZone", "AccessDenied", "InvalidArgument"}
)


def error_code(exc: BaseException) -> str | None:
    return exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else None


class WeightError(ValueError):
    pass


class ZoneNotFound(LookupError):
    """The spec names a hosted zone that does not exist: no retry can fix it."""


def make_client() -> Route53Client:
    # Imported here: boto3 and a client's service model are ~18 MB an idle operator never needs.
    import boto3
    from botocore.config import Config

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


def batch_size(changes: list[Change]) -> tuple[int, int]:
    """(ResourceRecord elements, characters of values) as Route 53's quotas count them."""
    elements = chars = 0
    for change in changes:
        times = 2 if change["Action"] == "UPSERT" else 1
        values = [r["Value"] for r in change["ResourceRecordSet"].get("ResourceRecords", [])]
        elements += times * len(values)
        chars += times * sum(len(v) for v in values)
    return elements, chars


def _record_keys(changes: list[Change]) -> set[tuple[str, str, str]]:
    return {
        (
            c["ResourceRecordSet"]["Name"],
            c["ResourceRecordSet"]["Type"],
            c["ResourceRecordSet"].get("SetIdentifier", ""),
        )
        for c in changes
    }


def fitting(batches: list[list[Change]]) -> int:
    """How many of the queued change lists, from the front, fit into one change batch:
    within the quotas, and no record twice (Route 53 rejects a batch that repeats one)."""
    elements = chars = 0
    seen: set[tuple[str, str, str]] = set()
    for count, changes in enumerate(batches):
        more_elements, more_chars = batch_size(changes)
        keys = _record_keys(changes)
        elements, chars = elements + more_elements, chars + more_chars
        if count and (elements > MAX_BATCH_ELEMENTS or chars > MAX_BATCH_CHARS or keys & seen):
            return count
        seen |= keys
    return len(batches)


def pair_of(spec: Route53, rrsets: Iterable[Mapping[str, Any]]) -> Weights | None:
    """The pair's weights among listed record sets, or None when a record of it is missing."""
    name = _fqdn(spec.record_name)
    ids = {spec.records.even.set_identifier: "even", spec.records.odd.set_identifier: "odd"}
    found: dict[str, int] = {}
    for rrset in rrsets:
        if rrset["Name"] != name or rrset["Type"] != spec.record_type:
            continue
        cluster = ids.get(rrset.get("SetIdentifier", ""))
        if cluster is not None and "Weight" in rrset:
            found[cluster] = rrset["Weight"]
    if set(found) != set(CLUSTERS):
        return None
    # Route 53 allows up to 255; this pair is always written as percentages.
    return Weights.model_construct(even=found["even"], odd=found["odd"])


def upserts(spec: Route53, weights: Weights) -> list[Change]:
    """Both records of the pair with their new weights."""
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


class Route53Pairs:
    """`max_rate` requests per second at most (0: unpaced), for everything sent through it;
    `burst` as the account's token bucket has it (0: `max_rate` in any second, see Pacer).
    A zone's change batches go out `write_spacing` seconds apart at least, so releases that
    step within that time of each other share one; a lone caller, long after the last one,
    goes at once. Its listings likewise `read_spacing` apart (0: shared only by reads due
    together; a fleet sets it, see config.py)."""

    def __init__(
        self,
        client: Route53Client | None = None,
        max_rate: float = 0.0,
        burst: int = 0,
        write_spacing: float = 0.0,
        read_spacing: float = 0.0,
    ) -> None:
        self.pacer = Pacer(max_rate, burst)
        self._client = client and self._adopt(client)
        self._client_lock = threading.Lock()
        self._zone_ids: dict[str, str] = {}
        self._zone_pages: dict[str, int] = {}  # pages of each zone's last whole listing
        self._reads: GroupCommit[str, Route53, Weights | None] = GroupCommit(
            self._read_zone, settle=self._settle, spacing=read_spacing
        )
        self._writes: GroupCommit[str, list[Change], str] = GroupCommit(
            self._write_zone, take=fitting, settle=self._settle, spacing=write_spacing
        )
        self._propagation = Propagation()
        self._change_lock = threading.Lock()
        self._poll_lock = threading.Lock()

    @property
    def client(self) -> Route53Client:
        """Made on first use, so a fleet of finished releases never loads boto3."""
        with self._client_lock:
            if self._client is None:
                self._client = self._adopt(make_client())
            return self._client

    def _adopt(self, client: Route53Client) -> Route53Client:
        if self.pacer.count:
            client.meta.events.register("before-send.route53", self._pace)
        return client

    def _pace(self, **_: Any) -> None:
        metrics.ROUTE53_PACING_SECONDS.inc(self.pacer.wait())

    def _settle(self) -> None:
        metrics.ROUTE53_PACING_SECONDS.inc(self.pacer.settle())

    def _known_zone_id(self, spec: Route53) -> str | None:
        """The zone id without a request: given, or looked up before."""
        if spec.hosted_zone.id:
            return spec.hosted_zone.id.removeprefix("/hostedzone/")
        return self._zone_ids.get(_fqdn(spec.hosted_zone.name or ""))

    def zone_id(self, spec: Route53) -> str:
        known = self._known_zone_id(spec)
        if known is not None:
            return known
        name = _fqdn(spec.hosted_zone.name or "")
        if name not in self._zone_ids:
            found = self.client.list_hosted_zones_by_name(DNSName=name, MaxItems="1")
            zones = [z for z in found["HostedZones"] if z["Name"] == name]
            if not zones:
                raise ZoneNotFound(f"hosted zone {name} not found")
            self._zone_ids[name] = zones[0]["Id"].removeprefix("/hostedzone/")
        return self._zone_ids[name]

    def read(self, spec: Route53) -> Weights | None:
        """The pair's current weights, or None when a record of the pair does not exist.
        Concurrent reads of one zone share one listing."""
        return self._reads(self.zone_id(spec), spec)

    async def read_async(self, spec: Route53) -> Weights | None:
        """`read` for a coroutine: waiting for the zone's shared listing holds no thread."""
        return await self._reads.call_async(await self._zone_id_async(spec), spec)

    async def _zone_id_async(self, spec: Route53) -> str:
        """A thread only for a lookup: a fleet's many calls with a known zone must not queue
        for workers just to read a dict."""
        known = self._known_zone_id(spec)
        return known if known is not None else await asyncio.to_thread(self.zone_id, spec)

    def read_many(self, specs: list[Route53]) -> list[Weights | None]:
        """Many pairs at once (one listing per zone), in order."""
        by_zone: dict[str, list[int]] = {}
        for i, spec in enumerate(specs):
            by_zone.setdefault(self.zone_id(spec), []).append(i)
        out: list[Weights | None] = [None] * len(specs)
        for zone, indexes in by_zone.items():
            for i, pair in zip(
                indexes, self._read_zone(zone, [specs[i] for i in indexes]), strict=True
            ):
                out[i] = pair
        return out

    def read_at_once(self, spec: Route53) -> Weights | None:
        """The pair's weights from a listing of its own, sent now (paced, never spaced): for a
        rollback, which must not wait for a fleet's shared listing."""
        return self._read_zone(self.zone_id(spec), [spec])[0]

    def _read_zone(self, zone: str, specs: list[Route53]) -> list[Weights | None]:
        if len(specs) <= self._zone_pages.get(zone, 1):
            # One page holds a pair: records are listed in name order starting at ours. A
            # few pairs of a zone with many pages cost fewer requests each on its own.
            # (A small MaxItems makes moto page forever, so take the default page size.)
            out = []
            for spec in specs:
                page = self.client.list_resource_record_sets(
                    HostedZoneId=zone,
                    StartRecordName=_fqdn(spec.record_name),
                    StartRecordType=spec.record_type,
                )
                out.append(pair_of(spec, page["ResourceRecordSets"]))
            return out
        pages = list(
            self.client.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone)
        )
        self._zone_pages[zone] = len(pages)
        rrsets = [r for page in pages for r in page["ResourceRecordSets"]]
        return [pair_of(spec, rrsets) for spec in specs]

    def write(self, spec: Route53, weights: Weights) -> str:
        """UPSERTs both records in one batch (atomic on Route 53), shared with other pairs of
        the zone written at the same moment; returns the change id."""
        return self._writes(self.zone_id(spec), upserts(spec, weights))

    async def write_async(self, spec: Route53, weights: Weights) -> str:
        """`write` for a coroutine: waiting for the zone's shared batch holds no thread."""
        zone = await self._zone_id_async(spec)
        return await self._writes.call_async(zone, upserts(spec, weights))

    def _write_zone(self, zone: str, batches: list[list[Change]]) -> list[str | Exception]:
        try:
            return [self._submit(zone, [c for changes in batches for c in changes])] * len(batches)
        except ClientError as exc:
            if (
                len(batches) == 1
                or exc.response.get("Error", {}).get("Code") != "InvalidChangeBatch"
            ):
                raise
        # One pair's invalid change must not fail the others: each goes again on its own.
        out: list[str | Exception] = []
        for changes in batches:
            try:
                out.append(self._submit(zone, changes))
            except ClientError as exc:
                out.append(exc)
        return out

    def _submit(self, zone: str, changes: list[Change]) -> str:
        metrics.ROUTE53_BATCH_CHANGES.observe(len(changes))
        response = self.client.change_resource_record_sets(
            HostedZoneId=zone,
            ChangeBatch={"Comment": "sprintops", "Changes": changes},  # type: ignore[typeddict-item]
        )
        info = response["ChangeInfo"]
        with self._change_lock:
            self._propagation.submitted(info["Id"], zone, info["Status"], time.monotonic())
        return info["Id"]

    def insync(self, change_id: str, poll: float = 1.0) -> bool:
        """Whether the change is INSYNC, asking Route 53 about it, or an older change of its
        zone, when propagation.py says it is worth a request (every `poll` seconds at most):
        waiters on one zone share its questions."""
        with self._poll_lock:
            with self._change_lock:
                kept = self._propagation.take_error(change_id)
                ask = self._propagation.to_ask(change_id, poll, time.monotonic())
            if kept is not None:
                raise kept
            if ask is not None:
                sent = time.monotonic()
                try:
                    status = self.client.get_change(Id=ask)["ChangeInfo"]["Status"]
                except (BotoCoreError, ClientError) as exc:
                    # An error no retry fixes is kept for the change's own waiter, and the
                    # change holds its zone no more; a throttle or the network is asked
                    # about again in turn.
                    lasting = error_code(exc) in {*PERMANENT_CODES, "NoSuchChange"}
                    with self._change_lock:
                        self._propagation.failed(ask, time.monotonic(), exc if lasting else None)
                    if ask == change_id:
                        raise
                    return False  # another release's change: its own waiter is told
                with self._change_lock:
                    self._propagation.answered(ask, status, time.monotonic(), sent)
        with self._change_lock:
            return self._propagation.insync(change_id)

    def wait_insync(
        self, change_id: str, timeout: float = INSYNC_TIMEOUT, poll: float = 1.0
    ) -> None:
        """Blocks until INSYNC (for tools and tests; the operator waits in its event loop,
        see `Reconciler.insync`, so no worker thread sleeps through the propagation)."""
        deadline = time.monotonic() + timeout
        while not self.insync(change_id, poll):
            if time.monotonic() > deadline:
                raise TimeoutError(f"Route 53 change {change_id} not INSYNC after {timeout:.0f}s")
            time.sleep(poll)


def _fqdn(name: str) -> str:
    return name if name.endswith(".") else name + "."
