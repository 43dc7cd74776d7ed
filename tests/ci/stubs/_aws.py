"""A stand-in for the AWS CLI's `aws ecr describe-image-scan-findings` (2.27) over the stubs'
registry (_state.py), answering as infra/facts/ecr-scan-findings.yaml says ECR and the CLI do: a
repository that holds nothing, an image it does not hold, an image without a scan fail with ECR's
error texts and return code 254; an answer is the stored one with ECR's ids around it, and only
statuses, members and severities that the facts list may be stored (the stub exits 99 otherwise:
the test asked for an answer ECR never gives).
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.realpath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))

from tests.ci.stubs._state import aws_partition, facts, is_file, log, read, repository_exists, write

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SCANS = facts("ecr-scan-findings")
CODES = SCANS["return_codes"]
OPTIONS = ("--registry-id", "--repository-name", "--image-id", "--region", "--output")


def client_error(code: str, **names: str) -> int:
    message = SCANS["client_error"].format(code=code, message=SCANS["errors"][code].format(**names))
    sys.stderr.write(f"\n{message}\n")
    return int(CODES["service"])


def invalid(answer: dict[str, Any]) -> str:
    """What in a stored answer ECR would never send, or ''."""
    if answer.get("imageScanStatus", {}).get("status") not in SCANS["statuses"]:
        return f"status {answer.get('imageScanStatus')}"
    findings = answer.get("imageScanFindings", {})
    basic, enhanced = findings.get("findings", []), findings.get("enhancedFindings", [])
    unknown = {
        "answer members": set(answer) - {"imageScanStatus", "imageScanFindings"},
        "imageScanFindings members": set(findings) - set(SCANS["findings_members"]),
        "severity counts": set(findings.get("findingSeverityCounts", {}))
        - set(SCANS["finding_severities"] + SCANS["enhanced_severities"]),
        "finding members": {m for f in basic for m in f} - set(SCANS["finding_members"]),
        "enhanced finding members": {m for f in enhanced for m in f} - set(SCANS["enhanced_finding_members"]),
        "finding severities": {f["severity"] for f in basic} - set(SCANS["finding_severities"]),
        "enhanced severities": {f["severity"] for f in enhanced} - set(SCANS["enhanced_severities"]),
    }
    return "; ".join(f"{what}: {sorted(extra)}" for what, extra in unknown.items() if extra)


def describe_image_scan_findings(args: list[str]) -> int:
    given: dict[str, str] = {}
    unknown = []
    while args:
        arg = args.pop(0)
        if arg in OPTIONS and args:
            given[arg] = args.pop(0)
        elif arg != "--no-cli-pager":
            unknown.append(arg)
    if unknown:
        sys.stderr.write("\n" + SCANS["unknown_options"].format(options=", ".join(unknown)) + "\n\n")
        return int(CODES["parameter"])
    if given.get("--output", "json") != "json":
        sys.stderr.write("stub: only --output json is answered\n")
        return 99
    registry_id = given.get("--registry-id", os.environ.get("STUB_AWS_ACCOUNT", ""))
    region = given.get("--region", os.environ.get("AWS_DEFAULT_REGION", ""))
    name = given.get("--repository-name", "")
    digest = given.get("--image-id", "").removeprefix("imageDigest=")
    repository = f"{registry_id}.dkr.ecr.{region}.{aws_partition(region)[1]}/{name}"
    names = {"repository_name": name, "registry_id": registry_id, "digest": digest}
    if not repository_exists(repository):
        return client_error("RepositoryNotFoundException", **names)
    if not is_file(f"{repository}@{digest}"):
        return client_error("ImageNotFoundException", **names)
    scans = f"{repository}/scans@{digest}"
    if not is_file(scans):
        return client_error("ScanNotFoundException", **names)
    answers = json.loads(read(scans))
    if len(answers) > 1:  # the scan moves on: the next call gets the next answer
        write(scans, json.dumps(answers[1:]))
    answer = answers[0]
    if problem := invalid(answer):
        sys.stderr.write(f"stub: ECR never answers this ({problem})\n")
        return 99
    status = answer["imageScanStatus"]
    if "description" not in status and status["status"] in SCANS["status_descriptions"]:
        status = {**status, "description": SCANS["status_descriptions"][status["status"]]}
    ids = {"registryId": registry_id, "repositoryName": name, "imageId": {"imageDigest": digest}}
    print(json.dumps({**answer, **ids, "imageScanStatus": status}, indent=4))
    return 0


def main(args: list[str]) -> int:
    log("aws", args)
    if args[:2] != ["ecr", "describe-image-scan-findings"]:
        sys.stderr.write("stub: only `aws ecr describe-image-scan-findings` is answered\n")
        return 99
    return describe_image_scan_findings(args[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
