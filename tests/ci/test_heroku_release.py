"""ci/heroku_release.py, run for real: a stub skopeo on PATH with a registry in a file, and a local
HTTP server that answers like Heroku's Platform API. The requests the script makes are checked."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.fake_api import serve

SCRIPT = ROOT / "ci" / "heroku_release.py"
STUBS = Path(__file__).resolve().parent / "stubs"
KEY = "HRKU-releaseKeyCanary0123456789"
ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/acme/storefront"
SHA = "0f3c9a1b2c3d4e5f60718293a4b5c6d7e8f90a1b"
APP = "acme-storefront-staging"
TARGET = f"registry.heroku.com/{APP}/web"
CONFIG_DIGEST = "sha256:" + "c0" * 32


def manifest(media_type: str = "application/vnd.docker.distribution.manifest.v2+json") -> str:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": CONFIG_DIGEST},
            "layers": [],
        }
    )


def digest_of(raw: str) -> str:
    return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeHeroku:
    """Heroku's Platform API for one app: releases, the docker-releases formation PATCH, release
    output streams. `outcome` is what the next release ends as; `status` forces an error answer."""

    outcome: str = "succeeded"
    status: int = 0
    error: dict[str, str] = field(default_factory=dict)
    releases: list[dict[str, Any]] = field(
        default_factory=lambda: [{"id": "r-41", "version": 41, "status": "succeeded"}]
    )
    requests: list[Request] = field(default_factory=list)
    url: str = ""

    def answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if self.status:
            return self.status, self.error
        if path == f"/apps/{APP}/releases" and method == "GET":
            return 206, sorted(self.releases, key=lambda r: -r["version"])[:1]
        if path == f"/apps/{APP}/formation" and method == "PATCH":
            version = max(r["version"] for r in self.releases) + 1
            self.releases.append(
                {
                    "id": f"r-{version}",
                    "version": version,
                    "status": "pending",
                    "output_stream_url": f"{self.url}/streams/r-{version}",
                    "polls": 0,
                }
            )
            return 200, [{"type": "web", "docker_image": {"id": body["updates"][0]["docker_image"]}}]
        if path.startswith(f"/apps/{APP}/releases/") and method == "GET":
            release = next(r for r in self.releases if r["id"] == path.rsplit("/", 1)[1])
            release["polls"] += 1
            if release["polls"] > 1:  # pending once, then done
                release["status"] = self.outcome
            return 200, {k: v for k, v in release.items() if k != "polls"}
        if path.startswith("/streams/"):
            return 200, "Running release command...\nrake aborted! PG::ConnectionBad\n"
        return 404, {"id": "not_found", "message": "Couldn't find that app."}


@pytest.fixture
def heroku() -> Iterator[FakeHeroku]:
    fake = FakeHeroku()

    def answer(method: str, path: str, headers: Message, body: Any) -> tuple[int, Any]:
        fake.requests.append(Request(method, path, dict(headers), body))
        return fake.answer(method, path, body)

    with serve(answer) as url:
        fake.url = url
        yield fake


@dataclass
class Result:
    code: int
    output: str
    skopeo: list[dict[str, Any]]
    dotenv: dict[str, str]
    registry: dict[str, str]


class Job:
    """The deploy job's environment: what shipyard provisions, plus the fake API's address."""

    def __init__(self, tmp: Path, heroku: FakeHeroku) -> None:
        self.tmp = tmp
        self.registry = {f"{ECR}:{SHA}": manifest()}
        self.env = {
            "PATH": f"{STUBS}:{os.environ['PATH']}",
            "HOME": str(tmp),
            "HEROKU_API_KEY": KEY,
            "HEROKU_APP_NAME": APP,
            "HEROKU_REGISTRY_IMAGE": TARGET,
            "ECR_REPOSITORY_URL": ECR,
            "AWS_DEFAULT_REGION": "eu-west-1",
            "CI_COMMIT_SHA": SHA,
            "HEROKU_API_URL": heroku.url,
            "STUB_REGISTRY": str(tmp / "registry"),
            "STUB_LOG": str(tmp / "skopeo.log"),
        }

    def run(self, *args: str) -> Result:
        folder = self.tmp / "registry"
        folder.mkdir()
        for ref, raw in self.registry.items():
            (folder / ref.replace("/", "%")).write_text(raw)
        dotenv = self.tmp / "release.env"
        argv = [sys.executable, str(SCRIPT), "--interval", "0.01", "--timeout", "10", "--dotenv", str(dotenv), *args]
        proc = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=60)
        log = self.tmp / "skopeo.log"
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        values = dict(line.split("=", 1) for line in dotenv.read_text().splitlines()) if dotenv.exists() else {}
        stored = {path.name.replace("%", "/"): path.read_text() for path in folder.iterdir()}
        return Result(proc.returncode, proc.stdout + proc.stderr, calls, values, stored)


@pytest.fixture
def job(tmp_path: Path, heroku: FakeHeroku) -> Job:
    return Job(tmp_path, heroku)


def api_calls(heroku: FakeHeroku) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in heroku.requests]


def test_release_copies_the_commit_image_and_releases_its_config_digest(job: Job, heroku: FakeHeroku) -> None:
    result = job.run()
    assert result.code == 0, result.output
    # The exact manifest bytes reach Heroku's registry (no rebuild, no rewrite).
    assert result.registry[f"{TARGET}:latest"] == job.registry[f"{ECR}:{SHA}"]
    copy = next(c for c in result.skopeo if c["args"][0] == "copy")
    assert copy["args"][-2:] == [f"docker://{ECR}:{SHA}", f"docker://{TARGET}"]
    assert "--preserve-digests" in copy["args"]
    # ECR is read through the credential helper, never with a key (R1).
    assert copy["auth"] == {"credHelpers": {ECR.split("/")[0]: "ecr-login"}}

    assert api_calls(heroku) == [
        ("GET", f"/apps/{APP}/releases"),
        ("PATCH", f"/apps/{APP}/formation"),
        ("GET", f"/apps/{APP}/releases"),
        ("GET", f"/apps/{APP}/releases/r-42"),
        ("GET", f"/apps/{APP}/releases/r-42"),
    ]
    patch = heroku.requests[1]
    # guards H10: the docker-releases API variant, the image's config digest
    assert patch.headers["Accept"] == "application/vnd.heroku+json; version=3.docker-releases"
    assert patch.body == {"updates": [{"type": "web", "docker_image": CONFIG_DIGEST}]}
    assert all(r.headers["Authorization"] == f"Bearer {KEY}" for r in heroku.requests)
    assert heroku.requests[0].headers["Range"] == "version ..; max=1, order=desc"
    assert result.dotenv == {
        "SHIPYARD_IMAGE_DIGEST": digest_of(manifest()),
        "SHIPYARD_CONFIG_DIGEST": CONFIG_DIGEST,
        "SHIPYARD_RELEASE_VERSION": "42",
    }


def test_the_api_key_reaches_skopeo_on_stdin_and_is_never_printed(job: Job) -> None:
    result = job.run()
    login = next(c for c in result.skopeo if c["args"][0] == "login")
    assert login["stdin"] == KEY and login["args"][-1] == "registry.heroku.com"
    assert not any(KEY in arg for call in result.skopeo for arg in call["args"])
    assert KEY not in result.output


def test_production_releases_exactly_the_manifest_staging_released(job: Job, heroku: FakeHeroku) -> None:
    tested = manifest()
    job.registry[f"{ECR}:staged-earlier"] = tested  # what staging released, by its digest
    job.registry[f"{ECR}:{SHA}"] = manifest().replace("layers", "layers ")  # the commit's tag holds other bytes now
    result = job.run("--digest", digest_of(tested))
    assert result.code == 0, result.output
    assert result.registry[f"{TARGET}:latest"] == tested  # guards H7: the copy is the promotion
    assert result.dotenv["SHIPYARD_IMAGE_DIGEST"] == digest_of(tested)


def test_a_failed_release_fails_the_job_with_the_release_output(job: Job, heroku: FakeHeroku) -> None:
    heroku.outcome = "failed"
    result = job.run()
    assert result.code == 1
    assert "release v42 of acme-storefront-staging failed" in result.output
    assert "rake aborted! PG::ConnectionBad" in result.output
    stream = next(r for r in heroku.requests if r.path.startswith("/streams/"))
    # The pre-signed output URL is another host in real life: it never gets the key.
    assert "Authorization" not in stream.headers
    assert result.dotenv == {}


def test_an_oci_image_is_refused_before_anything_is_pushed_or_released(job: Job, heroku: FakeHeroku) -> None:
    # guards H10: Heroku's registry answers 405 to OCI manifests and indexes
    job.registry[f"{ECR}:{SHA}"] = manifest("application/vnd.oci.image.manifest.v1+json")
    result = job.run()
    assert result.code == 1
    assert "accepts only application/vnd.docker.distribution.manifest.v2+json" in result.output
    assert "--provenance=false" in result.output
    assert [c["args"][0] for c in result.skopeo] == ["inspect"]
    assert heroku.requests == []


def test_a_digest_that_is_not_in_the_registry_fails_without_a_release(job: Job, heroku: FakeHeroku) -> None:
    result = job.run("--digest", "sha256:" + "ab" * 32)
    assert result.code == 1
    assert "manifest unknown" in result.output
    assert heroku.requests == []


def test_a_copy_that_changes_the_manifest_is_caught(job: Job, heroku: FakeHeroku) -> None:
    job.env["STUB_COPY_REWRITES"] = "1"
    result = job.run()
    assert result.code == 1
    assert f"does not hold the manifest {digest_of(manifest())}" in result.output
    assert heroku.requests == []


def test_heroku_refusing_the_image_digest_fails_with_its_message(job: Job, heroku: FakeHeroku) -> None:
    heroku.status, heroku.error = 422, {"id": "invalid_params", "message": "Couldn't find that docker image."}
    result = job.run()
    assert result.code == 1
    assert "failed (422): Couldn't find that docker image." in result.output


def test_a_refused_key_says_which_token_to_use(job: Job, heroku: FakeHeroku) -> None:
    heroku.status, heroku.error = 401, {"id": "unauthorized", "message": "Invalid credentials provided."}
    result = job.run()
    assert result.code == 1
    assert "HEROKU_API_KEY (401)" in result.output and "heroku authorizations:create" in result.output
    assert KEY not in result.output


@pytest.mark.parametrize(
    ("unset", "digest", "expected"),
    [
        # guards G4: a protected or environment-scoped variable absent from the job
        (
            ["HEROKU_API_KEY", "HEROKU_APP_NAME", "ECR_REPOSITORY_URL"],
            None,
            "missing CI/CD variable(s): HEROKU_API_KEY, HEROKU_APP_NAME, ECR_REPOSITORY_URL",
        ),
        ([], "", "--digest must be sha256:<64 hex>, got ''"),  # staging's dotenv never arrived
        ([], "sha256:ABC", "--digest must be sha256:<64 hex>"),
    ],
)
def test_bad_input_names_every_problem_and_does_nothing(
    job: Job, heroku: FakeHeroku, unset: list[str], digest: str | None, expected: str
) -> None:
    for name in unset:
        job.env[name] = ""  # GitLab gives an unreachable protected variable as empty
    result = job.run(*(["--digest", digest] if digest is not None else []))
    assert result.code == 2
    assert expected in result.output
    assert "Traceback" not in result.output
    assert result.skopeo == [] and heroku.requests == []


def test_a_registry_image_that_is_not_herokus_is_refused(job: Job, heroku: FakeHeroku) -> None:
    job.env["HEROKU_REGISTRY_IMAGE"] = f"{ECR}:latest"
    result = job.run()
    assert result.code == 2
    assert "HEROKU_REGISTRY_IMAGE must be registry.heroku.com/<app>/<process>" in result.output
    assert result.skopeo == []
