"""Both GitLab CI files: valid against GitLab's CI schema, and the rules that matter — which jobs
each kind of pipeline runs, what credentials they get, how deploys are serialised — checked by
evaluating the files' own rules for realistic pipeline variables."""

from __future__ import annotations

import fnmatch
import importlib.metadata
import importlib.util
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra.cli.engine import Run
from infra.components.registry import lifecycle_policy
from tests.ci.gitlab import jobs, load, pipeline, script_lines
from tests.conftest import ROOT

OWN = ROOT / ".gitlab-ci.yml"
TEMPLATE = ROOT / "ci" / "delivery.gitlab-ci.yml"
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")

MERGE_REQUEST = {
    "CI_PIPELINE_SOURCE": "merge_request_event",
    "CI_MERGE_REQUEST_IID": "7",
    "CI_DEFAULT_BRANCH": "main",
    "CI_OPEN_MERGE_REQUESTS": "acme/shipyard!7",
}
DEFAULT_BRANCH = {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "main", "CI_DEFAULT_BRANCH": "main"}
FEATURE_BRANCH = {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "add-worker", "CI_DEFAULT_BRANCH": "main"}
SCHEDULE = {"CI_PIPELINE_SOURCE": "schedule", "CI_COMMIT_BRANCH": "main", "CI_DEFAULT_BRANCH": "main"}
PREVIEW_CREDENTIALS = {"PREVIEW_AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/shipyard-preview"}


def check_schema(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(CHECK_JSONSCHEMA),
            "--builtin-schema",
            "vendor.gitlab-ci",
            "--data-transform",
            "gitlab-ci",
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
    )


def test_both_ci_files_pass_gitlabs_ci_schema() -> None:
    result = check_schema(OWN, TEMPLATE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_catches_a_broken_ci_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(OWN.read_text().replace("resource_group: pulumi-prod", "resource_grup: pulumi-prod"))
    assert check_schema(broken).returncode != 0


# --- this repository's pipeline ------------------------------------------------------------------


@pytest.fixture(scope="module")
def own() -> dict[str, Any]:
    return load(OWN)


def stacks_touched(own: dict[str, Any], name: str) -> set[str]:
    """The stacks a job runs the Pulumi CLI on, with `$STACK` expanded from its variables or matrix."""
    job = jobs(own)[name]
    values = [job.get("variables", {}).get("STACK")] if "STACK" in job.get("variables", {}) else []
    for entry in job.get("parallel", {}).get("matrix", []):
        values += entry.get("STACK", [])
    found: set[str] = set()
    for line in script_lines(own, job):
        for command in re.findall(r"pulumi (?:preview|up|refresh|destroy)[^\n]*", line):
            stack = re.search(r"--stack \"?([$\w]+)", command)
            assert stack, command  # every Pulumi command names its stack
            found |= set(values) if stack.group(1) == "$STACK" else {stack.group(1)}
    return found


def credentials(own: dict[str, Any], name: str) -> set[str]:
    """The CI/CD variables a job's credentials come from."""
    text = repr(jobs(own)[name].get("variables", {})) + repr(script_lines(own, jobs(own)[name]))
    return set(re.findall(r"\$((?:PREVIEW|DRIFT|DEPLOY)_\w+)", text))


def test_merge_requests_preview_staging_for_real_and_diff_production_offline(own: dict[str, Any]) -> None:
    assert pipeline(own, MERGE_REQUEST | PREVIEW_CREDENTIALS) == {
        "lint": "on_success",
        "test": "on_success",
        "plan": "on_success",
        "preview": "on_success",
        "offline-diff-prod": "on_success",
    }
    assert stacks_touched(own, "preview") == {"staging"}
    script = "\n".join(script_lines(own, jobs(own)["preview"]))
    # The whole document (--show-sames) for the note and the policy check, under the policy pack.
    assert re.search(r"pulumi preview --stack \"\$STACK\" .*--json --show-sames --policy-pack policy", script)
    assert "shipyard mr-note --stack" in script and 'exit "$status"' in script  # posted, then failed
    assert stacks_touched(own, "offline-diff-prod") == set()
    assert jobs(own)["offline-diff-prod"]["variables"]["STACK"] == "prod"


def test_merge_requests_without_preview_credentials_get_the_offline_plan_diff(own: dict[str, Any]) -> None:
    for variables in (MERGE_REQUEST, MERGE_REQUEST | {"PREVIEW_AWS_ROLE_ARN": ""}):  # a fork; an emptied variable
        planned = pipeline(own, variables)
        assert "offline-diff" in planned and "preview" not in planned and "offline-diff-prod" not in planned
    assert jobs(own)["offline-diff"]["parallel"]["matrix"] == [{"STACK": ["staging", "prod"]}]
    script = "\n".join(script_lines(own, jobs(own)["offline-diff"]))
    assert "shipyard plan diff" in script and "--base" in script
    assert stacks_touched(own, "offline-diff") == set()  # no Pulumi CLI, no credential


def test_no_merge_request_job_can_reach_protected_credentials_or_production(own: dict[str, Any]) -> None:
    # guards P1: a preview runs the merge request's code with the stack's secrets and the job's credentials
    for variables in (MERGE_REQUEST, MERGE_REQUEST | PREVIEW_CREDENTIALS):
        for name in pipeline(own, variables):
            assert {c for c in credentials(own, name) if not c.startswith("PREVIEW_")} == set(), name
            assert "prod" not in stacks_touched(own, name), name
            assert "pulumi up" not in repr(script_lines(own, jobs(own)[name])), name
    assert credentials(own, "preview") == {"PREVIEW_AWS_ROLE_ARN", "PREVIEW_HEROKU_API_KEY", "PREVIEW_GITLAB_TOKEN"}


def test_the_default_branch_deploys_staging_then_production_by_hand(own: dict[str, Any]) -> None:
    assert pipeline(own, DEFAULT_BRANCH) == {
        "lint": "on_success",
        "test": "on_success",
        "plan": "on_success",
        "deploy-staging": "on_success",
        "preview-prod": "on_success",
        "deploy-prod": "manual",
    }
    assert jobs(own)["deploy-prod"]["needs"] == ["preview-prod"]
    assert jobs(own)["preview-prod"]["needs"] == ["deploy-staging"]
    for name, stack in (("deploy-staging", "staging"), ("deploy-prod", "prod")):
        assert stacks_touched(own, name) == {stack}
        assert credentials(own, name) == {"DEPLOY_AWS_ROLE_ARN", "DEPLOY_HEROKU_API_KEY", "DEPLOY_GITLAB_TOKEN"}
        up, verify = jobs(own)[name]["script"]
        assert up.startswith("pulumi up --yes") and up.endswith("--policy-pack policy")
        # Each deploy is checked against the live resources right after it, waiting out a host refresh.
        assert verify.startswith(f".venv/bin/shipyard verify --stack {stack} --wait")
    assert stacks_touched(own, "preview-prod") == {"prod"}
    assert credentials(own, "preview-prod") == {"DRIFT_AWS_ROLE_ARN", "DRIFT_HEROKU_API_KEY", "PREVIEW_GITLAB_TOKEN"}


def test_every_job_that_changes_or_refreshes_a_stack_is_serialised_per_stack(own: dict[str, Any]) -> None:
    # guards P6: no state lock on preview, no wait-for-lock on up
    for name in ("deploy-staging", "deploy-prod", "preview-prod", "drift"):
        touched = stacks_touched(own, name)
        group = f"pulumi-{touched.pop()}" if len(touched) == 1 else "pulumi-$STACK"  # one group per matrix stack
        assert jobs(own)[name]["resource_group"] == group, name


def test_feature_branches_are_checked_and_never_deployed(own: dict[str, Any]) -> None:
    assert pipeline(own, FEATURE_BRANCH) == {"lint": "on_success", "test": "on_success", "plan": "on_success"}
    # A branch with an open merge request runs the merge-request pipeline only, not a second one.
    assert pipeline(own, FEATURE_BRANCH | {"CI_OPEN_MERGE_REQUESTS": "acme/shipyard!7"}) == {}


def test_the_schedule_checks_drift_of_both_stacks_and_nothing_else(own: dict[str, Any]) -> None:
    assert pipeline(own, SCHEDULE | PREVIEW_CREDENTIALS) == {"drift": "on_success"}
    assert stacks_touched(own, "drift") == {"staging", "prod"}
    [command] = jobs(own)["drift"]["script"]
    assert "--refresh --expect-no-changes" in command and "--policy-pack policy" in command
    # Refreshing reads Heroku config vars: a read-protected key, protected from merge requests.
    assert credentials(own, "drift") == {"DRIFT_AWS_ROLE_ARN", "DRIFT_HEROKU_API_KEY", "PREVIEW_GITLAB_TOKEN"}


def test_the_pulumi_image_is_pinned_to_the_locked_sdk_release(own: dict[str, Any]) -> None:
    assert own["default"]["image"] == f"pulumi/pulumi-python:{importlib.metadata.version('pulumi')}"


# --- the application's delivery template ---------------------------------------------------------


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load(TEMPLATE)


@pytest.fixture
def plans(committed_runs: dict[str, Run]) -> dict[str, Run]:
    return committed_runs


def test_the_template_builds_once_per_commit_and_deploys_only_the_default_branch(template: dict[str, Any]) -> None:
    assert [name for name, job in jobs(template).items() if job["stage"] == "build"] == ["shipyard-build"]
    assert pipeline(template, MERGE_REQUEST) == {"shipyard-build": "on_success"}
    assert pipeline(template, DEFAULT_BRANCH) == {
        "shipyard-build": "on_success",
        "shipyard-staging": "on_success",
        "shipyard-production": "manual",
    }
    assert pipeline(template, FEATURE_BRANCH) == {}
    # One pipeline per push: no branch pipeline next to the merge-request pipeline.
    assert pipeline(template, FEATURE_BRANCH | {"CI_OPEN_MERGE_REQUESTS": "acme/storefront!3"}) == {}


def test_the_build_pushes_a_single_docker_v2_manifest_with_a_registry_cache(template: dict[str, Any]) -> None:
    build = jobs(template)["shipyard-build"]
    command = next(line for line in script_lines(template, build) if line.startswith("docker buildx build"))
    # guards H10: Heroku's registry takes one amd64 Docker v2 schema 2 manifest, no attestations
    for flag in ("--platform linux/amd64", "--provenance=false", "--sbom=false", "push=true,oci-mediatypes=false"):
        assert flag in command
    assert "name=$image," in command
    assert command.startswith('docker buildx build "$@"')  # the cache arguments, below
    script = "\n".join(script_lines(template, build))
    assert script.index("buildx imagetools inspect") < script.index("docker buildx build")  # no second build


SHA = "0f3c2a9be41d7c6a5b8e9f00112233445566778a"


def pushed_tag(template: dict[str, Any], variables: dict[str, str]) -> str:
    """The tag the build job pushes, from its own script run with these pipeline variables."""
    build = jobs(template)["shipyard-build"]
    script = next(line for line in script_lines(template, build) if "image=" in line)
    env = {"PATH": "/usr/bin:/bin", "ECR_REPOSITORY_URL": "r.example/app", "CI_COMMIT_SHA": SHA}
    run = subprocess.run(
        ["sh", "-euc", script + '\nprintf "%s" "$image"'],
        env=env | variables,
        capture_output=True,
        text=True,
        check=True,
    )
    repository, tag = run.stdout.rsplit(":", 1)
    assert repository == "r.example/app"
    return tag


def test_merge_requests_push_review_tags_and_only_the_default_branch_pushes_the_commit_sha(
    template: dict[str, Any],
) -> None:  # guards G11: with immutable tags the first writer of the SHA tag decides what is released
    assert pushed_tag(template, MERGE_REQUEST) == f"mr-7-{SHA}"
    assert pushed_tag(template, DEFAULT_BRANCH) == SHA
    assert pushed_tag(template, SCHEDULE) == SHA  # a schedule on the default branch builds its commit
    # The build runs in no other pipeline, so no other tag is ever pushed.
    for variables in (FEATURE_BRANCH, FEATURE_BRANCH | {"CI_OPEN_MERGE_REQUESTS": "acme/storefront!3"}):
        assert "shipyard-build" not in pipeline(template, variables)


def test_the_registry_lifecycle_tells_the_two_kinds_of_image_apart(template: dict[str, Any]) -> None:
    # The tags the template pushes, against the lifecycle rules the registry is given: a review tag
    # is aged out by the merge-request rule and matches no release rule; the SHA tag is a release image.
    rules = json.loads(lifecycle_policy(keep_images=30, review_image_days=7, cache_tag="buildcache"))["rules"]

    def selecting(tag: str) -> list[str]:
        found = []
        for rule in rules:
            selection = rule["selection"]
            if any(tag.startswith(p) for p in selection.get("tagPrefixList", [])) or any(
                fnmatch.fnmatchcase(tag, p) for p in selection.get("tagPatternList", [])
            ):
                found.append(rule["description"])
        return found

    [review] = selecting(pushed_tag(template, MERGE_REQUEST))
    assert review.startswith("Expire merge-request images")
    [release] = selecting(pushed_tag(template, DEFAULT_BRANCH))
    assert release.startswith("Keep the newest 30 release images")


class Copied(Exception):
    """Raised in place of the copy: the release script's source reference, nothing done."""


def released_source(template: dict[str, Any], job: str, monkeypatch: pytest.MonkeyPatch, digest: str = "") -> str:
    """The image reference a deploy job's own command line makes the release script copy."""
    spec = importlib.util.spec_from_file_location("heroku_release_under_test", ROOT / "ci" / "heroku_release.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    def copy_image(source: str, target: str, api_key: str) -> tuple[str, str]:
        raise Copied(source)

    monkeypatch.setattr(script, "copy_image", copy_image)
    env = {
        "CI_COMMIT_SHA": SHA,
        "ECR_REPOSITORY_URL": "r.example/app",
        "HEROKU_API_KEY": "HRKU-pipelineTestKey0123456789",
        "HEROKU_APP_NAME": "acme-web",
        "HEROKU_REGISTRY_IMAGE": "registry.heroku.com/acme-web/web",
        "SHIPYARD_IMAGE_DIGEST": digest,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    [command] = jobs(template)[job]["script"]
    argv = shlex.split(command.replace("$SHIPYARD_IMAGE_DIGEST", digest))
    assert argv[:2] == ["python3", "/tmp/heroku_release.py"]
    with pytest.raises(Copied) as copied:
        script.main(argv[2:])
    return str(copied.value)


def test_the_deploy_jobs_release_only_the_commit_sha_or_the_digest_staging_released(
    template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Staging copies the default branch's SHA tag, production the manifest digest staging released;
    # neither job runs in a merge-request pipeline, so neither can reach an `mr-` image.
    assert released_source(template, "shipyard-staging", monkeypatch) == f"r.example/app:{SHA}"
    digest = "sha256:" + "ab" * 32
    assert released_source(template, "shipyard-production", monkeypatch, digest) == f"r.example/app@{digest}"
    for name in ("shipyard-staging", "shipyard-production"):
        assert name not in pipeline(template, MERGE_REQUEST)


def test_only_the_default_branch_writes_the_build_cache(template: dict[str, Any]) -> None:
    build = jobs(template)["shipyard-build"]
    cache = next(line for line in script_lines(template, build) if "--cache-from" in line)
    probe = cache + '\nprintf "%s\\n" "$@"'  # the arguments the build command receives
    env = {"PATH": "/usr/bin:/bin", "ECR_REPOSITORY_URL": "r.example/app", "ECR_CACHE_TAG": "buildcache"}

    def arguments(extra: dict[str, str]) -> list[str]:
        run = subprocess.run(["sh", "-c", probe], env=env | extra, capture_output=True, text=True, check=True)
        return run.stdout.splitlines()

    main = arguments({"CI_COMMIT_BRANCH": "main", "CI_DEFAULT_BRANCH": "main"})
    assert main == [
        "--cache-from",
        "type=registry,ref=r.example/app:buildcache",
        "--cache-to",
        "type=registry,ref=r.example/app:buildcache,mode=max,image-manifest=true,oci-mediatypes=true",
    ]
    assert arguments({"CI_DEFAULT_BRANCH": "main"}) == main[:2]  # a merge-request pipeline reads it only


def test_one_deploy_definition_serves_both_environments(template: dict[str, Any]) -> None:
    raw_jobs, resolved = template, jobs(template)
    staging, production = resolved["shipyard-staging"], resolved["shipyard-production"]
    assert raw_jobs["shipyard-staging"]["extends"] == raw_jobs["shipyard-production"]["extends"] == ".shipyard-deploy"
    assert (staging["environment"]["name"], staging["resource_group"]) == ("staging", "staging")
    assert (production["environment"]["name"], production["resource_group"]) == ("production", "production")
    # Production releases the manifest digest staging released, handed over in staging's dotenv.
    assert staging["artifacts"]["reports"]["dotenv"] == "release.env"
    assert "--dotenv release.env" in staging["script"][0]
    assert production["needs"] == [{"job": "shipyard-staging", "artifacts": True}]
    assert '--digest "$SHIPYARD_IMAGE_DIGEST"' in production["script"][0]


def test_the_embedded_release_script_is_the_tested_one(template: dict[str, Any], tmp_path: Path) -> None:
    embedded = next(line for line in template[".shipyard-deploy"]["before_script"] if "heroku_release.py" in line)
    target = tmp_path / "heroku_release.py"
    subprocess.run(["sh", "-c", embedded.replace("/tmp/heroku_release.py", str(target))], check=True)
    assert target.read_text() == (ROOT / "ci" / "heroku_release.py").read_text(), "run `make docs`"


def provisioned(plans: dict[str, Run]) -> set[str]:
    return {
        v.raw_inputs["key"]
        for run in plans.values()
        for v in run.resources("gitlab:index/projectVariable:ProjectVariable")
    }


def test_the_template_reads_only_variables_that_shipyard_provisions(
    template: dict[str, Any], plans: dict[str, Run]
) -> None:
    # guards G4: a variable nobody provisions would be empty in the job
    defined = set(template["variables"]) | {"SHIPYARD_IMAGE_DIGEST"}  # the latter from staging's dotenv
    text = (
        TEMPLATE.read_text().split("# release-script:begin")[0] + TEMPLATE.read_text().split("# release-script:end")[1]
    )
    for job in jobs(template).values():
        defined |= set(job.get("variables", {}))
    used = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", text))
    unknown = {name for name in used - defined - provisioned(plans) if not name.startswith("CI_")}
    assert unknown == set()
    build_required = set(jobs(template)["shipyard-build"]["variables"]["SHIPYARD_REQUIRED"].split())
    assert build_required <= provisioned(plans)
    release_required = re.search(r"REQUIRED = \(([^)]*)\)", (ROOT / "ci" / "heroku_release.py").read_text())
    assert release_required is not None
    names = set(re.findall(r'"(\w+)"', release_required.group(1)))
    assert {n for n in names if not n.startswith("CI_")} <= provisioned(plans)


def test_each_job_runs_on_the_runner_its_stack_provisions(template: dict[str, Any], plans: dict[str, Run]) -> None:
    resolved = jobs(template)
    for name, stack in (
        ("shipyard-build", "staging"),
        ("shipyard-staging", "staging"),
        ("shipyard-production", "prod"),
    ):
        assert set(resolved[name]["tags"]) <= set(plans[stack].outputs["runnerTags"]), name
    # Production's deploy runner takes protected refs only, like its protected variables (G4).
    prod_runner = plans["prod"].one("gitlab:index/userRunner:UserRunner")
    assert prod_runner.raw_inputs["accessLevel"] == "ref_protected"


def test_each_job_reaches_the_variables_it_reads(template: dict[str, Any], plans: dict[str, Run]) -> None:
    # guards G5: an environment-scoped variable reaches only jobs whose `environment:` is its scope
    resolved = jobs(template)
    variables = "gitlab:index/projectVariable:ProjectVariable"
    for name, stack in (("shipyard-staging", "staging"), ("shipyard-production", "prod")):
        scopes = {v.raw_inputs["environmentScope"] for v in plans[stack].resources(variables)
                  if v.raw_inputs["key"].startswith("HEROKU_")}  # fmt: skip
        assert scopes == {resolved[name]["environment"]["name"]}, name
    # The build job has no environment: what it reads must be unscoped, from the build stack.
    unscoped = {
        v.raw_inputs["key"] for v in plans["staging"].resources(variables) if v.raw_inputs["environmentScope"] == "*"
    }
    assert "environment" not in resolved["shipyard-build"]
    assert set(resolved["shipyard-build"]["variables"]["SHIPYARD_REQUIRED"].split()) <= unscoped
