"""ci/heroku_release.py, run for real: stub skopeo, cosign and aws on PATH over one registry kept as
files (tests/ci/stubs/_state.py), and a local HTTP server that answers like Heroku's Platform API.
They answer from infra/facts/heroku-registry.yaml, cosign.yaml and ecr-scan-findings.yaml: Heroku
releases only an image that was pushed to the app, cosign verifies only a signature stored under the
image's `.sig` tag and made with the same key, ECR answers only the scans stored for the image. The
requests and calls the script makes are checked.

The script's main() runs in this process with os.environ replaced by the job's environment (what
`python ci/heroku_release.py` gets), so its own subprocesses are the stubs on PATH; the full release
also runs as a separate `python ci/heroku_release.py` process. The stubs read the facts they answer
from as JSON written once per session ($STUB_FACTS); one fake API server serves the module, a fresh
fake app per test; the job's files are kept in memory where the system has a tmpfs."""

from __future__ import annotations

import functools
import hashlib
import importlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback
from collections import Counter
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any
from unittest import mock

import botocore
import botocore.loaders
import pytest

from infra import facts
from tests.by_path import load_module
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
COSIGN = facts.load("cosign")
SCANS = facts.load("ecr-scan-findings")
# The build stack's signing key (its public half, as SHIPYARD_SIGNING_PUBLIC_KEY holds it) and another.
SIGNING_KEY = (
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEshipyardReleaseSigningKey0000000000\n"
    "-----END PUBLIC KEY-----\n"
)
OTHER_KEY = SIGNING_KEY.replace("shipyardReleaseSigningKey", "someoneElsesSigningKey000")
REVIEW_ECR = f"{ECR}-review"
SIGNING = "SHIPYARD_SIGNING_PUBLIC_KEY"


COSIGN_STUB = importlib.import_module("tests.ci.stubs._cosign")  # writes signatures as cosign does
STUB_STATE = importlib.import_module("tests.ci.stubs._state")


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
COUPLING_STAGES = API["pipeline_coupling_stages"]
DYNO_SIZES = API["dyno_sizes"]
PIPELINE = "3be4b9ee-5734-4033-a4c0-28c3d5de99fe"


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
    """Heroku's Platform API for the key's apps, as the facts describe it: the key, the apps, releases,
    the docker-releases formation update (of an image pushed to the app's registry image, found in the
    skopeo stub's registry), scaling a released process type (no release), release output streams;
    creating, listing and deleting apps and setting their config vars; pipeline couplings. `taken` are
    names of other accounts' apps; `pipelines` the pipelines the key may couple apps to. `outcome` is
    what the next release ends as; `status` forces an error answer, `refuse_delete` one to every
    DELETE."""

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
    apps: dict[str, dict[str, Any]] = field(default_factory=lambda: {APP: {}})
    taken: set[str] = field(default_factory=set)
    refuse_delete: bool = False
    pipelines: set[str] = field(default_factory=lambda: {PIPELINE})
    couplings: dict[str, dict[str, Any]] = field(default_factory=dict)
    formation: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    forced: dict[str, tuple[int, Any]] = field(default_factory=dict)  # route name → its answer instead

    def app(self, name: str) -> dict[str, Any]:
        return {"name": name, "web_url": f"https://{name}-0a1b2c3d4e5f.herokuapp.com/", **self.apps[name]}

    def pushed_config_digests(self, app: str, process: str) -> set[str]:
        image = stored(self.registry, HEROKU["registry"]["image"].format(app=app, process=process))
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
        if name in self.forced:
            return self.forced[name]
        if name in ("app_list", "team_app_list"):
            return 200, [self.app(app) for app in sorted(self.apps)]
        if name in ("app_create", "team_app_create"):
            if body["name"] in self.apps or body["name"] in self.taken:
                return error("name_taken")
            self.apps[body["name"]] = {"created": body}
            return 201, self.app(body["name"])
        if name == "pipeline_coupling_create":
            return self.couple(body)
        if name == "team_app_info":  # not a route the release script may take
            return 404, {"id": "not_found", "message": "Not found."}
        if params["app"] in self.taken:
            return error("forbidden")
        if params["app"] not in self.apps:
            return error("app_not_found")
        if name == "app_info":
            return 200, self.app(params["app"])
        if name == "app_pipeline_coupling":
            coupling = self.couplings.get(params["app"])
            return (200, coupling) if coupling else error("coupling_not_found")
        if name == "app_delete":
            if self.refuse_delete:
                return 503, {"id": "unavailable", "message": "Service unavailable."}
            self.couplings.pop(params["app"], None)  # a coupling goes with its app
            return 200, {"name": self.apps.pop(params["app"]) and params["app"]}
        if name == "config_vars_update":
            self.apps[params["app"]]["config_vars"] = body
            return 200, body
        if name == "release_list":
            return 206, sorted(self.releases, key=lambda r: -r["version"])[:1]
        if name == "formation_update":
            return self.update_formation(params["app"], headers, body)
        release = next((r for r in self.releases if r["id"] == params["release"]), None)
        if release is None:
            return error("release_not_found")
        release["polls"] = release.get("polls", 0) + 1
        if release["status"] == "pending" and release["polls"] > 1:  # pending once, then done
            release["status"] = self.outcome
        return 200, {k: v for k, v in release.items() if k != "polls"}

    def couple(self, body: Any) -> tuple[int, Any]:
        """POST /pipeline-couplings: an app of the key's into a pipeline it may reach, at a known stage."""
        if set(body) != {"app", "pipeline", "stage"} or body["stage"] not in COUPLING_STAGES:
            return 422, {"id": "invalid_params", "message": "Invalid params."}
        if body["pipeline"] not in self.pipelines:
            return 403, {"id": "forbidden", "message": "You do not have access to the pipeline."}
        if body["app"] not in self.apps:
            return error("app_not_found")
        app, pipeline = {"name": body["app"]}, {"id": body["pipeline"]}
        self.couplings[body["app"]] = {"app": app, "pipeline": pipeline, "stage": body["stage"]}
        return 201, self.couplings[body["app"]]

    def update_formation(self, app: str, headers: Message, body: Any) -> tuple[int, Any]:
        docker = API["docker_release"]
        updates = body["updates"]
        if not any("docker_image" in u for u in updates):  # scaling: released process types only, no release
            released = self.formation.get(app, {})
            if any(u["type"] not in released for u in updates):
                return error("formation_not_found")
            if any(str(u.get("size", "basic")).lower() not in DYNO_SIZES for u in updates):
                return 422, {"id": "invalid_params", "message": "Invalid dyno size."}
            for u in updates:
                released[u["type"]].update({k: v for k, v in u.items() if k != "type"})
            return 200, [{"type": u["type"], **released[u["type"]]} for u in updates]
        if any("docker_image" in u for u in updates):
            # The plain formation update has no docker_image: only the docker-releases variant does (H10, H14).
            if headers.get("Accept") != docker["accept"]:
                return 422, {"id": "invalid_params", "message": "Invalid params: docker_image is not allowed."}
            if any(set(u) != set(docker["update_fields"]) for u in updates):
                return 422, {"id": "invalid_params", "message": f"Each update needs {docker['update_fields']}."}
            if any(u["docker_image"] not in self.pushed_config_digests(app, u["type"]) for u in updates):
                return error("image_not_found", docker)
        for u in updates:
            self.formation.setdefault(app, {}).setdefault(u["type"], {"quantity": 1, "size": "basic"})
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


@dataclass
class PlatformApi:
    """One local server for the module; each request goes to the current test's fake app."""

    url: str = ""
    fake: FakeHeroku | None = None


@pytest.fixture(scope="module")
def platform_api() -> Iterator[PlatformApi]:
    api = PlatformApi()

    def answer(method: str, path: str, headers: Message, body: Any) -> tuple[int, Any]:
        fake = api.fake
        if fake is None:  # no test is running: nothing may call the API now
            return 503, {"id": "unavailable", "message": "no fake app between tests"}
        fake.requests.append(Request(method, path, dict(headers), body))
        return fake.answer(method, path, headers, body)

    with serve(answer) as url:
        api.url = url
        yield api


MEMORY = Path("/dev/shm")  # a tmpfs on Linux


@pytest.fixture
def scratch(request: pytest.FixtureRequest) -> Iterator[Path]:
    """The job's folder (its HOME and TMPDIR, the stubs' registry and call log, the dotenv): in
    memory where the system has a tmpfs, as creating files on disk would be most of what these
    tests wait for; the test's tmp_path elsewhere."""
    if not (MEMORY.is_dir() and os.access(MEMORY, os.W_OK)):
        yield request.getfixturevalue("tmp_path")
        return
    folder = Path(tempfile.mkdtemp(prefix="shipyard-heroku-release-", dir=MEMORY))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def heroku(scratch: Path, platform_api: PlatformApi) -> Iterator[FakeHeroku]:
    fake = FakeHeroku(registry=scratch / "registry", url=platform_api.url)
    platform_api.fake = fake
    yield fake
    platform_api.fake = None


@pytest.fixture(scope="session")
def stub_facts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the stubs answer from, read from infra/facts once: each stub call reads this JSON."""
    return STUB_STATE.write_facts(tmp_path_factory.mktemp("stub-facts") / "facts.json")


def basic(name: str, severity: str) -> dict[str, Any]:
    """A finding of ECR's basic scanning."""
    uri = f"https://nvd.nist.gov/vuln/detail/{name}"
    return {"name": name, "uri": uri, "severity": severity, "attributes": [{"key": "package_name", "value": "openssl"}]}


def inspector(cve: str, severity: str) -> dict[str, Any]:
    """A finding of enhanced scanning (Amazon Inspector)."""
    return {
        "severity": severity,
        "title": f"{cve} - openssl",
        "status": "ACTIVE",
        "type": "PACKAGE_VULNERABILITY",
        "packageVulnerabilityDetails": {"vulnerabilityId": cve, "source": "NVD"},
    }


def scan(
    status: str = "COMPLETE", findings: tuple[dict[str, Any], ...] = (), enhanced: tuple[dict[str, Any], ...] = ()
) -> dict[str, Any]:
    """ECR's answer about a scan (the aws stub adds the ids), findings counted as ECR counts them."""
    answer: dict[str, Any] = {"imageScanStatus": {"status": status}}
    if status in SCANS["findings_final"]:
        answer["imageScanFindings"] = {
            "imageScanCompletedAt": "2026-11-30T09:00:00+00:00",
            "vulnerabilitySourceUpdatedAt": "2026-11-30T08:00:00+00:00",
            "findingSeverityCounts": dict(Counter(f["severity"] for f in (*findings, *enhanced))),
            "findings": list(findings),
            **({"enhancedFindings": list(enhanced)} if enhanced else {}),
        }
    return answer


@dataclass
class Result:
    code: int
    output: str
    calls: list[dict[str, Any]]  # skopeo's, cosign's and aws's, in order
    dotenv: dict[str, str]
    registry: dict[str, str]

    @property
    def skopeo(self) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["tool"] == "skopeo"]

    def tools(self) -> list[str]:
        return [f"{c['tool']} {c['args'][0] if c['tool'] != 'aws' else c['args'][1]}" for c in self.calls]


class Job:
    """The deploy job's environment: what shipyard provisions, plus the fake API's address. The
    registry holds `tags` (reference → manifest, stored under the manifest's digest) and
    `by_digest` (digest reference → bytes served for it, whatever they hash to). Every tagged image
    is signed with `signing_key` (unless its digest is in `unsigned`; `claims` signs another digest's
    payload for it) and has a clean finished scan (unless `scans` gives ECR's answers for its digest,
    in turn, or its digest is in `unscanned`)."""

    def __init__(self, tmp: Path, heroku: FakeHeroku, stub_facts: Path) -> None:
        self.tmp = tmp
        self.tags = {f"{ECR}:{SHA}": manifest()}
        self.by_digest: dict[str, str] = {}
        self.signing_key = SIGNING_KEY
        self.unsigned: set[str] = set()
        self.claims: dict[str, str] = {}
        self.scans: dict[str, list[dict[str, Any]]] = {}
        self.unscanned: set[str] = set()
        self.env = {
            "PATH": f"{STUBS}:{os.environ['PATH']}",
            "HOME": str(tmp),
            "TMPDIR": str(tmp),
            "HEROKU_API_KEY": KEY,
            "HEROKU_APP_NAME": APP,
            "HEROKU_REGISTRY_IMAGE": TARGET,
            "ECR_REPOSITORY_URL": ECR,
            "AWS_DEFAULT_REGION": "eu-west-1",
            "CI_COMMIT_SHA": SHA,
            "SHIPYARD_SIGNING_PUBLIC_KEY": SIGNING_KEY,
            "HEROKU_API_URL": heroku.url,
            "STUB_REGISTRY": str(heroku.registry),
            "STUB_LOG": str(tmp / "calls.log"),
            "STUB_PYTHON": sys.executable,
            "STUB_FACTS": str(stub_facts),
            "STUB_HEROKU_API_KEY": heroku.key,
            "STUB_HEROKU_MANIFEST_TYPES": " ".join(HEROKU["registry"]["manifest_media_types"]),
        }

    def run(self, *args: str, separate_process: bool = False, script: Path = SCRIPT) -> Result:
        """The script with `args` in the job's environment: its main() in this process, or with
        `separate_process` (or another copy of the `script`) as `python <script>`."""
        folder = Path(self.env["STUB_REGISTRY"])
        folder.mkdir()
        with mock.patch.dict(os.environ, {"STUB_REGISTRY": str(folder)}):
            for ref, raw in self.tags.items():
                repository, _ = ref.rsplit(":", 1)
                digest = digest_of(raw)
                stored(folder, f"{repository}@{digest}").write_text(raw)
                stored(folder, ref).write_text(digest)
                if digest not in self.unsigned:
                    COSIGN_STUB.sign(repository, digest, self.signing_key, self.claims.get(digest))
                if digest not in self.unscanned:
                    answers = self.scans.get(digest, [scan()])
                    stored(folder, f"{repository}/scans@{digest}").write_text(json.dumps(answers))
        for ref, raw in self.by_digest.items():
            stored(folder, ref).write_text(raw)
        dotenv = self.tmp / "release.env"
        argv = ["--interval", "0.001", "--timeout", "10", "--dotenv", str(dotenv)]
        argv += ["--scan-interval", "0.001", "--scan-timeout", "10", *args]
        if separate_process or script != SCRIPT:
            proc = subprocess.run(
                [sys.executable, str(script), *argv], env=self.env, capture_output=True, text=True, timeout=60
            )
            code, output = proc.returncode, proc.stdout + proc.stderr
        else:
            code, output = run_main(argv, self.env)
        log = Path(self.env["STUB_LOG"])
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        values = dict(line.split("=", 1) for line in dotenv.read_text().splitlines()) if dotenv.exists() else {}
        return Result(code, output, calls, values, read_registry(folder))


def run_main(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """What `python ci/heroku_release.py ARGV` run with environment `env` exits with and prints (its
    stdout, then its stderr), run in this process: os.environ is exactly `env` meanwhile, so the
    script reads the same variables and its subprocesses (skopeo, cosign, aws) are the stubs on
    PATH, and its temporary folder is found from `env` again (TMPDIR) as in a new process; an
    exception it does not handle is printed with its traceback and exits 1, and a SystemExit ends
    it, as the interpreter does with `sys.exit(main())`."""
    out, err = io.StringIO(), io.StringIO()
    with (
        mock.patch.dict(os.environ, env, clear=True),
        mock.patch.object(tempfile, "tempdir", None),
        redirect_stdout(out),
        redirect_stderr(err),
    ):
        try:
            code: Any = release_script().main(argv)
        except SystemExit as exc:
            code = exc.code
        except Exception:
            traceback.print_exc()
            code = 1
        if code is not None and not isinstance(code, int):
            print(code, file=sys.stderr)
            code = 1
    return code or 0, out.getvalue() + err.getvalue()


@pytest.fixture
def job(scratch: Path, heroku: FakeHeroku, stub_facts: Path) -> Job:
    return Job(scratch, heroku, stub_facts)


def api_calls(heroku: FakeHeroku) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in heroku.requests]


@functools.cache
def release_script() -> Any:
    """ci/heroku_release.py as a module (it keeps no state between runs of main())."""
    return load_module(SCRIPT)


def test_the_release_script_uses_what_the_facts_say_about_heroku() -> None:  # guards H10, H14
    script = release_script()
    assert HEROKU["registry"]["manifest_media_types"] == [script.DOCKER_V2S2]
    assert API["accept"] == script.RELEASES_API
    assert API["docker_release"]["accept"] == script.DOCKER_RELEASES_API
    default_url = re.search(r'"HEROKU_API_URL", "([^"]+)"', SCRIPT.read_text())
    assert default_url is not None and default_url.group(1) == API["base_url"]
    required = {name: "x" for name in script.REQUIRED}
    provisioned = {**required, "HEROKU_REGISTRY_IMAGE": TARGET, "ECR_REPOSITORY_URL": ECR, SIGNING: SIGNING_KEY}
    assert script.check_environment(provisioned, None) == []
    elsewhere = TARGET.replace(HEROKU["registry"]["host"], "registry.example.com")
    assert script.check_environment({**provisioned, "HEROKU_REGISTRY_IMAGE": elsewhere}, None) != []


def test_the_release_script_runs_cosign_and_the_aws_cli_as_the_facts_say() -> None:  # guards G11
    script = release_script()
    digest = digest_of(manifest())
    verify = COSIGN["verify"]
    expected = [arg.format(variable=SIGNING, repository=ECR, digest=digest) for arg in verify["command"]]
    assert [*script.COSIGN_VERIFY, f"{ECR}@{digest}"] == expected
    assert set(script.COSIGN_REFUSALS) == {
        verify["exit_codes"]["no_signature"],
        verify["exit_codes"]["no_matching_signature"],
    }
    repository = script.ecr_repository(ECR)
    names = {
        "registry_id": "123456789012",
        "repository_name": "acme/storefront",
        "region": "eu-west-1",
        "digest": digest,
    }
    assert script.scan_command(repository, digest) == [arg.format(**names) for arg in SCANS["command"]]
    assert (tuple(SCANS["findings_final"]), tuple(SCANS["wait_for"])) == (script.FINDINGS_FINAL, script.SCAN_WAIT_FOR)
    assert tuple(SCANS["threshold_order"]) == script.THRESHOLDS
    # The repository name part of the script's ECR pattern accepts exactly what ECR's does.
    pattern = re.compile(SCANS["repository_name_pattern"])
    for name in ("acme/storefront", "a/b.c_d__e--f/g", "storefront", "Acme/x", "a//b", "a_/b", "-a", "a/"):
        ecr_url = f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/{name}"
        assert (script.ecr_repository(ecr_url) is not None) == bool(pattern.fullmatch(name)), name


def test_the_scan_facts_are_botocores_own() -> None:  # guards G11: the aws stub serves ECR's shapes only
    loader = botocore.loaders.Loader()
    ecr = loader.load_service_model("ecr", "service-2")
    shapes, inspector = ecr["shapes"], loader.load_service_model("inspector2", "service-2")["shapes"]
    assert SCANS["statuses"] == shapes["ScanStatus"]["enum"]
    assert SCANS["finding_severities"] == shapes["FindingSeverity"]["enum"]
    assert SCANS["enhanced_severities"] == inspector["Severity"]["enum"]
    assert SCANS["response_members"] == list(shapes["DescribeImageScanFindingsResponse"]["members"])
    assert SCANS["findings_members"] == list(shapes["ImageScanFindings"]["members"])
    assert SCANS["finding_members"] == list(shapes["ImageScanFinding"]["members"])
    assert SCANS["enhanced_finding_members"] == list(shapes["EnhancedImageScanFinding"]["members"])
    assert SCANS["repository_name_pattern"] == shapes["RepositoryName"]["pattern"]
    assert SCANS["registry_id_pattern"] == shapes["RegistryId"]["pattern"]
    errors = {e["shape"] for e in ecr["operations"]["DescribeImageScanFindings"]["errors"]}
    assert set(SCANS["errors"]) <= errors
    assert set(SCANS["findings_final"] + SCANS["wait_for"]) <= set(SCANS["statuses"])
    assert set(SCANS["threshold_order"]) <= set(SCANS["finding_severities"]) & set(SCANS["enhanced_severities"])
    assert SCANS["sources"][0]["ref"].startswith(f"boto/botocore@{botocore.__version__}:")


def test_release_checks_then_copies_the_commit_image_and_releases_its_config_digest(
    job: Job, heroku: FakeHeroku
) -> None:  # guards G11, H14
    result = job.run(separate_process=True)  # the script as the deploy job runs it
    assert result.code == 0, result.output
    digest = digest_of(manifest())
    # The tag is read once and pinned to its digest: the signature, the findings and the copy are of
    # those bytes; nothing reaches Heroku before both checks (G11).
    assert result.tools() == [
        "skopeo inspect",
        "cosign verify",
        "aws describe-image-scan-findings",
        "skopeo login",
        "skopeo copy",
        "skopeo inspect",
    ]
    assert result.calls[0]["args"][-1] == f"docker://{ECR}:{SHA}"
    verify = result.calls[1]
    assert verify["args"] == ["verify", "--key", f"env://{SIGNING}", "--insecure-ignore-tlog=true", f"{ECR}@{digest}"]
    assert verify["docker_config"] == {"credHelpers": {ECR.split("/")[0]: "ecr-login"}}  # the instance role (R1)
    assert result.calls[2]["args"][result.calls[2]["args"].index("--image-id") + 1] == f"imageDigest={digest}"
    assert f"{ECR}@{digest}: signed with the key in {SIGNING}" in result.output
    assert f"{ECR}@{digest}: ECR's scan (COMPLETE) found nothing of CRITICAL or worse" in result.output
    # The exact manifest bytes reach Heroku's registry (no rebuild, no rewrite).
    assert result.registry[f"{TARGET}:latest"] == job.tags[f"{ECR}:{SHA}"]
    copy = next(c for c in result.skopeo if c["args"][0] == "copy")
    assert copy["args"][-2:] == [f"docker://{ECR}@{digest}", f"docker://{TARGET}"]
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
    # guards H10, H14: the docker-releases API variant, the image's config digest, unchanged by the checks
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
    ("env", "digest", "expected"),
    [
        # guards G4: a protected or environment-scoped variable absent from the job
        (
            {"HEROKU_API_KEY": "", "HEROKU_APP_NAME": "", "ECR_REPOSITORY_URL": "", SIGNING: ""},
            None,
            "missing CI/CD variable(s): HEROKU_API_KEY, HEROKU_APP_NAME, ECR_REPOSITORY_URL, " + SIGNING,
        ),
        # guards G11: no key, no release; never a release without the check
        ({SIGNING: ""}, None, f"missing CI/CD variable(s): {SIGNING}"),
        (
            {SIGNING: "awskms:///arn:aws:kms:eu-west-1:123456789012:key/x"},
            None,
            f"{SIGNING} must hold the signing key's PEM",
        ),
        (
            {"SHIPYARD_SCAN_THRESHOLD": "SEVERE"},
            None,
            "SHIPYARD_SCAN_THRESHOLD must be one of CRITICAL, HIGH, MEDIUM, LOW",
        ),
        ({"ECR_REPOSITORY_URL": "r.example/app"}, None, "ECR_REPOSITORY_URL must be <account>.dkr.ecr.<region>"),
        ({}, "", "--digest must be sha256:<64 hex> or $ECR_REPOSITORY_URL@sha256:<64 hex>, got ''"),  # no dotenv
        # guards H13: a rollback digest typed by hand
        ({}, "sha256:ABC", "--digest must be sha256:<64 hex>"),
        ({}, "latest", "it comes from the staging job's dotenv, or from SHIPYARD_ROLLBACK_DIGEST for a rollback"),
        ({}, f"{ECR}@sha256:{'ab' * 31}", "--digest must be sha256:<64 hex>"),
        # guards G11: a merge request's image (or any other repository's) is never released
        ({}, f"{REVIEW_ECR}@sha256:{'ab' * 32}", "names an image of another repository"),
    ],
)
def test_bad_input_names_every_problem_and_does_nothing(
    job: Job, heroku: FakeHeroku, env: dict[str, str], digest: str | None, expected: str
) -> None:
    job.env.update(env)  # GitLab gives an unreachable protected variable as empty
    result = job.run(*(["--digest", digest] if digest is not None else []))
    assert result.code == 2
    assert expected in result.output
    assert "Traceback" not in result.output
    assert result.calls == [] and heroku.requests == []


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


# --- G11: only a signed image whose findings pass reaches Heroku -----------------------------------


def assert_nothing_reached_heroku(result: Result, heroku: FakeHeroku) -> None:
    """A refused image: exit 1, no login to Heroku's registry, no copy, no API call."""
    assert result.code == 1, result.output
    assert not [c for c in result.skopeo if c["args"][0] in ("login", "copy")]
    assert f"{TARGET}:latest" not in result.registry
    assert heroku.requests == []
    assert result.dotenv == {}
    assert "Traceback" not in result.output


def test_an_unsigned_image_is_refused_naming_its_digest(job: Job, heroku: FakeHeroku) -> None:  # guards G11
    digest = digest_of(manifest())
    job.unsigned.add(digest)
    result = job.run()
    assert_nothing_reached_heroku(result, heroku)
    assert f"refusing {ECR}@{digest}: it has no signature (cosign exit 10: no signatures found)" in result.output
    assert "Only the default branch's build job signs release images (G11)" in result.output
    assert result.tools() == ["skopeo inspect", "cosign verify"]  # the signature before the findings


def test_an_image_signed_with_another_key_is_refused(job: Job, heroku: FakeHeroku) -> None:  # guards G11
    job.signing_key = OTHER_KEY  # e.g. a merge request's job signing with a key of its own
    result = job.run()
    assert_nothing_reached_heroku(result, heroku)
    assert (
        f"refusing {ECR}@{digest_of(manifest())}: no signature of it matches {SIGNING} (cosign exit 12: "
        "no matching signatures: invalid signature when validating ASN.1 encoded signature)" in result.output
    )


def test_a_signature_made_for_another_digest_is_refused(job: Job, heroku: FakeHeroku) -> None:  # guards G11
    other = "sha256:" + "ee" * 32  # a valid signature copied from another image's `.sig` tag
    job.claims[digest_of(manifest())] = other
    result = job.run()
    assert_nothing_reached_heroku(result, heroku)
    assert f"no matching signatures: invalid or missing digest in claim: {other}" in result.output


def test_a_critical_finding_refuses_the_image_at_the_default_threshold(
    job: Job, heroku: FakeHeroku
) -> None:  # guards G11
    digest = digest_of(manifest())
    job.scans[digest] = [scan(findings=(basic("CVE-2026-0001", "HIGH"), basic("CVE-2026-1234", "CRITICAL")))]
    result = job.run()
    assert_nothing_reached_heroku(result, heroku)
    assert (
        f"refusing {ECR}@{digest}: ECR's scan found 1 finding of CRITICAL or worse, the worst CVE-2026-1234 "
        "(CRITICAL). Fix them and build again; the threshold is SHIPYARD_SCAN_THRESHOLD" in result.output
    )


def test_a_high_finding_passes_the_default_threshold(job: Job, heroku: FakeHeroku) -> None:  # guards G11
    job.scans[digest_of(manifest())] = [scan(findings=(basic("CVE-2026-0001", "HIGH"),))]
    result = job.run()
    assert result.code == 0, result.output
    assert ("PATCH", f"/apps/{APP}/formation") in api_calls(heroku)


def test_a_high_finding_refuses_the_image_at_threshold_high(job: Job, heroku: FakeHeroku) -> None:  # guards G11
    findings = (basic("CVE-2026-0002", "MEDIUM"), basic("CVE-2026-0001", "HIGH"), basic("CVE-2026-0003", "HIGH"))
    job.scans[digest_of(manifest())] = [scan(findings=findings)]
    job.env["SHIPYARD_SCAN_THRESHOLD"] = "HIGH"
    result = job.run()
    assert_nothing_reached_heroku(result, heroku)
    assert "ECR's scan found 2 findings of HIGH or worse, the worst CVE-2026-0001 (HIGH)" in result.output


def test_the_severity_counts_refuse_an_image_whose_findings_are_not_listed(
    job: Job, heroku: FakeHeroku
) -> None:  # guards G11: the list may be paged or late, ECR's counts still say it
    answer = scan()
    answer["imageScanFindings"]["findingSeverityCounts"] = {"CRITICAL": 2, "LOW": 3}
    job.scans[digest_of(manifest())] = [answer]
    result = job.run()
    assert_nothing_reached_heroku(result, heroku)
    assert "ECR's scan found 2 findings of CRITICAL or worse. Fix them" in result.output


def test_enhanced_scanning_findings_are_checked_too(job: Job, heroku: FakeHeroku) -> None:  # guards G11
    # Amazon Inspector's continuous scanning answers ACTIVE, its findings in enhancedFindings.
    critical = (inspector("CVE-2026-4242", "CRITICAL"), inspector("CVE-2026-0007", "UNTRIAGED"))
    job.scans[digest_of(manifest())] = [scan("ACTIVE", enhanced=critical)]
    result = job.run()
    assert_nothing_reached_heroku(result, heroku)
    assert "ECR's scan found 1 finding of CRITICAL or worse, the worst CVE-2026-4242 (CRITICAL)" in result.output


def test_an_active_continuous_scan_without_blocking_findings_passes(job: Job, heroku: FakeHeroku) -> None:
    job.scans[digest_of(manifest())] = [scan("ACTIVE", enhanced=(inspector("CVE-2026-0007", "MEDIUM"),))]
    result = job.run()
    assert result.code == 0, result.output
    assert "ECR's scan (ACTIVE) found nothing of CRITICAL or worse" in result.output


def test_a_scan_in_progress_is_waited_for(job: Job, heroku: FakeHeroku) -> None:  # guards G11
    job.scans[digest_of(manifest())] = [scan("PENDING"), scan("IN_PROGRESS"), scan()]
    result = job.run()
    assert result.code == 0, result.output
    assert result.tools().count("aws describe-image-scan-findings") == 3
    assert f"ECR's scan of {digest_of(manifest())} is IN_PROGRESS: asking again" in result.output
    assert ("PATCH", f"/apps/{APP}/formation") in api_calls(heroku)


def test_a_scan_that_never_finishes_is_refused(job: Job, heroku: FakeHeroku) -> None:  # guards G11
    digest = digest_of(manifest())
    job.scans[digest] = [scan("IN_PROGRESS")]
    result = job.run("--scan-timeout", "0.2", "--scan-interval", "0.05")
    assert_nothing_reached_heroku(result, heroku)
    assert f"refusing {ECR}@{digest}: ECR's scan of it is still IN_PROGRESS after 0 s" in result.output
    assert result.tools().count("aws describe-image-scan-findings") >= 2


@pytest.mark.parametrize("status", ["FAILED", "UNSUPPORTED_IMAGE", "SCAN_ELIGIBILITY_EXPIRED"])
def test_a_scan_without_findings_refuses_the_image(job: Job, heroku: FakeHeroku, status: str) -> None:  # G11
    answer = scan(status)
    answer["imageScanStatus"]["description"] = "UnsupportedImageError: The operating system is not supported"
    job.scans[digest_of(manifest())] = [answer]
    result = job.run()
    assert_nothing_reached_heroku(result, heroku)
    assert f"ECR's scan of it is {status}: UnsupportedImageError" in result.output
    assert result.tools().count("aws describe-image-scan-findings") == 1  # not waited for


def test_an_image_ecr_never_scanned_is_refused(job: Job, heroku: FakeHeroku) -> None:  # guards G11, R21
    digest = digest_of(manifest())
    job.unscanned.add(digest)
    result = job.run()
    assert_nothing_reached_heroku(result, heroku)
    assert f"refusing {ECR}@{digest}: ECR has no scan of it (An error occurred (ScanNotFoundException)" in result.output
    assert "scan release images on push (R21)" in result.output


# --- H13: a rollback re-releases a digest kept in ECR, through the same checks ---------------------


@pytest.mark.parametrize("whole_reference", [False, True])
def test_a_rollback_releases_an_older_digest_after_the_same_checks(
    job: Job, heroku: FakeHeroku, whole_reference: bool
) -> None:  # guards H13, G11
    older = manifest(config="sha256:" + "0d" * 32)
    job.tags[f"{ECR}:{'0' * 40}-1234"] = older  # an earlier release image, still in ECR
    rollback = digest_of(older)
    result = job.run("--digest", f"{ECR}@{rollback}" if whole_reference else rollback)
    assert result.code == 0, result.output
    assert result.tools()[:3] == ["skopeo inspect", "cosign verify", "aws describe-image-scan-findings"]
    assert result.calls[1]["args"][-1] == f"{ECR}@{rollback}"
    assert f"imageDigest={rollback}" in result.calls[2]["args"]
    copy = next(c for c in result.skopeo if c["args"][0] == "copy")
    assert copy["args"][-2] == f"docker://{ECR}@{rollback}"
    assert result.registry[f"{TARGET}:latest"] == older
    patch = next(r for r in heroku.requests if r.method == "PATCH")
    assert patch.body == {"updates": [{"type": "web", "docker_image": "sha256:" + "0d" * 32}]}  # H14
    assert result.dotenv["SHIPYARD_IMAGE_DIGEST"] == rollback


def test_a_rollback_to_an_image_that_fails_the_checks_is_refused(job: Job, heroku: FakeHeroku) -> None:  # H13
    older = manifest(config="sha256:" + "0d" * 32)
    job.tags[f"{ECR}:{'0' * 40}-1234"] = older
    job.scans[digest_of(older)] = [scan(findings=(basic("CVE-2026-9999", "CRITICAL"),))]  # found since
    result = job.run("--digest", digest_of(older))
    assert_nothing_reached_heroku(result, heroku)
    assert "the worst CVE-2026-9999 (CRITICAL)" in result.output


# --- the stubs answer as cosign and ECR do ---------------------------------------------------------


def stub(job: Job, tool: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(STUBS / tool), *args], env={**job.env, **env}, capture_output=True, text=True)


def test_the_cosign_stub_answers_as_cosign_does(job: Job) -> None:  # guards G11
    folder = Path(job.env["STUB_REGISTRY"])
    folder.mkdir()
    raw = manifest()
    digest = digest_of(raw)
    stored(folder, f"{ECR}@{digest}").write_text(raw)
    with mock.patch.dict(os.environ, {"STUB_REGISTRY": str(folder)}):
        COSIGN_STUB.sign(ECR, digest, SIGNING_KEY)
    assert (folder / f"{ECR}:sha256-{digest.split(':')[1]}.sig".replace("/", "%")).is_file()
    config = job.tmp / "docker"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"credHelpers": {ECR.split("/")[0]: "ecr-login"}}))
    verify = ["verify", "--key", f"env://{SIGNING}", "--insecure-ignore-tlog=true", f"{ECR}@{digest}"]
    exits = COSIGN["verify"]["exit_codes"]

    verified = stub(job, "cosign", *verify, DOCKER_CONFIG=str(config))
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)[0]["critical"]["image"]["docker-manifest-digest"] == digest
    assert verified.stderr.startswith("WARNING: Skipping tlog verification is an insecure practice")
    # The transparency log is consulted unless skipped, and a --tlog-upload=false signature is not in it.
    in_tlog = stub(job, "cosign", *[a for a in verify if "tlog" not in a], DOCKER_CONFIG=str(config))
    assert in_tlog.returncode == exits["no_matching_signature"]
    assert "Error: no matching signatures: signature not found in transparency log" in in_tlog.stderr
    # No credentials for ECR: the registry refuses.
    anonymous = stub(job, "cosign", *verify)
    assert anonymous.returncode == exits["other"] and "UNAUTHORIZED" in anonymous.stderr
    unset = stub(job, "cosign", *verify, DOCKER_CONFIG=str(config), SHIPYARD_SIGNING_PUBLIC_KEY="x")
    assert "Error: loading public key: pem to public key: PEM decoding failed" in unset.stderr
    unsigned = stub(job, "cosign", *verify[:-1], f"{ECR}@sha256:{'ab' * 32}", DOCKER_CONFIG=str(config))
    assert unsigned.returncode == exits["no_signature"]
    assert "error during command execution: no signatures found" in unsigned.stderr


def test_the_aws_stub_answers_as_ecr_and_the_cli_do(job: Job) -> None:  # guards G11
    folder = Path(job.env["STUB_REGISTRY"])
    folder.mkdir()
    raw = manifest()
    digest = digest_of(raw)
    stored(folder, f"{ECR}@{digest}").write_text(raw)
    codes = SCANS["return_codes"]

    def describe(name: str = "acme/storefront", image: str = digest, region: str = "eu-west-1", *extra: str) -> Any:
        args = ["ecr", "describe-image-scan-findings", "--registry-id", "123456789012", "--repository-name", name]
        args += ["--image-id", f"imageDigest={image}", "--region", region, "--output", "json", *extra]
        return stub(job, "aws", *args)

    missing = describe("acme/storefrnt")
    assert missing.returncode == codes["service"]
    assert missing.stderr == (
        "\nAn error occurred (RepositoryNotFoundException) when calling the DescribeImageScanFindings operation: "
        "The repository with name 'acme/storefrnt' does not exist in the registry with id '123456789012'\n"
    )
    assert "RepositoryNotFoundException" in describe(region="eu-central-1").stderr  # ECR is regional
    other = "sha256:" + "ab" * 32
    assert (
        f"(ImageNotFoundException) when calling the DescribeImageScanFindings operation: The image with imageId "
        f"{{imageDigest:'{other}', imageTag:'null'}} does not exist" in describe(image=other).stderr
    )
    assert "(ScanNotFoundException)" in describe().stderr
    assert describe("acme/storefront", digest, "eu-west-1", "--max-items", "5").returncode == codes["parameter"]
    # The stub reads the facts as JSON ($STUB_FACTS) and finds a region's partition as infra.facts does.
    assert json.loads(Path(job.env["STUB_FACTS"]).read_text()) == STUB_STATE.from_facts()
    for region in ("eu-west-1", "cn-north-1", "us-gov-west-1", "us-isob-east-1", "eusc-de-east-1", "xx-nowhere-1"):
        assert STUB_STATE.aws_partition(region) == facts.aws_partition(region), region

    scans = stored(folder, f"{ECR}/scans@{digest}")
    scans.write_text(json.dumps([scan("IN_PROGRESS"), scan(findings=(basic("CVE-2026-0001", "HIGH"),))]))
    first, second, third = describe(), describe(), describe()
    assert json.loads(first.stdout)["imageScanStatus"] == {"status": "IN_PROGRESS"}
    answer = json.loads(second.stdout)
    assert answer["imageScanStatus"] == {"status": "COMPLETE", "description": "The scan was completed successfully."}
    assert (answer["registryId"], answer["repositoryName"]) == ("123456789012", "acme/storefront")
    assert answer["imageId"] == {"imageDigest": digest}
    assert set(answer) <= set(SCANS["response_members"])
    assert json.loads(third.stdout) == answer  # the scan stays as it ended
    scans.write_text(json.dumps([scan(findings=(basic("CVE-2026-0001", "SEVERE"),))]))
    assert describe().returncode == 99  # the stub refuses to answer what ECR never answers


# --- review apps ------------------------------------------------------------------------------------

REVIEW_APP = "acme-shop-mr-7"
DEPLOY_KEY = "HRKU-deployKeyNeverForReviews0"


def review_job(job: Job, **env: str) -> Job:
    """The review job of merge request 7: the review/* variables, the merge request's image, and a
    deploy key that the fake API refuses (only HEROKU_REVIEW_API_KEY may be used)."""
    job.env.update(
        {
            "HEROKU_API_KEY": DEPLOY_KEY,
            "HEROKU_REVIEW_API_KEY": KEY,
            "SHIPYARD_REVIEW_APP_PREFIX": "acme-shop",
            "SHIPYARD_REVIEW_REGION": "eu",
            "SHIPYARD_REVIEW_MAX_APPS": "2",
            "SHIPYARD_REVIEW_CONFIG_VARS": json.dumps({"APP_ENV": "review"}),
            "SHIPYARD_REVIEW_DYNO_SIZE": "basic",
            "SHIPYARD_REVIEW_PIPELINE": PIPELINE,
            "ECR_REVIEW_REPOSITORY_URL": REVIEW_ECR,
            "CI_MERGE_REQUEST_IID": "7",
            **env,
        }
    )
    job.tags = {f"{REVIEW_ECR}:mr-7-{SHA}": manifest()}
    return job


@pytest.mark.parametrize("team", ["", "acme-review"])
def test_a_review_app_is_created_configured_and_released_with_the_review_key(
    job: Job, heroku: FakeHeroku, team: str
) -> None:
    heroku.apps = {"acme-shop-mr-3": {}, "acme-storefront-staging": {}}
    result = review_job(job, SHIPYARD_REVIEW_TEAM=team).run("--ensure-review-app")
    assert result.code == 0, result.output
    created = {"name": REVIEW_APP, "region": "eu", "stack": "container"} | ({"team": team} if team else {})
    assert api_calls(heroku)[:4] == [
        ("GET", f"/apps/{REVIEW_APP}"),
        ("GET", f"/teams/{team}/apps" if team else "/apps"),
        ("POST", "/teams/apps" if team else "/apps"),
        ("PATCH", f"/apps/{REVIEW_APP}/config-vars"),
    ]
    assert heroku.apps[REVIEW_APP] == {"created": created, "config_vars": {"APP_ENV": "review"}}
    # The merge request's image, through the same copy and release as staging's; merge-request images
    # are never signed (G11), so neither cosign nor the scan is asked.
    assert result.registry[f"registry.heroku.com/{REVIEW_APP}/web:latest"] == manifest()
    assert [c["tool"] for c in result.calls if c["tool"] != "skopeo"] == []
    release, scale = (r.body for r in heroku.requests if r.path == f"/apps/{REVIEW_APP}/formation")
    assert release == {"updates": [{"type": "web", "docker_image": CONFIG_DIGEST}]}
    # Then one web dyno of shipyard:review.dynoSize, only after the release: before it the app has no
    # process type to scale (guards H6; the fake answers 404 then, as the facts describe). The app joins the
    # build stack's pipeline.
    assert scale == {"updates": [{"type": "web", "quantity": 1, "size": "basic"}]}
    assert heroku.formation[REVIEW_APP] == {"web": {"quantity": 1, "size": "basic"}}
    assert heroku.couplings[REVIEW_APP]["pipeline"] == {"id": PIPELINE}
    assert heroku.couplings[REVIEW_APP]["stage"] == "review"
    assert ("GET", f"/apps/{REVIEW_APP}/pipeline-couplings") not in api_calls(heroku)  # a new app is in none
    assert result.dotenv["SHIPYARD_REVIEW_URL"] == f"https://{REVIEW_APP}-0a1b2c3d4e5f.herokuapp.com/"
    assert result.dotenv["SHIPYARD_REVIEW_APP"] == REVIEW_APP
    assert all(r.headers["Authorization"] == f"Bearer {KEY}" for r in heroku.requests if "/streams/" not in r.path)
    login = next(c for c in result.skopeo if c["args"][0] == "login")
    assert login["stdin"] == KEY and KEY not in result.output


OTHER_PIPELINE = "0f4c1a9e-1d2b-4c3d-9e8f-7a6b5c4d3e2f"


@pytest.mark.parametrize(
    ("coupling", "posts", "note"),
    [
        (PIPELINE, [], ""),  # in the build stack's pipeline already
        (None, ["/pipeline-couplings"], ""),  # in none yet (an earlier coupling refused): joins it now
        (OTHER_PIPELINE, [], f"is in another Heroku pipeline ({OTHER_PIPELINE}), left there"),
        ("unreadable", [], "its pipeline coupling could not be read"),
    ],
    ids=["coupled", "in no pipeline", "in another pipeline", "coupling unreadable"],
)
def test_an_existing_review_app_is_reused_even_at_the_cap(
    job: Job, heroku: FakeHeroku, coupling: str | None, posts: list[str], note: str
) -> None:
    heroku.apps = {REVIEW_APP: {}, "acme-shop-mr-3": {}}
    if coupling == "unreadable":
        heroku.forced["app_pipeline_coupling"] = (500, {"id": "internal_server_error", "message": "Oops."})
    elif coupling is not None:
        heroku.couplings[REVIEW_APP] = {"app": {"name": REVIEW_APP}, "pipeline": {"id": coupling}, "stage": "review"}
    result = review_job(job, SHIPYARD_REVIEW_MAX_APPS="2").run("--ensure-review-app")
    assert result.code == 0, result.output
    assert "reusing review app acme-shop-mr-7" in result.output
    # No app is created; the coupling is read, and made only where the app is in no pipeline.
    assert [path for method, path in api_calls(heroku) if method == "POST"] == posts
    assert ("GET", f"/apps/{REVIEW_APP}/pipeline-couplings") in api_calls(heroku)
    assert note in result.output and ("note:" in result.output) == bool(note)
    if coupling is None:
        assert heroku.couplings[REVIEW_APP]["pipeline"] == {"id": PIPELINE}


def test_a_refused_pipeline_coupling_is_reported_and_the_review_app_still_released(
    job: Job, heroku: FakeHeroku
) -> None:
    # The review key's member may create apps but not reach the pipeline: Heroku refuses the coupling.
    heroku.apps, heroku.pipelines = {}, set()
    result = review_job(job).run("--ensure-review-app")
    assert result.code == 0, result.output
    assert ("POST", "/pipeline-couplings") in api_calls(heroku) and REVIEW_APP not in heroku.couplings
    assert f"review app {REVIEW_APP} is not in the Heroku pipeline {PIPELINE}: Heroku refused" in result.output
    assert REVIEW_APP in heroku.apps and heroku.formation[REVIEW_APP]["web"]["quantity"] == 1


def test_without_a_dyno_size_and_a_pipeline_the_review_app_runs_as_heroku_starts_it(
    job: Job, heroku: FakeHeroku
) -> None:
    # A build stack deployed before shipyard provisioned them: the release alone, nothing guessed.
    heroku.apps = {}
    result = review_job(job, SHIPYARD_REVIEW_DYNO_SIZE="", SHIPYARD_REVIEW_PIPELINE="").run("--ensure-review-app")
    assert result.code == 0, result.output
    patches = [r.body for r in heroku.requests if r.path == f"/apps/{REVIEW_APP}/formation"]
    assert patches == [{"updates": [{"type": "web", "docker_image": CONFIG_DIGEST}]}]
    assert not [path for _, path in api_calls(heroku) if "pipeline-couplings" in path]
    assert heroku.couplings == {} and REVIEW_APP in heroku.apps


def test_a_dyno_size_heroku_refuses_undoes_the_review_app_it_created(job: Job, heroku: FakeHeroku) -> None:
    heroku.apps = {}
    result = review_job(job, SHIPYARD_REVIEW_DYNO_SIZE="standard-3x").run("--ensure-review-app")
    assert result.code == 1
    assert "failed (422): Invalid dyno size." in result.output
    assert REVIEW_APP not in heroku.apps and "deleted it again" in result.output


def test_one_review_app_more_than_the_cap_is_refused_naming_the_cap(job: Job, heroku: FakeHeroku) -> None:
    heroku.apps = {"acme-shop-mr-3": {}, "acme-shop-mr-4": {}, "acme-shop-web": {}, "other-mr-5": {}}
    result = review_job(job).run("--ensure-review-app")
    assert result.code == 1
    assert "2 review apps exist (acme-shop-mr-3, acme-shop-mr-4) and the cap is 2" in result.output
    assert "SHIPYARD_REVIEW_MAX_APPS" in result.output
    assert REVIEW_APP not in heroku.apps and result.skopeo == []


def test_a_review_app_name_another_account_took_is_a_clear_failure(job: Job, heroku: FakeHeroku) -> None:
    heroku.taken = {REVIEW_APP}
    result = review_job(job).run("--ensure-review-app")
    assert result.code == 1
    assert f"review app name {REVIEW_APP} is taken by another Heroku account" in result.output
    assert "shipyard:review.appPrefix" in result.output and result.skopeo == []


@pytest.mark.parametrize("refuse_delete", [False, True])
def test_a_review_app_created_but_not_released_is_deleted_or_its_delete_command_printed(
    job: Job, heroku: FakeHeroku, refuse_delete: bool
) -> None:
    heroku.apps, heroku.outcome, heroku.refuse_delete = {}, "failed", refuse_delete
    result = review_job(job).run("--ensure-review-app")
    assert result.code == 1
    assert "rake aborted!" in result.output  # the release phase's output
    assert ("DELETE", f"/apps/{REVIEW_APP}") in api_calls(heroku)
    if refuse_delete:
        assert f"`heroku apps:destroy --app {REVIEW_APP} --confirm {REVIEW_APP}`" in result.output
    else:
        assert REVIEW_APP not in heroku.apps and "deleted it again" in result.output


def test_a_review_app_that_existed_before_is_kept_when_its_release_fails(job: Job, heroku: FakeHeroku) -> None:
    # Only what this job created is undone: an earlier pipeline's app of the same merge request stays.
    heroku.apps, heroku.outcome = {REVIEW_APP: {}}, "failed"
    result = review_job(job).run("--ensure-review-app")
    assert result.code == 1
    assert ("DELETE", f"/apps/{REVIEW_APP}") not in api_calls(heroku)
    assert REVIEW_APP in heroku.apps and "deleted it again" not in result.output


def test_a_review_key_the_api_refuses_is_named_as_the_review_key(job: Job, heroku: FakeHeroku) -> None:  # guards H9
    heroku.key = "HRKU-anotherKeyThanTheReviewOne00"
    result = review_job(job).run("--ensure-review-app")
    assert result.code == 1
    assert "Heroku refused HEROKU_REVIEW_API_KEY (401)" in result.output
    assert KEY not in result.output and "HEROKU_API_KEY (401)" not in result.output.replace("REVIEW_API_KEY", "")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SHIPYARD_REVIEW_MAX_APPS": "0"}, "SHIPYARD_REVIEW_MAX_APPS must be a whole number from 1, got '0'"),
        ({"SHIPYARD_REVIEW_MAX_APPS": "two"}, "SHIPYARD_REVIEW_MAX_APPS must be a whole number from 1, got 'two'"),
        ({"SHIPYARD_REVIEW_CONFIG_VARS": "[1]"}, "SHIPYARD_REVIEW_CONFIG_VARS must be a JSON object of strings"),
        ({"SHIPYARD_REVIEW_CONFIG_VARS": '{"A": 1}'}, "SHIPYARD_REVIEW_CONFIG_VARS must be a JSON object of strings"),
        ({"SHIPYARD_REVIEW_CONFIG_VARS": "x"}, "SHIPYARD_REVIEW_CONFIG_VARS must be a JSON object of strings"),
        ({"ECR_REVIEW_REPOSITORY_URL": "r.example/app"}, "ECR_REVIEW_REPOSITORY_URL must be <account>.dkr.ecr."),
        ({"CI_MERGE_REQUEST_IID": "7a"}, "CI_MERGE_REQUEST_IID must be a merge request's IID, got '7a'"),
        ({"SHIPYARD_REVIEW_DYNO_SIZE": "basic 1"}, "SHIPYARD_REVIEW_DYNO_SIZE must be a Heroku dyno size"),
        ({"SHIPYARD_REVIEW_PIPELINE": "my-pipeline"}, "SHIPYARD_REVIEW_PIPELINE must be a Heroku pipeline id"),
        (
            {"SHIPYARD_REVIEW_APP_PREFIX": "a" * 20, "CI_MERGE_REQUEST_IID": "9999999"},
            "SHIPYARD_REVIEW_APP_PREFIX or CI_MERGE_REQUEST_IID: ",
        ),
    ],
)
def test_review_bad_input_names_the_problem_and_does_nothing(
    job: Job, heroku: FakeHeroku, env: dict[str, str], expected: str
) -> None:
    result = review_job(job, **env).run("--ensure-review-app")
    assert result.code == 2
    assert expected in result.output and "Traceback" not in result.output
    assert heroku.requests == [] and result.calls == []


def test_every_review_input_problem_is_named_at_once(job: Job, heroku: FakeHeroku) -> None:
    broken = {"CI_MERGE_REQUEST_IID": "7a", "SHIPYARD_REVIEW_MAX_APPS": "0", "SHIPYARD_REVIEW_CONFIG_VARS": "x"}
    result = review_job(job, **broken).run("--ensure-review-app")
    assert result.code == 2
    for problem in ("CI_MERGE_REQUEST_IID must be", "SHIPYARD_REVIEW_MAX_APPS must be", "SHIPYARD_REVIEW_CONFIG_VARS"):
        assert problem in result.output
    assert heroku.requests == []


def test_a_release_script_without_the_naming_module_beside_it_is_bad_input(
    job: Job, heroku: FakeHeroku, tmp_path: Path
) -> None:
    alone = tmp_path / "alone" / "heroku_release.py"
    alone.parent.mkdir()
    alone.write_text(SCRIPT.read_text())
    result = review_job(job).run("--ensure-review-app", script=alone)
    assert result.code == 2
    assert "review_apps.py is missing: the review jobs write it beside this script" in result.output
    assert "Traceback" not in result.output and heroku.requests == []


@pytest.mark.parametrize("exists", [True, False])
def test_the_stop_job_deletes_the_review_app_and_a_missing_one_is_success(
    job: Job, heroku: FakeHeroku, exists: bool
) -> None:
    heroku.apps = {REVIEW_APP: {}} if exists else {}
    result = review_job(job).run("--delete-review-app")
    assert result.code == 0, result.output
    assert api_calls(heroku) == [("DELETE", f"/apps/{REVIEW_APP}")]
    assert heroku.apps == {} and result.skopeo == []
    assert ("deleted review app" if exists else "does not exist: nothing to delete") in result.output


@pytest.mark.parametrize("mode", ["--ensure-review-app", "--delete-review-app"])
def test_review_jobs_list_every_missing_variable_at_once(job: Job, heroku: FakeHeroku, mode: str) -> None:
    missing = {"HEROKU_REVIEW_API_KEY": "", "SHIPYARD_REVIEW_REGION": "", "CI_MERGE_REQUEST_IID": ""}
    result = review_job(job, **missing).run(mode)
    assert result.code == 2
    listed = ", ".join(k for k in missing if mode == "--ensure-review-app" or k != "SHIPYARD_REVIEW_REGION")
    assert f"missing CI/CD variable(s): {listed}." in result.output  # HEROKU_API_KEY stands in for nothing
    assert heroku.requests == [] and result.calls == []


@pytest.mark.parametrize("mode", ["--ensure-review-app", "--delete-review-app"])
def test_review_jobs_do_nothing_without_review_apps(job: Job, heroku: FakeHeroku, mode: str) -> None:
    result = review_job(job, SHIPYARD_REVIEW_APP_PREFIX="").run(mode)
    assert result.code == 0 and "no shipyard:review" in result.output
    assert heroku.requests == [] and result.calls == []
