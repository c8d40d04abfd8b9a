"""EKS tokens: decode a minted one and check what EKS will check."""

from __future__ import annotations

import base64
import datetime as dt
import urllib.parse

import pytest

from sprintops import eks


@pytest.fixture(autouse=True)
def dummy_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_STS", raising=False)


def decode(token: str) -> urllib.parse.ParseResult:
    assert token.startswith("k8s-aws-v1.")
    body = token.removeprefix("k8s-aws-v1.")
    return urllib.parse.urlparse(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode())


def test_minted_token_is_a_presigned_get_caller_identity() -> None:
    now = dt.datetime(2026, 11, 25, 12, tzinfo=dt.UTC)
    token = eks.mint("prod-even", "eu-west-1", now=now)
    url = decode(token.value)
    query = urllib.parse.parse_qs(url.query)
    assert url.scheme == "https" and url.netloc == "sts.eu-west-1.amazonaws.com"
    assert query["Action"] == ["GetCallerIdentity"] and query["Version"] == ["2011-06-15"]
    assert query["X-Amz-Expires"] == ["60"]
    assert "x-k8s-aws-id" in query["X-Amz-SignedHeaders"][0].split(";")
    assert query["X-Amz-Credential"][0].startswith("AKIDEXAMPLE/")
    assert "/eu-west-1/sts/aws4_request" in query["X-Amz-Credential"][0]
    assert query["X-Amz-Signature"][0]
    assert token.expires == now + dt.timedelta(minutes=15)
    assert "=" not in token.value  # base64url without padding, as EKS expects


def test_different_clusters_sign_differently() -> None:
    a = urllib.parse.parse_qs(decode(eks.mint("even", "us-east-1").value).query)
    b = urllib.parse.parse_qs(decode(eks.mint("odd", "us-east-1").value).query)
    assert a["X-Amz-Signature"] != b["X-Amz-Signature"]


def test_cluster_secret_form_gives_a_refreshing_client() -> None:
    data = {
        "server": "https://ABC.gr7.eu-west-1.eks.amazonaws.com",
        "caData": base64.b64encode(b"-----BEGIN CERTIFICATE-----\n").decode(),
        "awsAuthConfig": {"clusterName": "prod-even"},
    }
    assert eks.is_cluster_secret(data) and not eks.is_cluster_secret({"apiVersion": "v1"})
    api = eks.client_for(data, "eu-west-1")
    cfg = api.configuration
    assert cfg.host == data["server"]
    first = cfg.api_key["authorization"]
    assert decode(first).netloc == "sts.eu-west-1.amazonaws.com"
    assert cfg.get_api_key_with_prefix("authorization").startswith("Bearer k8s-aws-v1.")
