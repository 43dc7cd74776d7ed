"""ci/heroku_release.py, run for real: a stub skopeo on PATH over a registry kept as files, and a
local HTTP server that answers like Heroku's Platform API. Both answer from
infra/facts/heroku-registry.yaml, and share one registry: Heroku releases only an image that was
pushed to the app. The requests the script makes are checked."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from infra import facts
from tests.conftest import ROOT
from tests.fake_api import serve

SCRIPT = ROOT / "ci" / "heroku_release.py"
STUBS = Path(__file__).resolve().parent / "stubs"
HEROKU = facts.load("heroku-registry")
API = HEROKU["platform_api"]
KEY = "HRKU-releaseKeyCanary0123456789"
ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/acme/storefront"
SHA = "0f3c9a1b2c3d4e5f60718293a4b5c6d7e8f90a1b"
APP = "acme-storefront-staging"
TARGET = HEROKU["registry"]["image"].format(app=APP, process="web")
CONFIG_DIGEST = "sha256:" + "c0" * 32


def manifest(
    media_type: str = "application/vnd.docker.distribution.manifest.v2+json", config: str = CONFIG_DIGEST
) -> str:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config},
            "layers": [],
        }
    )


def digest_of(raw: str) -> str:
    return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()


def stored(folder: Path, name: str) -> Path:
    return folder / name.replace("/", "%")


def read_registry(folder: Path) -> dict[str, str]:
    """Every tag of the stub's registry → the manifest it points at."""
    found = {}
    for tag in (p for p in folder.iterdir() if "@" not in p.name):
        ref = tag.name.replace("%", "/")
        found[ref] = stored(folder, f"{ref.rsplit(':', 1)[0]}@{tag.read_text()}").read_text()
    return found


def route(endpoint: str) -> tuple[str, re.Pattern[str]]:
    """A fact's `METHOD /path/{param}` as the method and a pattern naming the parameters."""
    method, template = endpoint.split(" ", 1)
    return method, re.compile(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$")


ROUTES = {name: route(endpoint) for name, endpoint in API["endpoints"].items()}


def error(name: str, source: dict[str, Any] | None = None) -> tuple[int, dict[str, str]]:
    known = (source or API["errors"])[name]
    return known["status"], {"id": known["id"], "message": known["message"]}


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeHeroku:
    """Heroku's Platform API for one app, as the facts describe it: the key, the app, releases, the
    docker-releases formation update (of an image pushed to the app's registry image, found in the
    skopeo stub's registry), release output streams. `outcome` is what the next release ends as;
    `status` forces an error answer."""

    key: str = KEY
    outcome: str = "succeeded"
    status: int = 0
    error: dict[str, str] = field(default_factory=dict)
    releases: list[dict[str, Any]] = field(
        default_factory=lambda: [{"id": "r-41", "version": 41, "status": "succeeded"}]
    )
    requests: list[Request] = field(default_factory=list)
    registry: Path = Path("/nonexistent")
    url: str = ""

    def pushed_config_digests(self, process: str) -> set[str]:
        image = stored(self.registry, HEROKU["registry"]["image"].format(app=APP, process=process))
        return {json.loads(p.read_text())["config"]["digest"] for p in self.registry.glob(f"{image.name}@sha256:*")}

    def answer(self, method: str, path: str, headers: Message, body: Any) -> tuple[int, Any]:
        if path.startswith("/streams/"):  # pre-signed, on another host in real life: no key
            return 200, "Running release command...\nrake aborted! PG::ConnectionBad\n"
        if headers.get("Authorization") != API["authorization"].format(api_key=self.key):
            return error("unauthorized")
        if self.status:
            return self.status, self.error
        found = {name: (m, pattern.match(path)) for name, (m, pattern) in ROUTES.items()}
        name, params = next(
            ((n, match.groupdict()) for n, (m, match) in found.items() if match and m == method), ("", {})
        )
        if not name:
            return 404, {"id": "not_found", "message": "Not found."}
        if params["app"] != APP:
            return error("app_not_found")
        if name == "release_list":
            return 206, sorted(self.releases, key=lambda r: -r["version"])[:1]
        if name == "formation_update":
            return self.update_formation(headers, body)
        release = next((r for r in self.releases if r["id"] == params["release"]), None)
        if release is None:
            return error("release_not_found")
        release["polls"] = release.get("polls", 0) + 1
        if release["status"] == "pending" and release["polls"] > 1:  # pending once, then done
            release["status"] = self.outcome
        return 200, {k: v for k, v in release.items() if k != "polls"}

    def update_formation(self, headers: Message, body: Any) -> tuple[int, Any]:
        docker = API["docker_release"]
        updates = body["updates"]
        if any("docker_image" in u for u in updates):
            # The plain formation update has no docker_image: only the docker-releases variant does (H10, H14).
            if headers.get("Accept") != docker["accept"]:
                return 422, {"id": "invalid_params", "message": "Invalid params: docker_image is not allowed."}
            if any(set(u) != set(docker["update_fields"]) for u in updates):
                return 422, {"id": "invalid_params", "message": f"Each update needs {docker['update_fields']}."}
            if any(u["docker_image"] not in self.pushed_config_digests(u["type"]) for u in updates):
                return error("image_not_found", docker)
        version = max(r["version"] for r in self.releases) + 1
        self.releases.append(
            {
                "id": f"r-{version}",
                "version": version,
                "status": "pending",
                "output_stream_url": f"{self.url}/streams/r-{version}",
            }
        )
        return 200, [{"type": u["type"], "docker_image": {"id": u.get("docker_image")}} for u in updates]


@pytest.fixture
def heroku(tmp_path: Path) -> Iterator[FakeHeroku]:
    fake = FakeHeroku(registry=tmp_path / "registry")

    def answer(method: str, path: str, headers: Message, body: Any) -> tuple[int, Any]:
        fake.requests.append(Request(method, path, dict(headers), body))
        return fake.answer(method, path, headers, body)

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
    """The deploy job's environment: what shipyard provisions, plus the fake API's address. The
    registry holds `tags` (reference → manifest, stored under the manifest's digest) and
    `by_digest` (digest reference → bytes served for it, whatever they hash to)."""

    def __init__(self, tmp: Path, heroku: FakeHeroku) -> None:
        self.tmp = tmp
        self.tags = {f"{ECR}:{SHA}": manifest()}
        self.by_digest: dict[str, str] = {}
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
            "STUB_REGISTRY": str(heroku.registry),
            "STUB_LOG": str(tmp / "skopeo.log"),
            "STUB_HEROKU_API_KEY": heroku.key,
            "STUB_HEROKU_MANIFEST_TYPES": " ".join(HEROKU["registry"]["manifest_media_types"]),
        }

    def run(self, *args: str) -> Result:
        folder = Path(self.env["STUB_REGISTRY"])
        folder.mkdir()
        for ref, raw in self.tags.items():
            repository, _ = ref.rsplit(":", 1)
            stored(folder, f"{repository}@{digest_of(raw)}").write_text(raw)
            stored(folder, ref).write_text(digest_of(raw))
        for ref, raw in self.by_digest.items():
            stored(folder, ref).write_text(raw)
        dotenv = self.tmp / "release.env"
        argv = [sys.executable, str(SCRIPT), "--interval", "0.01", "--timeout", "10", "--dotenv", str(dotenv), *args]
        proc = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=60)
        log = self.tmp / "skopeo.log"
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        values = dict(line.split("=", 1) for line in dotenv.read_text().splitlines()) if dotenv.exists() else {}
        return Result(proc.returncode, proc.stdout + proc.stderr, calls, values, read_registry(folder))


@pytest.fixture
def job(tmp_path: Path, heroku: FakeHeroku) -> Job:
    return Job(tmp_path, heroku)


def api_calls(heroku: FakeHeroku) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in heroku.requests]


def release_script() -> Any:
    spec = importlib.util.spec_from_file_location("heroku_release", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_release_script_uses_what_the_facts_say_about_heroku() -> None:  # guards H10, H14
    script = release_script()
    assert HEROKU["registry"]["manifest_media_types"] == [script.DOCKER_V2S2]
    assert API["accept"] == script.RELEASES_API
    assert API["docker_release"]["accept"] == script.DOCKER_RELEASES_API
    default_url = re.search(r'"HEROKU_API_URL", "([^"]+)"', SCRIPT.read_text())
    assert default_url is not None and default_url.group(1) == API["base_url"]
    required = {name: "x" for name in script.REQUIRED}
    assert script.check_environment({**required, "HEROKU_REGISTRY_IMAGE": TARGET}, None) == []
    elsewhere = TARGET.replace(HEROKU["registry"]["host"], "registry.example.com")
    assert script.check_environment({**required, "HEROKU_REGISTRY_IMAGE": elsewhere}, None) != []


def test_release_copies_the_commit_image_and_releases_its_config_digest(job: Job, heroku: FakeHeroku) -> None:
    result = job.run()
    assert result.code == 0, result.output
    # The exact manifest bytes reach Heroku's registry (no rebuild, no rewrite).
    assert result.registry[f"{TARGET}:latest"] == job.tags[f"{ECR}:{SHA}"]
    copy = next(c for c in result.skopeo if c["args"][0] == "copy")
    assert copy["args"][-2:] == [f"docker://{ECR}:{SHA}", f"docker://{TARGET}"]
    assert "--preserve-digests" in copy["args"]
    # ECR is read through the credential helper, never with a key (R1); only Heroku's registry has a login.
    assert copy["auth"]["credHelpers"] == {ECR.split("/")[0]: "ecr-login"}
    assert set(copy["auth"]["auths"]) == {HEROKU["registry"]["host"]}

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
    job.tags[f"{ECR}:staged-earlier"] = tested  # what staging released, by its digest
    job.tags[f"{ECR}:{SHA}"] = manifest().replace("layers", "layers ")  # the commit's tag holds other bytes now
    result = job.run("--digest", digest_of(tested))
    assert result.code == 0, result.output
    assert result.registry[f"{TARGET}:latest"] == tested  # guards H7: the copy is the promotion
    assert result.dotenv["SHIPYARD_IMAGE_DIGEST"] == digest_of(tested)


def test_a_manifest_that_does_not_hash_to_the_asked_digest_is_refused(job: Job, heroku: FakeHeroku) -> None:
    tested = manifest()
    other = manifest(config="sha256:" + "d1" * 32)  # another image, served under the tested image's digest
    job.by_digest[f"{ECR}@{digest_of(tested)}"] = other
    result = job.run("--digest", digest_of(tested))
    assert result.code == 1
    assert (
        f"{ECR}@{digest_of(tested)} answered with a manifest of digest {digest_of(other)}: not the one asked for"
        in result.output
    )
    assert [c["args"][0] for c in result.skopeo] == ["inspect"]  # nothing pushed
    assert f"{TARGET}:latest" not in result.registry
    assert heroku.requests == []


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
    job.tags[f"{ECR}:{SHA}"] = manifest("application/vnd.oci.image.manifest.v1+json")
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
    heroku.status, heroku.error = error("image_not_found", API["docker_release"])
    result = job.run()
    assert result.code == 1
    assert "failed (422): Couldn't find that docker image." in result.output


def test_a_refused_key_fails_at_the_registry_login_and_says_which_token_to_use(
    job: Job, heroku: FakeHeroku
) -> None:  # guards H9
    expired = "HRKU-expiredAuthToken0123456789"
    job.env["HEROKU_API_KEY"] = expired
    result = job.run()
    assert result.code == 1
    assert "invalid username/password" in result.output
    assert "HEROKU_API_KEY" in result.output and "heroku authorizations:create" in result.output
    assert expired not in result.output
    assert [c["args"][0] for c in result.skopeo] == ["inspect", "login"]  # nothing pushed
    assert heroku.requests == []


def test_a_key_the_api_refuses_says_which_token_to_use(job: Job, heroku: FakeHeroku) -> None:  # guards H9
    heroku.key = "HRKU-rotatedSinceTheLogin0123456"  # the registry took the key, the API no longer does
    result = job.run()
    assert result.code == 1
    assert "HEROKU_API_KEY (401)" in result.output and "heroku authorizations:create" in result.output
    assert KEY not in result.output
    assert api_calls(heroku) == [("GET", f"/apps/{APP}/releases")]


def test_an_app_heroku_does_not_know_fails_naming_it(job: Job, heroku: FakeHeroku) -> None:
    job.env["HEROKU_APP_NAME"] = "acme-storefront-stagign"
    result = job.run()
    assert result.code == 1
    assert (
        "GET /apps/acme-storefront-stagign/releases: not found (404); does app acme-storefront-stagign exist? "
        "Couldn't find that app." in result.output
    )
    assert [r.method for r in heroku.requests] == ["GET"]  # nothing released


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


def test_the_skopeo_stub_refuses_what_herokus_registry_refuses(job: Job) -> None:  # guards H10
    folder = Path(job.env["STUB_REGISTRY"])
    folder.mkdir()
    oci = manifest("application/vnd.oci.image.manifest.v1+json")
    stored(folder, f"{ECR}@{digest_of(oci)}").write_text(oci)
    auth = job.tmp / "auth.json"
    auth.write_text("{}")
    env = {**job.env, "REGISTRY_AUTH_FILE": str(auth)}

    def skopeo(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(STUBS / "skopeo"), *args], env=env, input=stdin, capture_output=True, text=True)

    push = ("copy", f"docker://{ECR}@{digest_of(oci)}", f"docker://{TARGET}")
    assert "unauthorized" in skopeo(*push).stderr  # no login yet
    assert skopeo("login", "--username", "_", "--password-stdin", "registry.heroku.com", stdin="wrong").returncode
    assert skopeo("login", "--username", "_", "--password-stdin", "registry.heroku.com", stdin=KEY).returncode == 0
    refused = skopeo(*push)
    assert refused.returncode == 1 and "405" in refused.stderr
    assert read_registry(folder) == {}
