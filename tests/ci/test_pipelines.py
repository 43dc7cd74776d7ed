"""Both GitLab CI files: valid against GitLab's CI schema, and the rules that matter — which jobs
each kind of pipeline runs, what credentials they get, how deploys are serialised — checked by
evaluating the files' own rules for realistic pipeline variables."""

from __future__ import annotations

import fnmatch
import importlib.metadata
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra.offline.engine import Run
from infra.settings import ReviewSettings
from tests.by_path import load_module
from tests.ci.gitlab import jobs, pipeline, plan, script_lines
from tests.ci.matrix import OWN, SOURCES, TEMPLATE
from tests.conftest import ROOT, run_stack, stack_document

CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")

MERGE_REQUEST = SOURCES["merge request"].variables
DEFAULT_BRANCH = SOURCES["push, default branch"].variables
FEATURE_BRANCH = SOURCES["push, other branch"].variables
SCHEDULE = SOURCES["schedule, default branch"].variables
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
    assert credentials(own, "preview") == {
        "PREVIEW_AWS_ROLE_ARN",
        "PREVIEW_HEROKU_API_KEY",
        "PREVIEW_GITLAB_TOKEN",
        "PREVIEW_PULUMI_ACCESS_TOKEN",
    }


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


def test_the_pulumi_image_is_pinned_to_the_locked_sdk_release_on_a_supported_python(own: dict[str, Any]) -> None:
    # The unsuffixed pulumi-python image carries Pulumi's default Python, older than shipyard's:
    # `make setup` would find no Python it supports there.
    from scripts.setup_env import SUPPORTED

    image = re.fullmatch(r"pulumi/pulumi-python-3\.(\d+):(.+)", own["default"]["image"])
    assert image, own["default"]["image"]
    assert (3, int(image[1])) in SUPPORTED
    assert image[2] == importlib.metadata.version("pulumi")


# --- the application's delivery template ---------------------------------------------------------


@pytest.fixture
def plans(committed_runs: dict[str, Run]) -> dict[str, Run]:
    return committed_runs


def test_the_template_builds_once_per_commit_and_deploys_only_the_default_branch(template: dict[str, Any]) -> None:
    assert [name for name, job in jobs(template).items() if job["stage"] == "build"] == ["shipyard-build"]
    assert pipeline(template, MERGE_REQUEST) == {
        "shipyard-build": "on_success",
        "shipyard-review": "on_success",
        "shipyard-review-stop": "manual",
    }
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


SHA = "0f3c2a9be41d7c6a5b8e9f00112233445566778a"
# The release script takes ECR repository URLs only.
RELEASE_REPOSITORY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/acme/storefront"
REVIEW_REPOSITORY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/acme/storefront-review"


def build_target(template: dict[str, Any], variables: dict[str, str], job_id: str = "4242") -> tuple[str, list[str]]:
    """The image the build job pushes and the cache arguments it builds with, from its own script
    run with the pipeline's variables and those of the rule that admitted the job."""
    planned = plan(template, variables)["shipyard-build"]
    build = jobs(template)["shipyard-build"]
    script = next(line for line in script_lines(template, build) if "image=" in line)
    env = {
        "PATH": "/usr/bin:/bin",
        "ECR_REPOSITORY_URL": RELEASE_REPOSITORY,
        "ECR_REVIEW_REPOSITORY_URL": REVIEW_REPOSITORY,
        "ECR_CACHE_TAG": "buildcache",
        "CI_COMMIT_SHA": SHA,
        "CI_JOB_ID": job_id,
    }
    run = subprocess.run(
        ["sh", "-euc", script + '\nprintf "%s\\n" "$image" "$@"'],
        env=env | variables | planned.variables,
        capture_output=True,
        text=True,
        check=True,
    )
    image, *arguments = run.stdout.splitlines()
    return image, arguments


def test_merge_requests_push_review_images_and_only_the_default_branch_pushes_release_images(
    template: dict[str, Any],
) -> None:  # guards G11: what a merge request builds never lands where a protected pipeline releases from
    image, _ = build_target(template, MERGE_REQUEST)
    assert image == f"{REVIEW_REPOSITORY}:mr-7-{SHA}"
    image, _ = build_target(template, DEFAULT_BRANCH)
    assert image == f"{RELEASE_REPOSITORY}:{SHA}-4242"
    # A scheduled or started-by-hand pipeline of the default branch that asks to release builds too.
    image, _ = build_target(template, SCHEDULE | {"SHIPYARD_RELEASE": "true"}, job_id="4243")
    assert image == f"{RELEASE_REPOSITORY}:{SHA}-4243"
    # The build runs in no other pipeline, so no other tag is ever pushed.
    for variables in (FEATURE_BRANCH, FEATURE_BRANCH | {"CI_OPEN_MERGE_REQUESTS": "acme/storefront!3"}, SCHEDULE):
        assert "shipyard-build" not in pipeline(template, variables)


def test_the_default_branch_always_builds_and_pushes_a_tag_of_its_own_job(template: dict[str, Any]) -> None:
    # guards G11: the default branch never releases an image it did not build itself. With immutable
    # tags the first writer of a tag decides what it holds, so there is no "already there, skip" path
    # and the tag is unique to the job run: a retried job pushes under its own job id.
    script = "\n".join(script_lines(template, jobs(template)["shipyard-build"]))
    assert "imagetools" not in script and "exit 0" not in script
    first, _ = build_target(template, DEFAULT_BRANCH, job_id="100")
    retried, _ = build_target(template, DEFAULT_BRANCH, job_id="101")
    assert first != retried and {first, retried} == {
        f"{RELEASE_REPOSITORY}:{SHA}-100",
        f"{RELEASE_REPOSITORY}:{SHA}-101",
    }


def test_the_registry_lifecycle_keeps_the_release_images_the_build_pushes(
    template: dict[str, Any], plans: dict[str, Run]
) -> None:
    # The tag the default branch pushes, against the lifecycle rules the release repository is given:
    # a rule that keeps the newest release images selects it, and no rule that expires by age does.
    release_repository = stack_document("staging")["shipyard:registry"]["name"]
    policy = next(
        step for step in plans["staging"].resources("aws:ecr/lifecyclePolicy:LifecyclePolicy")
        if step.raw_inputs["repository"] == release_repository
    )  # fmt: skip
    image, _ = build_target(template, DEFAULT_BRANCH)
    tag = image.rsplit(":", 1)[1]
    selecting = []
    for rule in json.loads(policy.raw_inputs["policy"])["rules"]:
        selection = rule["selection"]
        if any(tag.startswith(p) for p in selection.get("tagPrefixList", [])) or any(
            fnmatch.fnmatchcase(tag, p) for p in selection.get("tagPatternList", [])
        ):
            selecting.append(selection)
    assert selecting and all(selection["countType"] == "imageCountMoreThan" for selection in selecting)


class Copied(Exception):
    """Raised in place of the first registry command: the image reference it names, nothing done."""


def released_source(template: dict[str, Any], job: str, monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    """The image reference a deploy job's own command line makes the release script read first (the
    signature check or the copy, whichever comes first): the first `repository@digest` or
    `repository:tag` of the release repository on the command line of the first program it runs."""
    script = load_module(ROOT / "ci" / "heroku_release.py")
    reference = re.compile(rf"(?:docker://)?({re.escape(RELEASE_REPOSITORY)}[@:][\w:.-]+)")

    def first_command(args: Any, *_: Any, **__: Any) -> Any:
        for arg in args:
            found = reference.fullmatch(str(arg)) or reference.search(str(arg))
            if found:
                raise Copied(found.group(1))
        raise AssertionError(f"the release script ran {args} before reading the image")

    monkeypatch.setattr(subprocess, "run", first_command)
    monkeypatch.setattr(subprocess, "Popen", first_command)
    variables = {
        "CI_COMMIT_SHA": SHA,
        "ECR_REPOSITORY_URL": RELEASE_REPOSITORY,
        "AWS_DEFAULT_REGION": "eu-west-1",
        "HEROKU_API_KEY": "HRKU-pipelineTestKey0123456789",
        "HEROKU_APP_NAME": "acme-web",
        "HEROKU_REGISTRY_IMAGE": "registry.heroku.com/acme-web/web",
        "SHIPYARD_SIGNING_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n",
        "SHIPYARD_SCAN_THRESHOLD": "CRITICAL",
        **env,
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    [command] = [line for line in jobs(template)[job]["script"] if line.startswith("python3 ")]
    argv = shlex.split(re.sub(r"\$(\w+)", lambda m: variables.get(m.group(1), ""), command))
    assert argv[:2] == ["python3", "/tmp/heroku_release.py"]
    with pytest.raises(Copied) as copied:
        script.main(argv[2:])
    return str(copied.value)


def test_the_deploy_jobs_release_only_the_digest_the_build_signed_and_handed_on(
    template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Staging releases the digest from the build's dotenv report, production the digest staging
    # released (from staging's); no deploy reads a tag, and none runs in a merge-request pipeline.
    digest = "sha256:" + "ab" * 32
    for name in ("shipyard-staging", "shipyard-production"):
        source = released_source(template, name, monkeypatch, SHIPYARD_IMAGE_DIGEST=digest)
        assert source == f"{RELEASE_REPOSITORY}@{digest}", name
        assert name not in pipeline(template, MERGE_REQUEST)
    # A rollback releases the digest it is given, from the same repository.
    rollback = "sha256:" + "cd" * 32
    for name in ("shipyard-rollback-staging", "shipyard-rollback-production"):
        source = released_source(template, name, monkeypatch, SHIPYARD_ROLLBACK_DIGEST=rollback)
        assert source == f"{RELEASE_REPOSITORY}@{rollback}", name


def test_only_the_default_branch_writes_the_build_cache(template: dict[str, Any]) -> None:
    _, release = build_target(template, DEFAULT_BRANCH)
    assert release == [
        "--cache-from",
        f"type=registry,ref={RELEASE_REPOSITORY}:buildcache",
        "--cache-to",
        f"type=registry,ref={RELEASE_REPOSITORY}:buildcache,mode=max,image-manifest=true,oci-mediatypes=true",
    ]
    _, review = build_target(template, MERGE_REQUEST)
    assert review == release[:2]  # a merge-request build reads the release repository's cache only


def test_one_deploy_definition_serves_every_release_and_rollback(template: dict[str, Any]) -> None:
    resolved = jobs(template)
    deploys = ("shipyard-staging", "shipyard-production", "shipyard-rollback-staging", "shipyard-rollback-production")
    for name in deploys:
        assert template[name]["extends"][0] == ".shipyard-deploy", name
        for key in ("image", "before_script", "variables", "artifacts", "inherit"):
            assert resolved[name][key] == template[".shipyard-deploy"][key], (name, key)
    staging, production = resolved["shipyard-staging"], resolved["shipyard-production"]
    assert (staging["environment"]["name"], staging["resource_group"]) == ("staging", "staging")
    assert (production["environment"]["name"], production["resource_group"]) == ("production", "production")
    # Staging releases the digest the build handed over in its dotenv report, production the one
    # staging released, handed over in staging's.
    assert staging["needs"] == ["shipyard-build"]
    assert resolved["shipyard-build"]["artifacts"]["reports"]["dotenv"] == "build.env"
    assert staging["artifacts"]["reports"]["dotenv"] == "release.env"
    assert staging["script"] == [
        'python3 /tmp/heroku_release.py --digest "$SHIPYARD_IMAGE_DIGEST" --dotenv release.env'
    ]
    assert production["needs"] == [{"job": "shipyard-staging", "artifacts": True}]
    assert production["script"] == staging["script"]


@pytest.mark.parametrize(
    ("job", "name"), [(".shipyard-release-script", "heroku_release.py"), (".shipyard-review-app", "review_apps.py")]
)
def test_the_embedded_scripts_are_the_tested_ones(
    template: dict[str, Any], tmp_path: Path, job: str, name: str
) -> None:
    embedded = next(line for line in template[job]["before_script"] if f"/tmp/{name}" in line)
    target = tmp_path / name
    subprocess.run(["sh", "-c", embedded.replace(f"/tmp/{name}", str(target))], check=True)
    assert target.read_text() == (ROOT / "ci" / name).read_text(), "run `make docs`"


def test_the_review_jobs_release_and_delete_the_merge_requests_app(template: dict[str, Any]) -> None:
    resolved = jobs(template)
    review, stop = resolved["shipyard-review"], resolved["shipyard-review-stop"]
    # The same deploy definition (image, no inherited defaults, the release script), the review
    # runner, and both embedded scripts: the release script loads ci/review_apps.py beside it.
    deploy = template[".shipyard-deploy"]
    for job in (review, stop):
        for key in ("image", "inherit"):
            assert job[key] == deploy[key], key
        assert job["variables"]["GIT_STRATEGY"] == "none"
        assert job["tags"] == ["shipyard", "review"]
        lines = script_lines(template, job, "before_script")
        written = [line for line in lines if line.lstrip().startswith("cat > /tmp/")]
        assert [line.split()[2] for line in written] == ["/tmp/heroku_release.py", "/tmp/review_apps.py"]
        # Copy and release only: the packages for signature and scan checks stay in the deploy jobs.
        assert [line for line in lines if line.startswith("apk ")] == [
            "apk add --no-cache skopeo docker-credential-ecr-login"
        ]
        assert job["resource_group"] == job["environment"]["name"] == "review/$CI_COMMIT_REF_SLUG"
    assert any("'cosign<3' aws-cli" in line for line in script_lines(template, deploy, "before_script"))
    assert review["needs"] == ["shipyard-build"]
    assert review["environment"]["on_stop"] == "shipyard-review-stop"
    # shipyard:review.autoStopIn, expanded when the deployment succeeds; the job's own value is the
    # settings' default, which the review/*-scoped project variable overrides.
    assert review["environment"]["auto_stop_in"] == "$SHIPYARD_REVIEW_AUTO_STOP_IN"
    default = ReviewSettings.model_fields["auto_stop_in"].default
    assert review["variables"] == {**deploy["variables"], "SHIPYARD_REVIEW_AUTO_STOP_IN": default}
    assert stop["variables"] == deploy["variables"]
    # The URL is Heroku's web_url for the app, handed on in the job's dotenv report.
    assert review["environment"]["url"] == "$SHIPYARD_REVIEW_URL"
    assert review["artifacts"]["reports"]["dotenv"] == "release.env"
    assert review["script"] == ["python3 /tmp/heroku_release.py --ensure-review-app --dotenv release.env"]
    assert stop["environment"]["action"] == "stop"
    assert stop["script"] == ["python3 /tmp/heroku_release.py --delete-review-app"]
    assert stop["needs"] == []


def test_the_review_jobs_read_the_review_variables_the_build_stack_scopes_to_them(template: dict[str, Any]) -> None:
    # guards G5: the review/* variables reach jobs of a review/ environment, and no deploy key does
    doc = stack_document("staging")
    doc["shipyard:review"] = {"appPrefix": "acme-shop", "team": "acme-review"}
    secrets = {
        "shipyard:herokuApiKey": "HRKU-deployKey-0123456789",
        "shipyard:herokuReviewApiKey": "HRKU-reviewKey-0123",
    }
    run = run_stack(doc, "staging", secrets=secrets)
    scopes = {
        v.raw_inputs["key"]: v.raw_inputs["environmentScope"]
        for v in run.resources("gitlab:index/projectVariable:ProjectVariable")
    }
    script = load_module(ROOT / "ci" / "heroku_release.py")
    for name in ("shipyard-review", "shipyard-review-stop"):
        environment = jobs(template)[name]["environment"]["name"]
        provisioned = {*script.REVIEW_REQUIRED, *script.REVIEW_OPTIONAL, "SHIPYARD_REVIEW_AUTO_STOP_IN"}
        for key in provisioned - {"CI_MERGE_REQUEST_IID", "CI_COMMIT_SHA"}:
            assert fnmatch.fnmatch(environment, scopes[key]), (name, key)
        assert not fnmatch.fnmatch(environment, scopes["HEROKU_API_KEY"]), name


def provisioned(plans: dict[str, Run]) -> set[str]:
    return {
        v.raw_inputs["key"]
        for run in plans.values()
        for v in run.resources("gitlab:index/projectVariable:ProjectVariable")
    }


def required_by_build(template: dict[str, Any]) -> dict[str, set[str]]:
    """What the build job checks for, per runner it runs on (from the rules that admit it)."""
    return {
        rule["variables"]["SHIPYARD_BUILD_RUNNER"]: set(rule["variables"]["SHIPYARD_REQUIRED"].split())
        for rule in jobs(template)["shipyard-build"]["rules"]
    }


def test_the_template_reads_only_variables_that_shipyard_provisions(
    template: dict[str, Any], plans: dict[str, Run]
) -> None:
    # guards G4: a variable nobody provisions would be empty in the job
    text = (
        TEMPLATE.read_text().split("# release-script:begin")[0] + TEMPLATE.read_text().split("# release-script:end")[1]
    )
    # the latter two from the dotenv reports
    defined = set(template["variables"]) | {"SHIPYARD_IMAGE_DIGEST", "SHIPYARD_REVIEW_URL"}
    for job in jobs(template).values():
        defined |= set(job.get("variables", {}))
        for rule in job.get("rules", []):
            defined |= set(rule.get("variables", {}))
    used = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", text))
    unknown = {name for name in used - defined - provisioned(plans) if not name.startswith("CI_")}
    assert unknown == set()
    for runner, required in required_by_build(template).items():
        assert required <= provisioned(plans), runner
    release_required = re.search(r"REQUIRED = \(([^)]*)\)", (ROOT / "ci" / "heroku_release.py").read_text())
    assert release_required is not None
    names = set(re.findall(r'"(\w+)"', release_required.group(1)))
    assert {n for n in names if not n.startswith("CI_")} <= provisioned(plans)


def test_the_build_checks_for_what_each_kind_of_build_reads(template: dict[str, Any]) -> None:
    # guards G4: a missing variable fails the build with its name, before anything is pushed
    assert required_by_build(template) == {
        "review": {"ECR_REVIEW_REPOSITORY_URL", "ECR_REPOSITORY_URL", "ECR_CACHE_TAG", "AWS_DEFAULT_REGION"},
        "build": {"ECR_REPOSITORY_URL", "ECR_CACHE_TAG", "AWS_DEFAULT_REGION", "SHIPYARD_SIGNING_KEY"},
    }
    lines = script_lines(template, jobs(template)["shipyard-build"])
    assert "SHIPYARD_REQUIRED" in lines[0]  # .shipyard-require, first


def test_each_job_runs_on_the_runner_its_stack_provisions(template: dict[str, Any], plans: dict[str, Run]) -> None:
    resolved = jobs(template)
    for name, stack in (
        ("shipyard-staging", "staging"),
        ("shipyard-rollback-staging", "staging"),
        ("shipyard-production", "prod"),
        ("shipyard-rollback-production", "prod"),
    ):
        assert set(resolved[name]["tags"]) <= set(plans[stack].outputs["runnerTags"]), name
    # The build job's runner tag comes from the rule that admitted it: the release build runner for
    # the default branch, the review runner for merge requests (G11).
    for variables, output in ((DEFAULT_BRANCH, "runnerTags"), (MERGE_REQUEST, "reviewRunnerTags")):
        runner = plan(template, variables)["shipyard-build"].variables["SHIPYARD_BUILD_RUNNER"]
        tags = {tag.replace("$SHIPYARD_BUILD_RUNNER", runner) for tag in resolved["shipyard-build"]["tags"]}
        assert tags <= set(plans["staging"].outputs[output]), output
    # Production's deploy runner takes protected refs only, like its protected variables (G4).
    prod_runner = plans["prod"].one("gitlab:index/userRunner:UserRunner")
    assert prod_runner.raw_inputs["accessLevel"] == "ref_protected"


def test_each_job_reaches_the_variables_it_reads(template: dict[str, Any], plans: dict[str, Run]) -> None:
    # guards G5: an environment-scoped variable reaches only jobs whose `environment:` is its scope
    resolved = jobs(template)
    variables = "gitlab:index/projectVariable:ProjectVariable"
    for name, stack in (
        ("shipyard-staging", "staging"),
        ("shipyard-rollback-staging", "staging"),
        ("shipyard-production", "prod"),
        ("shipyard-rollback-production", "prod"),
    ):
        scopes = {v.raw_inputs["environmentScope"] for v in plans[stack].resources(variables)
                  if v.raw_inputs["key"].startswith("HEROKU_")}  # fmt: skip
        assert scopes == {resolved[name]["environment"]["name"]}, name
    # The build job has no environment: what it reads must be unscoped, from the build stack.
    unscoped = {
        v.raw_inputs["key"] for v in plans["staging"].resources(variables) if v.raw_inputs["environmentScope"] == "*"
    }
    assert "environment" not in resolved["shipyard-build"]
    for runner, required in required_by_build(template).items():
        assert required <= unscoped, runner
