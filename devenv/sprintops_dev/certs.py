"""Certificates for the local control plane, from trustme: one CA, a serving certificate,
client certificates (the user is the CN, groups the O), and the service-account key."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path

    def cert_pem(self) -> bytes:
        return self.cert.read_bytes()

    def key_pem(self) -> bytes:
        return self.key.read_bytes()


class CertificateAuthority:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self._ca = trustme.CA(organization_name="sprintops-local")
        self.pair = self._write("ca", self._ca.cert_pem, self._ca.private_key_pem)

    def issue(
        self,
        stem: str,
        common: str,
        *,
        org: str | None = None,
        key_type: trustme.KeyType = trustme.KeyType.ECDSA,
    ) -> KeyPair:
        """Good for serving localhost and 127.0.0.1, and as a client (trustme sets both)."""
        leaf = self._ca.issue_cert(
            "localhost",
            "127.0.0.1",
            common_name=common,
            organization_name=org or "sprintops-local",
            key_type=key_type,
        )
        return self._write(stem, leaf.cert_chain_pems[0], leaf.private_key_pem)

    def _write(self, stem: str, cert: trustme.Blob, key: trustme.Blob) -> KeyPair:
        pair = KeyPair(self.dir / f"{stem}.crt", self.dir / f"{stem}.key")
        cert.write_to_path(str(pair.cert))
        key.write_to_path(str(pair.key))
        pair.key.chmod(0o600)
        return pair
