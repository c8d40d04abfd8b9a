"""Dependencies audited with pip-audit: a known vulnerability fails, unless allowlisted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

ALLOWLIST = REPO / "audit-allowlist.txt"


def allowlist() -> dict[str, str]:
    entries = {}
    for line in ALLOWLIST.read_text().splitlines():
        vuln, _, reason = line.partition("#")
        if vuln.strip():
            assert reason.strip(), f"{vuln.strip()} is allowlisted without a reason"
            entries[vuln.strip()] = reason.strip()
    return entries


def test_no_unlisted_vulnerabilities(tmp_path: Path) -> None:
    audit = Path(sys.executable).parent / "pip-audit"
    result = subprocess.run(
        [str(audit), "--skip-editable", "--progress-spinner", "off", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    report = json.loads(result.stdout or "{}")
    deps = report.get("dependencies", [])
    audited = [d for d in deps if "skip_reason" not in d]
    if deps and not audited:
        reasons = {d["skip_reason"].split(":")[0] for d in deps}
        pytest.skip(
            f"pip-audit reached no vulnerability service from this machine "
            f"({len(deps)} of {len(deps)} dependencies skipped: {'; '.join(sorted(reasons))})"
        )
    assert deps, result.stderr
    allowed = allowlist()
    found = [
        f"{d['name']} {d['version']}: {v['id']}"
        for d in audited
        for v in d.get("vulns", [])
        if v["id"] not in allowed and not set(v.get("aliases", [])) & set(allowed)
    ]
    assert not found, f"vulnerable dependencies (fix, or allowlist with a reason): {found}"
