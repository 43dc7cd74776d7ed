"""Release one image built by shipyard's build job to one Heroku app: check that the build job signed
it and that ECR's scan found nothing that blocks it, copy the exact image from ECR to the app's
Heroku registry image, release it through the Platform API, wait for the release.

Runs in the delivery template's deploy job (python:3-alpine with skopeo, cosign and the AWS CLI);
standard library only.

    heroku_release.py [--digest sha256:…] [--dotenv FILE] [--timeout SECONDS] [--scan-timeout SECONDS]

Without --digest the source is $ECR_REPOSITORY_URL:$CI_COMMIT_SHA, resolved to its digest first;
with it, $ECR_REPOSITORY_URL@<digest>: for production the manifest staging released, for a
rollback an older release image kept in ECR (Heroku deletes old releases' images, H13). --digest
also takes the whole reference $ECR_REPOSITORY_URL@sha256:…, of that repository only.
Nothing reaches Heroku before two checks of that digest (G11): its cosign signature, against the
PEM public key in $SHIPYARD_SIGNING_PUBLIC_KEY; then ECR's scan findings, against
$SHIPYARD_SCAN_THRESHOLD (CRITICAL, HIGH, MEDIUM or LOW; CRITICAL when unset): a finding of that
severity or worse refuses the image. A scan still running is waited for, --scan-timeout at most.
The process type released is the last part of $HEROKU_REGISTRY_IMAGE (`…/web`). ECR is read with
the runner's instance role (docker-credential-ecr-login, the AWS CLI); Heroku's registry with the
API key.

    heroku_release.py --ensure-review-app | --delete-review-app [--dotenv FILE]

A merge request's review app (the review jobs, environment review/*): --ensure-review-app creates
the app ci/review_apps.py names (or reuses ours), within $SHIPYARD_REVIEW_MAX_APPS, sets its config
vars from $SHIPYARD_REVIEW_CONFIG_VARS and releases the merge request's image
$ECR_REVIEW_REPOSITORY_URL:mr-<iid>-<sha> through the same copy and release, without the two checks:
merge-request images are never signed (G11), and the review key reaches no other app. It then runs
one web dyno of $SHIPYARD_REVIEW_DYNO_SIZE and couples the app to the Heroku pipeline
$SHIPYARD_REVIEW_PIPELINE at the stage review, each where set; the coupling where Heroku allows it
(a refusal is reported, not fatal). An app it created but could not release or scale is deleted.
--delete-review-app deletes the app; one already gone is success. Both use $HEROKU_REVIEW_API_KEY
only, and do nothing when $SHIPYARD_REVIEW_APP_PREFIX is unset (the build stack has no
shipyard:review).
Exit codes: 0 released (or deleted); 1 refused (no valid signature, blocking findings, no finished
scan, the review app cap reached, a review app name taken) or the copy, the API or the release
failed; 2 bad input (missing CI/CD variables, malformed arguments), nothing done.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, NamedTuple

SIGNING_KEY = "SHIPYARD_SIGNING_PUBLIC_KEY"
SCAN_THRESHOLD = "SHIPYARD_SCAN_THRESHOLD"
REQUIRED = (
    "HEROKU_API_KEY",
    "HEROKU_APP_NAME",
    "HEROKU_REGISTRY_IMAGE",
    "ECR_REPOSITORY_URL",
    "CI_COMMIT_SHA",
    "SHIPYARD_SIGNING_PUBLIC_KEY",
)
# Heroku's registry takes Docker manifest v2 schema 2 only: no OCI manifest, no index (H10).
DOCKER_V2S2 = "application/vnd.docker.distribution.manifest.v2+json"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# <account>.dkr.ecr[-fips].<region>.<partition's DNS suffix>/<repository name as ECR allows it>
ECR_REPOSITORY = re.compile(
    r"^(?P<registry>(?P<account>[0-9]{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.[a-z0-9.-]+)/"
    r"(?P<name>[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*)$"
)
RELEASES_API = "application/vnd.heroku+json; version=3"
DOCKER_RELEASES_API = "application/vnd.heroku+json; version=3.docker-releases"

# cosign 2.4.3 (infra/facts/cosign.yaml): the key is read from the variable, not from a file; the
# build job signs with --tlog-upload=false, so there is no transparency-log entry to look for.
COSIGN_VERIFY = ("cosign", "verify", "--key", f"env://{SIGNING_KEY}", "--insecure-ignore-tlog=true")
COSIGN_REFUSALS = {10: "it has no signature", 12: f"no signature of it matches {SIGNING_KEY}"}
# ECR's scan statuses (infra/facts/ecr-scan-findings.yaml): findings are final when COMPLETE, or
# ACTIVE under enhanced continuous scanning (which never turns COMPLETE); worth waiting for while
# IN_PROGRESS or PENDING; any other status means no findings will come.
FINDINGS_FINAL = ("COMPLETE", "ACTIVE")
SCAN_WAIT_FOR = ("IN_PROGRESS", "PENDING")
# The thresholds, mildest first. INFORMATIONAL, UNDEFINED and UNTRIAGED rank below LOW.
THRESHOLDS = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
LONGEST_SCAN_POLL = 60.0

# Review apps: the variables the build stack scopes to review/*, and what each review job needs of
# them and of GitLab's. The optional ones: without a team the apps are the key's own; without a dyno
# size Heroku's default size runs; without a pipeline the app joins none (a build stack deployed
# before shipyard provisioned them).
REVIEW_KEY = "HEROKU_REVIEW_API_KEY"
REVIEW_PREFIX = "SHIPYARD_REVIEW_APP_PREFIX"
REVIEW_REQUIRED = (
    REVIEW_KEY,
    REVIEW_PREFIX,
    "SHIPYARD_REVIEW_REGION",
    "SHIPYARD_REVIEW_MAX_APPS",
    "SHIPYARD_REVIEW_CONFIG_VARS",
    "ECR_REVIEW_REPOSITORY_URL",
    "CI_MERGE_REQUEST_IID",
    "CI_COMMIT_SHA",
)
REVIEW_STOP_REQUIRED = (REVIEW_KEY, REVIEW_PREFIX, "CI_MERGE_REQUEST_IID")
REVIEW_TEAM, REVIEW_DYNO_SIZE, REVIEW_PIPELINE = (
    "SHIPYARD_REVIEW_TEAM",
    "SHIPYARD_REVIEW_DYNO_SIZE",
    "SHIPYARD_REVIEW_PIPELINE",
)
REVIEW_OPTIONAL = (REVIEW_TEAM, REVIEW_DYNO_SIZE, REVIEW_PIPELINE)
# A review app runs its image as the process type `web`, one dyno of SHIPYARD_REVIEW_DYNO_SIZE.
REVIEW_PROCESS = "web"
DYNO_SIZE = re.compile(r"^[A-Za-z0-9-]+$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class ReleaseError(Exception):
    """A failure or refusal of the deploy itself; the message is the whole story for the job log."""


class ApiError(ReleaseError):
    """Heroku's API answered with an error status."""

    def __init__(self, message: str, status: int, api_message: str) -> None:
        super().__init__(message)
        self.status, self.api_message = status, api_message


class BadInput(Exception):
    """Nothing was done: the job's variables or arguments are wrong."""


def fail(message: str) -> None:
    print(f"heroku-release: {message}", file=sys.stderr)


class EcrRepository(NamedTuple):
    url: str
    registry: str
    account: str
    region: str
    name: str


def ecr_repository(url: str) -> EcrRepository | None:
    match = ECR_REPOSITORY.match(url)
    if not match:
        return None
    return EcrRepository(url, match["registry"], match["account"], match["region"], match["name"])


def digest_argument(value: str, repository_url: str) -> tuple[str | None, str]:
    """The digest that --digest names (bare, or as the release repository's reference), or None
    and why not."""
    digest = value
    if "@" in value:
        named, digest = value.rsplit("@", 1)
        if named != repository_url:
            return None, (
                f"--digest {value!r} names an image of another repository: only images of the release "
                f"repository $ECR_REPOSITORY_URL ({repository_url}) are released (G11)"
            )
    if not DIGEST.match(digest):
        return None, (
            f"--digest must be sha256:<64 hex> or $ECR_REPOSITORY_URL@sha256:<64 hex>, got {value!r}; it comes "
            "from the staging job's dotenv, or from SHIPYARD_ROLLBACK_DIGEST for a rollback"
        )
    return digest, ""


def check_environment(env: dict[str, str], digest: str | None) -> list[str]:
    problems = []
    missing = [name for name in REQUIRED if not env.get(name, "").strip()]
    if missing:
        problems.append(
            "missing CI/CD variable(s): "
            + ", ".join(missing)
            + ". shipyard provisions them: the HEROKU_* ones are scoped to the job's `environment:` (G5), "
            "and production's are protected, so they reach protected branches and tags only (G4)."
        )
    image = env.get("HEROKU_REGISTRY_IMAGE", "").strip()
    if image and not re.match(r"^registry\.heroku\.com/[a-z][a-z0-9-]{1,28}[a-z0-9]/[a-z0-9_-]+$", image):
        problems.append(f"HEROKU_REGISTRY_IMAGE must be registry.heroku.com/<app>/<process>, got {image!r}")
    repository = env.get("ECR_REPOSITORY_URL", "").strip()
    if repository and not ecr_repository(repository):
        problems.append(
            f"ECR_REPOSITORY_URL must be <account>.dkr.ecr.<region>.amazonaws.com/<repository>, got {repository!r}"
        )
    key = env.get(SIGNING_KEY, "").strip()
    if key and "-----BEGIN PUBLIC KEY-----" not in key:  # e.g. a GitLab file variable: its path
        problems.append(
            f"{SIGNING_KEY} must hold the signing key's PEM public key (-----BEGIN PUBLIC KEY-----…) as the "
            "build stack provisions it, a plain variable, not a file variable"
        )
    threshold = env.get(SCAN_THRESHOLD, "").strip()
    if threshold and threshold not in THRESHOLDS:
        problems.append(f"{SCAN_THRESHOLD} must be one of {', '.join(reversed(THRESHOLDS))}, got {threshold!r}")
    if digest is not None:
        named, why = digest_argument(digest, repository)
        if named is None:
            problems.append(why)
    return problems


# --- the registry (skopeo) ------------------------------------------------------------------------


class Image(NamedTuple):
    reference: str  # <repository>@<manifest digest>
    manifest_digest: str
    config_digest: str


class Skopeo:
    """skopeo with one credentials file, a Docker config.json: ECR through the credential helper
    (the job's instance role), Heroku's registry through `skopeo login`. cosign reads the same
    file through DOCKER_CONFIG."""

    def __init__(self, folder: str, ecr_registry: str) -> None:
        self.folder = folder
        self.auth_file = os.path.join(folder, "config.json")
        with open(self.auth_file, "w") as handle:
            json.dump({"credHelpers": {ecr_registry: "ecr-login"}}, handle)
        self.env = {**os.environ, "REGISTRY_AUTH_FILE": self.auth_file}

    def run(self, *args: str, stdin: str | None = None) -> bytes:
        data = stdin.encode() if stdin else None
        result = subprocess.run(["skopeo", *args], input=data, capture_output=True, env=self.env)
        # skopeo's own messages never carry the key: it only ever reaches skopeo on stdin.
        if result.returncode != 0:
            raise ReleaseError(f"skopeo {args[0]} failed: {result.stderr.decode(errors='replace').strip()}")
        return result.stdout

    def manifest(self, ref: str) -> tuple[bytes, dict[str, Any]]:
        raw = self.run("inspect", "--raw", f"docker://{ref}")
        try:
            return raw, json.loads(raw)
        except ValueError as exc:
            raise ReleaseError(f"{ref}: the registry returned no JSON manifest") from exc


def releasable(ref: str, manifest: dict[str, Any]) -> str:
    """The image's config digest, which is what Heroku releases (H10)."""
    media_type = manifest.get("mediaType")
    if media_type != DOCKER_V2S2:
        raise ReleaseError(
            f"{ref} is {media_type or 'an unversioned manifest'}, but Heroku's registry accepts only {DOCKER_V2S2}: "
            "build with --platform linux/amd64 --provenance=false --sbom=false and oci-mediatypes=false (H10)"
        )
    config_digest = str(manifest.get("config", {}).get("digest", ""))
    if not DIGEST.match(config_digest):
        raise ReleaseError(f"{ref}: the manifest's config digest {config_digest!r} is not sha256:<64 hex>")
    return config_digest


def inspect_source(skopeo: Skopeo, source: str) -> Image:
    """The image a tag or digest reference names, pinned to its manifest digest: everything after
    this (the checks, the copy) reads the same bytes."""
    raw, manifest = skopeo.manifest(source)
    manifest_digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    if "@" in source and source.rsplit("@", 1)[1] != manifest_digest:
        raise ReleaseError(f"{source} answered with a manifest of digest {manifest_digest}: not the one asked for")
    repository = source.rsplit("@", 1)[0] if "@" in source else source.rsplit(":", 1)[0]
    return Image(f"{repository}@{manifest_digest}", manifest_digest, releasable(source, manifest))


def copy_image(skopeo: Skopeo, image: Image, target: str, api_key: str, key_name: str = "HEROKU_API_KEY") -> None:
    """Copy the checked image to target unchanged."""
    # The key goes in on stdin: a command-line argument would be visible to every process.
    try:
        skopeo.run("login", "--username", "_", "--password-stdin", target.split("/", 1)[0], stdin=api_key)
    except ReleaseError as exc:
        # The first place an expired or wrong key shows (H9).
        raise ReleaseError(
            f"{exc}. Heroku's registry takes {key_name} as its password: use a long-lived "
            "`heroku authorizations:create` token; `heroku auth:token` expires (H9)."
        ) from None
    # --preserve-digests: fail rather than rewrite the manifest, so the app gets the tested bytes.
    skopeo.run("copy", "--preserve-digests", "--retry-times", "3", f"docker://{image.reference}", f"docker://{target}")
    copied, _ = skopeo.manifest(target)
    if "sha256:" + hashlib.sha256(copied).hexdigest() != image.manifest_digest:
        raise ReleaseError(f"{target} does not hold the manifest {image.manifest_digest} after the copy")


# --- the checks before any copy: signature, then scan findings (G11) ------------------------------


def verify_signature(image: Image, docker_config: str) -> None:
    """cosign's verdict on the image digest with the build stack's public key; refuses on any doubt."""
    command = [*COSIGN_VERIFY, image.reference]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, env={**os.environ, "DOCKER_CONFIG": docker_config}
        )
    except FileNotFoundError:
        raise ReleaseError(
            f"refusing {image.reference}: cosign is not installed in the job image, so its signature cannot be checked"
        ) from None
    if result.returncode != 0:
        errors = [line[len("Error: ") :] for line in result.stderr.splitlines() if line.startswith("Error: ")]
        said = "; ".join(errors) or result.stderr.strip() or "nothing"
        why = COSIGN_REFUSALS.get(result.returncode, "its signature could not be checked")
        raise ReleaseError(
            f"refusing {image.reference}: {why} (cosign exit {result.returncode}: {said}). Only the default "
            "branch's build job signs release images (G11): release a digest that job built."
        )
    print(f"{image.reference}: signed with the key in {SIGNING_KEY}")


def scan_command(repository: EcrRepository, digest: str) -> list[str]:
    return [
        "aws", "ecr", "describe-image-scan-findings",
        "--registry-id", repository.account,
        "--repository-name", repository.name,
        "--image-id", f"imageDigest={digest}",
        "--region", repository.region,
        "--output", "json",
        "--no-cli-pager",
    ]  # fmt: skip


def describe_scan(repository: EcrRepository, digest: str) -> dict[str, Any]:
    reference = f"{repository.url}@{digest}"
    try:
        result = subprocess.run(scan_command(repository, digest), capture_output=True, text=True)
    except FileNotFoundError:
        raise ReleaseError(
            f"refusing {reference}: the AWS CLI is not installed in the job image, so its scan findings cannot be read"
        ) from None
    said = result.stderr.strip()
    if result.returncode == 0:
        try:
            answer = json.loads(result.stdout)
        except ValueError:
            answer = None
        if isinstance(answer, dict):
            return answer
        raise ReleaseError(f"refusing {reference}: aws ecr describe-image-scan-findings answered no JSON object")
    code = re.search(r"An error occurred \((\w+)\)", said)
    if code and code.group(1) == "ScanNotFoundException":
        raise ReleaseError(
            f"refusing {reference}: ECR has no scan of it ({said}). The registry's scanning configuration must "
            "scan release images on push (R21)."
        )
    hint = ""
    if code and code.group(1) == "AccessDeniedException":
        hint = " The job's role needs ecr:DescribeImageScanFindings on the release repository."
    raise ReleaseError(
        f"refusing {reference}: its scan findings could not be read (aws exit {result.returncode}: {said}).{hint}"
    )


def finished_scan(repository: EcrRepository, digest: str, timeout: float, interval: float) -> dict[str, Any]:
    """ECR's answer once the scan's findings are final, or its last answer when the scan is not
    going to finish (FAILED, UNSUPPORTED_IMAGE…); a scan still running after `timeout` is refused.
    Polls with a doubling interval, as a scan on push takes seconds to minutes."""
    deadline = time.monotonic() + timeout
    wait = interval
    while True:
        answer = describe_scan(repository, digest)
        status = (answer.get("imageScanStatus") or {}).get("status")
        if status not in SCAN_WAIT_FOR:
            return answer
        left = deadline - time.monotonic()
        if left <= 0:
            raise ReleaseError(
                f"refusing {repository.url}@{digest}: ECR's scan of it is still {status} after {timeout:.0f} s; "
                "run the job again once the scan has finished"
            )
        pause = min(wait, left)
        print(f"ECR's scan of {digest} is {status}: asking again in {pause:.0f} s")
        time.sleep(pause)
        wait = min(wait * 2, LONGEST_SCAN_POLL)


def rank(severity: str) -> int:
    return THRESHOLDS.index(severity) if severity in THRESHOLDS else -1


def listed_findings(findings: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, severity) of every finding: basic scanning's by CVE name, enhanced scanning's
    (Amazon Inspector) by vulnerability id."""
    listed = [
        (str(f.get("name") or "an unnamed finding"), str(f.get("severity"))) for f in findings.get("findings") or []
    ]
    for finding in findings.get("enhancedFindings") or []:
        vulnerability = (finding.get("packageVulnerabilityDetails") or {}).get("vulnerabilityId")
        listed.append(
            (str(vulnerability or finding.get("title") or "an unnamed finding"), str(finding.get("severity")))
        )
    return listed


def check_findings(reference: str, answer: dict[str, Any], threshold: str) -> None:
    """Refuses the image unless its findings are final and none is of `threshold` or worse."""
    scan = answer.get("imageScanStatus") or {}
    status = scan.get("status")
    if status not in FINDINGS_FINAL:
        description = f": {scan['description']}" if scan.get("description") else ""
        raise ReleaseError(
            f"refusing {reference}: ECR's scan of it is {status}{description}. An image without final scan "
            "findings is not released."
        )
    findings = answer.get("imageScanFindings") or {}
    listed = listed_findings(findings)
    blocking = [f for f in listed if rank(f[1]) >= rank(threshold)]
    counts = findings.get("findingSeverityCounts") or {}
    total = max(len(blocking), sum(n for severity, n in counts.items() if rank(severity) >= rank(threshold)))
    if total:
        worst = ""
        if blocking:
            name, severity = max(blocking, key=lambda f: rank(f[1]))
            worst = f", the worst {name} ({severity})"
        raise ReleaseError(
            f"refusing {reference}: ECR's scan found {total} finding{'s' if total != 1 else ''} of {threshold} or "
            f"worse{worst}. Fix them and build again; the threshold is {SCAN_THRESHOLD} "
            "(shipyard:registry.scanThreshold)."
        )
    print(f"{reference}: ECR's scan ({status}) found nothing of {threshold} or worse")


# --- the Platform API -----------------------------------------------------------------------------


class Heroku:
    def __init__(self, base_url: str, api_key: str, app: str, key_name: str = "HEROKU_API_KEY") -> None:
        self.base_url, self.api_key, self.app, self.key_name = base_url.rstrip("/"), api_key, app, key_name

    def request(self, method: str, path: str, body: Any = None, accept: str = RELEASES_API, **headers: str) -> Any:
        request = urllib.request.Request(
            f"{self.base_url}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={
                "Accept": accept,
                "Authorization": f"Bearer {self.api_key}",
                "Content-Type": "application/json",
                "User-Agent": "shipyard-heroku-release",
                **headers,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                message = str(json.loads(exc.read()).get("message", ""))
            except ValueError:
                message = ""
            raise ApiError(self.explain(method, path, exc.code, message), exc.code, message) from None
        except (urllib.error.URLError, TimeoutError) as exc:
            raise ReleaseError(f"{method} {path}: Heroku's API did not answer ({exc})") from None

    def explain(self, method: str, path: str, status: int, message: str) -> str:
        if status == 401:
            return (
                f"Heroku refused {self.key_name} (401). Use a long-lived `heroku authorizations:create` token; "
                "`heroku auth:token` expires (H9)."
            )
        if status == 403:
            return f"{self.key_name} may not deploy app {self.app} (403): {message}"
        if status == 404:
            return f"{method} {path}: not found (404); does app {self.app} exist? {message}"
        return f"{method} {path} failed ({status}): {message}"

    def latest_release(self) -> dict[str, Any] | None:
        releases = self.request("GET", f"/apps/{self.app}/releases", Range="version ..; max=1, order=desc")
        return releases[0] if releases else None

    def release(self, process: str, config_digest: str) -> None:
        # The docker-releases variant of the formation API releases an image by its config digest (H10).
        self.request(
            "PATCH",
            f"/apps/{self.app}/formation",
            {"updates": [{"type": process, "docker_image": config_digest}]},
            accept=DOCKER_RELEASES_API,
        )

    def output(self, release: dict[str, Any]) -> str:
        """The release phase's output; the stream URL is pre-signed and gets no credentials."""
        url = release.get("output_stream_url")
        if not url:
            return "(Heroku kept no output for this release)"
        try:
            with urllib.request.urlopen(urllib.request.Request(url), timeout=60) as response:
                return str(response.read().decode(errors="replace"))
        except (urllib.error.URLError, TimeoutError) as exc:
            return f"(the release output could not be read: {exc})"


def wait_for_release(heroku: Heroku, after_version: int, timeout: float, interval: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    release: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        if release is None:
            latest = heroku.latest_release()
            if latest is not None and int(latest["version"]) > after_version:
                release = latest
        else:
            release = heroku.request("GET", f"/apps/{heroku.app}/releases/{release['id']}")
        if release is not None and release.get("status") != "pending":
            return release
        time.sleep(interval)
    where = f"release v{release['version']} is still pending" if release else "no release appeared"
    raise ReleaseError(f"{where} after {timeout:.0f} s; see `heroku releases -a {heroku.app}`")


def deploy(args: argparse.Namespace, env: dict[str, str]) -> dict[str, str]:
    problems = check_environment(env, args.digest)
    if problems:
        raise BadInput("\n".join(problems))
    repository = ecr_repository(env["ECR_REPOSITORY_URL"].strip())
    assert repository is not None  # checked above
    threshold = env.get(SCAN_THRESHOLD, "").strip() or "CRITICAL"
    if args.digest is not None:
        source = f"{repository.url}@{digest_argument(args.digest, repository.url)[0]}"
    else:
        source = f"{repository.url}:{env['CI_COMMIT_SHA'].strip()}"
    target, app, api_key = env["HEROKU_REGISTRY_IMAGE"].strip(), env["HEROKU_APP_NAME"].strip(), env["HEROKU_API_KEY"]

    heroku = Heroku(api_url(env), api_key, app)
    with tempfile.TemporaryDirectory() as folder:
        skopeo = Skopeo(folder, repository.registry)
        image = inspect_source(skopeo, source)
        print(f"checking {image.reference} (from {source})")
        verify_signature(image, folder)
        scan = finished_scan(repository, image.manifest_digest, args.scan_timeout, args.scan_interval)
        check_findings(image.reference, scan, threshold)
        return publish(skopeo, image, target, heroku, args)


def api_url(env: dict[str, str]) -> str:
    return env.get("HEROKU_API_URL", "https://api.heroku.com")


def publish(skopeo: Skopeo, image: Image, target: str, heroku: Heroku, args: argparse.Namespace) -> dict[str, str]:
    """Copy `image` to the app's registry image `target` and release it: the one release path of
    every deploy, rollback and review app (H14)."""
    print(f"copying {image.reference} → {target}")
    copy_image(skopeo, image, target, heroku.api_key, heroku.key_name)
    app = heroku.app
    before = heroku.latest_release()
    process = target.rsplit("/", 1)[1]
    print(f"releasing {image.config_digest} as {process} of {app}")
    heroku.release(process, image.config_digest)
    release = wait_for_release(heroku, int(before["version"]) if before else 0, args.timeout, args.interval)
    if release.get("status") != "succeeded":
        raise ReleaseError(
            f"release v{release['version']} of {app} {release.get('status')}:\n{heroku.output(release).rstrip()}"
        )
    print(f"released v{release['version']} of {app}: {image.manifest_digest}")
    return {
        "SHIPYARD_IMAGE_DIGEST": image.manifest_digest,
        "SHIPYARD_CONFIG_DIGEST": image.config_digest,
        "SHIPYARD_RELEASE_VERSION": str(release["version"]),
    }


# --- review apps (G5: every variable here is scoped to review/*) ---------------------------------


def review_app_name(prefix: str, iid: str) -> str:
    """The app ci/review_apps.py names, the one place for it: the review jobs write that module
    beside this script."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "review_apps.py")
    if not os.path.isfile(path):
        raise BadInput(f"{path} is missing: the review jobs write it beside this script")
    spec = importlib.util.spec_from_file_location("review_apps", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not iid.isdigit():
        raise BadInput(f"CI_MERGE_REQUEST_IID must be a merge request's IID, got {iid!r}")
    try:
        return str(module.review_app_name(prefix, int(iid)))
    except ValueError as exc:
        raise BadInput(f"{REVIEW_PREFIX} or CI_MERGE_REQUEST_IID: {exc}") from None


def review_input(
    env: dict[str, str], required: tuple[str, ...], checks: tuple[Callable[[], object], ...] = ()
) -> tuple[Heroku, str]:
    """The review app's API client and name. BadInput names every missing variable at once, and
    then every problem of the name and of `checks` (the rest of the job's input) at once."""
    missing = [name for name in required if not env.get(name, "").strip()]
    if missing:
        raise BadInput(
            "missing CI/CD variable(s): " + ", ".join(missing) + ". The build stack provisions the review "
            "ones with shipyard:review, scoped to review/*: they reach only jobs of a review/ environment (G5)."
        )
    problems, app = [], ""
    try:
        app = review_app_name(env[REVIEW_PREFIX].strip(), env["CI_MERGE_REQUEST_IID"].strip())
    except BadInput as exc:
        problems.append(str(exc))
    for check in checks:
        try:
            check()
        except BadInput as exc:
            problems.append(str(exc))
    if problems:
        raise BadInput("\n".join(problems))
    return Heroku(api_url(env), env[REVIEW_KEY], app, key_name=REVIEW_KEY), app


class ReviewSettings(NamedTuple):
    cap: int
    config_vars: dict[str, str]
    repository: EcrRepository
    dyno_size: str  # "" where unset: Heroku's default size
    pipeline: str  # "" where unset: no coupling


def review_settings(env: dict[str, str]) -> ReviewSettings:
    """The review/* variables of shipyard:review and the review repository, checked."""
    problems = []
    cap = env["SHIPYARD_REVIEW_MAX_APPS"].strip()
    if not cap.isdigit() or int(cap) < 1:
        problems.append(f"SHIPYARD_REVIEW_MAX_APPS must be a whole number from 1, got {cap!r}")
    try:
        config_vars = json.loads(env["SHIPYARD_REVIEW_CONFIG_VARS"])
    except ValueError:
        config_vars = None
    if not isinstance(config_vars, dict) or not all(isinstance(v, str) for v in config_vars.values()):
        problems.append("SHIPYARD_REVIEW_CONFIG_VARS must be a JSON object of strings (shipyard:review.configVars)")
    repository = ecr_repository(env["ECR_REVIEW_REPOSITORY_URL"].strip())
    if repository is None:
        problems.append("ECR_REVIEW_REPOSITORY_URL must be <account>.dkr.ecr.<region>.amazonaws.com/<repository>")
    size, pipeline = env.get(REVIEW_DYNO_SIZE, "").strip(), env.get(REVIEW_PIPELINE, "").strip()
    if size and not DYNO_SIZE.fullmatch(size):
        problems.append(
            f"SHIPYARD_REVIEW_DYNO_SIZE must be a Heroku dyno size such as basic (shipyard:review.dynoSize), "
            f"got {size!r}"
        )
    if pipeline and not UUID.fullmatch(pipeline):
        problems.append(f"SHIPYARD_REVIEW_PIPELINE must be a Heroku pipeline id (a UUID), got {pipeline!r}")
    if problems:
        raise BadInput("\n".join(problems))
    assert repository is not None and isinstance(config_vars, dict)
    return ReviewSettings(int(cap), config_vars, repository, size, pipeline)


def review_apps(heroku: Heroku, prefix: str, team: str) -> list[str]:
    """The review apps the key sees: names `<prefix>-mr-<digits>`, of the team when there is one."""
    listed = heroku.request("GET", f"/teams/{team}/apps" if team else "/apps", Range="name ..; max=1000")
    ours = re.compile(rf"^{re.escape(prefix)}-mr-[0-9]+$")
    return sorted(str(app["name"]) for app in listed or [] if ours.match(str(app.get("name", ""))))


def existing_app(heroku: Heroku) -> dict[str, Any] | None:
    try:
        return dict(heroku.request("GET", f"/apps/{heroku.app}"))
    except ApiError as exc:
        if exc.status in (403, 404):  # missing, or another account's: creating it tells which
            return None
        raise


def create_review_app(heroku: Heroku, env: dict[str, str], cap: int) -> dict[str, Any]:
    prefix, team = env[REVIEW_PREFIX].strip(), env.get(REVIEW_TEAM, "").strip()
    others = review_apps(heroku, prefix, team)
    if len(others) >= cap:
        raise ReleaseError(
            f"refusing to create review app {heroku.app}: {len(others)} review apps exist ({', '.join(others)}) "
            f"and the cap is {cap} (SHIPYARD_REVIEW_MAX_APPS, shipyard:review.maxApps). Stop the review "
            "environment of a merge request that no longer needs one, or raise the cap."
        )
    body = {"name": heroku.app, "region": env["SHIPYARD_REVIEW_REGION"].strip(), "stack": "container"}
    try:
        if team:
            return dict(heroku.request("POST", "/teams/apps", {**body, "team": team}))
        return dict(heroku.request("POST", "/apps", body))
    except ApiError as exc:
        if exc.status == 422 and "taken" in exc.api_message:
            raise ReleaseError(
                f"review app name {heroku.app} is taken by another Heroku account ({exc.api_message}): Heroku app "
                f"names are global (H1). Choose another shipyard:review.appPrefix."
            ) from None
        raise


def couple_review_app(heroku: Heroku, pipeline: str, created: bool) -> None:
    """The app joins the build stack's pipeline at the stage `review`, where Heroku allows it: a
    coupling asks for access to the pipeline too, which Heroku may deny the review key's member. The
    app works without it, so a refusal, or an API that does not answer, is reported and the job goes on."""
    try:
        if not created:
            coupling = heroku.request("GET", f"/apps/{heroku.app}/pipeline-couplings")
            found = coupling.get("pipeline") if isinstance(coupling, dict) else None
            coupled_to = str(found.get("id", "")) if isinstance(found, dict) else ""
            if coupled_to != pipeline:
                print(f"note: review app {heroku.app} is in another Heroku pipeline ({coupled_to}), left there")
            return
    except ApiError as exc:
        if exc.status != 404:  # 404: in no pipeline yet
            print(f"note: review app {heroku.app}: its pipeline coupling could not be read ({exc}); left as it is")
            return
    except ReleaseError as exc:  # no answer at all
        print(f"note: review app {heroku.app}: its pipeline coupling could not be read ({exc}); left as it is")
        return
    try:
        heroku.request("POST", "/pipeline-couplings", {"app": heroku.app, "pipeline": pipeline, "stage": "review"})
    except ApiError as exc:
        print(
            f"note: review app {heroku.app} is not in the Heroku pipeline {pipeline}: Heroku refused the coupling "
            f"({exc.status}: {exc.api_message or 'no message'}). The app works without it; a member with "
            "access to the pipeline can add it with `heroku pipelines:add`."
        )
        return
    except ReleaseError as exc:  # no answer at all
        print(f"note: review app {heroku.app} is not in the Heroku pipeline {pipeline}: {exc}")
        return
    print(f"review app {heroku.app} joined Heroku pipeline {pipeline} at the stage review")


def delete_command(app: str) -> str:
    return f"heroku apps:destroy --app {app} --confirm {app}"


def ensure_review_app(args: argparse.Namespace, env: dict[str, str]) -> dict[str, str]:
    heroku, app = review_input(env, REVIEW_REQUIRED, checks=(lambda: review_settings(env),))
    review = review_settings(env)
    found = existing_app(heroku)
    created = found is None
    if found is None:
        found = create_review_app(heroku, env, review.cap)
        print(f"created review app {app}")
    else:
        print(f"reusing review app {app}")
    try:
        heroku.request("PATCH", f"/apps/{app}/config-vars", review.config_vars)
        source = f"{review.repository.url}:mr-{env['CI_MERGE_REQUEST_IID'].strip()}-{env['CI_COMMIT_SHA'].strip()}"
        with tempfile.TemporaryDirectory() as folder:
            skopeo = Skopeo(folder, review.repository.registry)
            image = inspect_source(skopeo, source)
            released = publish(skopeo, image, f"registry.heroku.com/{app}/{REVIEW_PROCESS}", heroku, args)
        if review.dyno_size:  # after the release: a container app has no process type before its first (H6)
            heroku.request(
                "PATCH",
                f"/apps/{app}/formation",
                {"updates": [{"type": REVIEW_PROCESS, "quantity": 1, "size": review.dyno_size}]},
            )
    except ReleaseError as exc:
        if not created:
            raise
        try:
            heroku.request("DELETE", f"/apps/{app}")
        except ReleaseError as undone:
            raise ReleaseError(
                f"{exc}\nreview app {app} was created but not released, and deleting it failed "
                f"({undone}): delete it with `{delete_command(app)}`"
            ) from None
        raise ReleaseError(f"{exc}\nreview app {app} was created but not released: deleted it again") from None
    if review.pipeline:
        couple_review_app(heroku, review.pipeline, created)
    url = str(found.get("web_url") or f"https://{app}.herokuapp.com/")
    print(f"review app {app}: {url}")
    return {"SHIPYARD_REVIEW_APP": app, "SHIPYARD_REVIEW_URL": url, **released}


def delete_review_app(env: dict[str, str]) -> dict[str, str]:
    heroku, app = review_input(env, REVIEW_STOP_REQUIRED)
    try:
        heroku.request("DELETE", f"/apps/{app}")
    except ApiError as exc:
        if exc.status != 404:
            raise
        print(f"review app {app} does not exist: nothing to delete")
        return {}
    print(f"deleted review app {app}")
    return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="heroku-release", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--digest",
        help="release $ECR_REPOSITORY_URL@DIGEST (DIGEST or that whole reference) instead of the commit's tag",
    )
    parser.add_argument("--dotenv", help="write SHIPYARD_IMAGE_DIGEST and the release version here")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds to wait for the release")
    parser.add_argument("--interval", type=float, default=5, help="seconds between polls of the release")
    parser.add_argument("--scan-timeout", type=float, default=600, help="seconds to wait for ECR's scan to finish")
    parser.add_argument(
        "--scan-interval", type=float, default=5, help="seconds before the first new look at a running scan (doubles)"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--ensure-review-app", action="store_true", help="create or reuse the MR's review app, release")
    mode.add_argument("--delete-review-app", action="store_true", help="delete the MR's review app")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    review = args.ensure_review_app or args.delete_review_app
    if review and not env.get(REVIEW_PREFIX, "").strip():
        print(f"{REVIEW_PREFIX} is not set: the build stack has no shipyard:review, so there are no review apps")
        return 0
    try:
        if args.ensure_review_app:
            result = ensure_review_app(args, env)
        elif args.delete_review_app:
            result = delete_review_app(env)
        else:
            result = deploy(args, env)
    except BadInput as exc:
        fail(str(exc))
        return 2
    except ReleaseError as exc:
        fail(str(exc))
        return 1
    if args.dotenv:
        with open(args.dotenv, "w") as handle:
            handle.writelines(f"{key}={value}\n" for key, value in result.items())
    return 0


if __name__ == "__main__":
    sys.exit(main())
