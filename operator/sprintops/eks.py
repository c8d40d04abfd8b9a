"""EKS bearer tokens minted in-process, so the image needs no `aws` binary or exec plugin.

A token is `k8s-aws-v1.` + base64url(a presigned STS GetCallerIdentity URL whose signature
covers the `x-k8s-aws-id: <cluster>` header): the aws-iam-authenticator scheme. EKS accepts
it for 15 minutes after signing; we refresh a minute early.
"""

from __future__ import annotations

import base64
import datetime as dt
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kubernetes import client

from sprintops.kube import pooled

if TYPE_CHECKING:
    import boto3

TOKEN_PREFIX = "k8s-aws-v1."  # noqa: S105 - the scheme's name, not a secret
CLUSTER_HEADER = "x-k8s-aws-id"
PRESIGN_SECONDS = 60  # what aws-cli and aws-iam-authenticator sign with
TOKEN_LIFETIME = dt.timedelta(minutes=15)
REFRESH_MARGIN = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class Token:
    value: str
    expires: dt.datetime


def _session(role_arn: str | None, region: str) -> boto3.Session:
    # Imported here: only EKS clusters need boto3, and an idle operator should not carry it.
    import boto3

    session = boto3.Session(region_name=region)
    if not role_arn:
        return session
    creds = session.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="sprintops")[
        "Credentials"
    ]
    return boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=region,
    )


def mint(
    cluster_name: str, region: str, role_arn: str | None = None, now: dt.datetime | None = None
) -> Token:
    from botocore.signers import RequestSigner

    session = _session(role_arn, region)
    sts = session.client("sts")
    credentials = session.get_credentials()
    if credentials is None:
        raise RuntimeError("no AWS credentials to sign an EKS token with")
    signer = RequestSigner(
        sts.meta.service_model.service_id, region, "sts", "v4", credentials, session.events
    )
    url = signer.generate_presigned_url(
        {
            "method": "GET",
            "url": f"https://sts.{region}.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15",
            "body": {},
            "headers": {CLUSTER_HEADER: cluster_name},
            "context": {},
        },
        region_name=region,
        expires_in=PRESIGN_SECONDS,
        operation_name="",
    )
    encoded = base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")
    return Token(TOKEN_PREFIX + encoded, (now or dt.datetime.now(dt.UTC)) + TOKEN_LIFETIME)


def is_cluster_secret(data: Any) -> bool:
    """Argo CD's cluster-secret form: {server, caData, awsAuthConfig: {clusterName, roleARN?}}."""
    return isinstance(data, dict) and "awsAuthConfig" in data and "server" in data


def client_for(data: dict[str, Any], region: str) -> client.ApiClient:
    """An ApiClient whose bearer token is re-minted before it expires."""
    auth = data["awsAuthConfig"]
    cluster_name, role_arn = auth["clusterName"], auth.get("roleARN")
    configuration = client.Configuration()
    configuration.host = data["server"]
    if data.get("caData"):
        # The root filesystem is read-only; /tmp is the pod's writable emptyDir.
        with tempfile.NamedTemporaryFile("wb", suffix=".crt", delete=False) as ca:
            ca.write(base64.b64decode(data["caData"]))
        configuration.ssl_ca_cert = ca.name
    state: dict[str, Token] = {}

    def refresh(cfg: client.Configuration) -> None:
        token = state.get("token")
        if token is None or dt.datetime.now(dt.UTC) >= token.expires - REFRESH_MARGIN:
            token = state["token"] = mint(cluster_name, region, role_arn)
        cfg.api_key = {"authorization": token.value}
        cfg.api_key_prefix = {"authorization": "Bearer"}

    configuration.refresh_api_key_hook = refresh
    refresh(configuration)
    return pooled(configuration)
