"""The delivery template's own behaviour, from its own text: jobs that take nothing from the
including application (G10), a release build that signs what it pushed and hands on exactly that
digest, and rollback jobs that re-release a digest kept in ECR (H13) through the same deploy job."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.ci.gitlab import effective, include, jobs, plan, script_lines
from tests.ci.matrix import SOURCES

DEPLOYS = ("shipyard-staging", "shipyard-production", "shipyard-rollback-staging", "shipyard-rollback-production")
ROLLBACKS = ("shipyard-rollback-staging", "shipyard-rollback-production")
DIGEST = "sha256:" + "5e" * 32
KEY = "awskms:///arn:aws:kms:eu-west-1:123456789012:key/0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9"

# What an application typically has around the include: a default image and setup for its own jobs,
# and global variables for its own tools (G10: all of it reaches included jobs unless they opt out).
APPLICATION = {
    "include": [{"project": "acme/shipyard", "ref": "v1.0.0", "file": "ci/delivery.gitlab-ci.yml"}],
    "default": {
        "image": "node:22",
        "before_script": ["npm ci"],
        "after_script": ["npm run report"],
        "services": ["postgres:17"],
        "cache": {"paths": ["node_modules/"]},
        "tags": ["saas-linux-small-amd64"],
        "interruptible": True,
    },
    "variables": {"NODE_ENV": "test", "DOCKER_HOST": "tcp://localhost:2375", "PYTHONPATH": "/app/lib"},
    "test": {"stage": "build", "script": ["npm test"]},
}


# --- G10: nothing from the including project -------------------------------------------------------


def test_every_template_job_opts_out_of_the_applications_defaults(template: dict[str, Any]) -> None:
    # guards G10: jobs of an included template inherit the including project's `default:`
    for name, job in jobs(template).items():
        assert job["inherit"]["default"] is False, name
        # Of the global variables, only the template's own that the job reads.
        expected = ["SHIPYARD_DOCKERFILE", "SHIPYARD_CONTEXT"] if name == "shipyard-build" else False
        assert job["inherit"]["variables"] == expected, name


def test_an_applications_default_and_variables_change_no_template_job(template: dict[str, Any]) -> None:
    # guards G10: the jobs GitLab runs for the application, with its `default:` and global
    # variables merged in, are the jobs the template defines, script, image and all.
    included = include(APPLICATION, template)
    assert "test" in jobs(included)  # the application's own job is there too
    for name in jobs(template):
        alone, with_application = effective(template, name), effective(included, name)
        for key in ("image", "services", "before_script", "script", "after_script", "cache", "tags", "interruptible"):
            assert with_application.get(key) == alone.get(key), (name, key)
        assert with_application["variables"] == alone["variables"], name
    # Each job sets what it relies on itself.
    build = effective(included, "shipyard-build")
    assert build["image"].startswith("docker:") and "before_script" not in build
    assert build["variables"]["DOCKER_HOST"] == "tcp://docker:2376"
    for name in DEPLOYS:
        deploy = effective(included, name)
        assert deploy["image"].startswith("python:") and "after_script" not in deploy, name
        assert "NODE_ENV" not in deploy["variables"] and "PYTHONPATH" not in deploy["variables"], name


def test_an_application_can_still_point_the_build_at_its_dockerfile(template: dict[str, Any]) -> None:
    application = APPLICATION | {
        "variables": {"SHIPYARD_DOCKERFILE": "docker/web.Dockerfile", "SHIPYARD_CONTEXT": "web"}
    }
    build = effective(include(application, template), "shipyard-build")
    assert (build["variables"]["SHIPYARD_DOCKERFILE"], build["variables"]["SHIPYARD_CONTEXT"]) == (
        "docker/web.Dockerfile",
        "web",
    )


# --- the release build: sign what was pushed, hand on exactly that digest --------------------------

# `docker buildx build --metadata-file`, as docker/buildx documents it (docs/reference/buildx_build.md,
# "Write build result metadata to a file"), for a pushed image.
METADATA = {
    "buildx.build.ref": "mybuilder/mybuilder0/0fjb6ubs52xx3vygf6fgdl611",
    "containerimage.config.digest": "sha256:" + "2f" * 32,
    "containerimage.descriptor": {
        "digest": DIGEST,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "size": 506,
    },
    "containerimage.digest": DIGEST,
    "image.name": "r.example/app:0f3c2a9be41d7c6a5b8e9f00112233445566778a-4242",
}


def after_the_build(
    template: dict[str, Any], tmp_path: Path, runner: str, metadata: dict[str, Any] | None
) -> tuple[int, str, list[str], str | None]:
    """The build job's last step, run with a stand-in `cosign` that records its arguments: exit code,
    output, cosign's argument lines, and the dotenv report it wrote (None if none)."""
    [step] = [line for line in script_lines(template, jobs(template)["shipyard-build"]) if "cosign sign" in line]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    cosign = bin_dir / "cosign"
    cosign.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$COSIGN_ARGS"\n')
    cosign.chmod(cosign.stat().st_mode | stat.S_IEXEC)
    metadata_file = tmp_path / "build-metadata.json"
    if metadata is not None:
        metadata_file.write_text(json.dumps(metadata, indent=2))  # buildx indents its metadata file
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "COSIGN_ARGS": str(tmp_path / "cosign-args"),
        "SHIPYARD_BUILD_RUNNER": runner,
        "SHIPYARD_SIGNING_KEY": KEY,
        "ECR_REPOSITORY_URL": "r.example/app",
        "image": "r.example/app:tag",
    }
    run = subprocess.run(
        ["sh", "-eu", "-c", step.replace("/tmp/build-metadata.json", str(metadata_file))],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    args = (tmp_path / "cosign-args").read_text().splitlines() if (tmp_path / "cosign-args").exists() else []
    report = (tmp_path / "build.env").read_text() if (tmp_path / "build.env").exists() else None
    return run.returncode, run.stdout + run.stderr, args, report


def test_the_release_build_signs_the_digest_it_pushed_and_hands_on_exactly_that_digest(
    template: dict[str, Any], tmp_path: Path
) -> None:
    # guards G11: what staging and production release is the manifest this job built and signed
    code, output, cosign, report = after_the_build(template, tmp_path, "build", METADATA)
    assert code == 0, output
    assert cosign == ["sign", "--key", KEY, "--tlog-upload=false", "--yes", f"r.example/app@{DIGEST}"]
    assert report == f"SHIPYARD_IMAGE_DIGEST={DIGEST}\n"
    assert jobs(template)["shipyard-build"]["artifacts"]["reports"]["dotenv"] == "build.env"


def test_a_build_without_a_reported_digest_signs_nothing_and_hands_nothing_on(
    template: dict[str, Any], tmp_path: Path
) -> None:
    for metadata in ({k: v for k, v in METADATA.items() if k != "containerimage.digest"}, None):
        code, output, cosign, report = after_the_build(template, tmp_path, "build", metadata)
        assert code != 0 and (cosign, report) == ([], None)
        if metadata is not None:
            assert "no manifest digest" in output


def test_a_merge_request_build_signs_nothing_and_hands_nothing_on(template: dict[str, Any], tmp_path: Path) -> None:
    # guards G11: only the release build runner's role may use the signing key; a review build asks nothing of it
    code, output, cosign, report = after_the_build(template, tmp_path, "review", METADATA)
    assert code == 0, output
    assert (cosign, report) == ([], None)


def test_signing_and_verifying_use_cosign_2_from_the_pinned_alpine(template: dict[str, Any]) -> None:
    # cosign 3 stores new-format bundles as OCI referrers and refuses `--tlog-upload=false` without
    # `--use-signing-config=false`: the build and the release script must run the same major version.
    build = effective(template, "shipyard-build")
    assert build["image"].endswith("-alpine3.22")
    assert "apk add --no-cache docker-credential-ecr-login 'cosign<3'" in script_lines(template, build)
    for name in DEPLOYS:
        deploy = effective(template, name)
        assert deploy["image"].endswith("-alpine3.22"), name
        install = deploy["before_script"][0]
        assert install.startswith("apk add --no-cache ") and {"'cosign<3'", "aws-cli", "skopeo"} <= set(
            install.split()
        ), name


# --- rollback (H13) ---------------------------------------------------------------------------------


def test_rollback_jobs_are_the_deploy_job_for_the_same_environment(template: dict[str, Any]) -> None:
    # guards H13: a rollback re-releases a digest kept in ECR, verified and recorded like any release
    for rollback, release in (
        ("shipyard-rollback-staging", "shipyard-staging"),
        ("shipyard-rollback-production", "shipyard-production"),
    ):
        job, target = effective(template, rollback), effective(template, release)
        assert template[rollback]["extends"][0] == ".shipyard-deploy"
        for key in ("image", "before_script", "artifacts", "tags", "environment", "resource_group", "stage"):
            assert job[key] == target[key], (rollback, key)
        assert job["needs"] == []
        assert (
            job["script"][-1]
            == 'python3 /tmp/heroku_release.py --digest "$SHIPYARD_ROLLBACK_DIGEST" --dotenv release.env'
        )


def test_rollback_jobs_are_offered_in_web_and_api_pipelines_of_the_default_branch_only(
    template: dict[str, Any],
) -> None:
    for source in SOURCES.values():
        planned = plan(template, source.variables)
        offered = {name: planned[name] for name in ROLLBACKS if name in planned}
        if source.label in ("web, default branch", "api, default branch"):
            assert set(offered) == set(ROLLBACKS), source.label
            # G9: never blocking the pipeline they are offered in
            assert all(p.when == "manual" and p.allow_failure for p in offered.values()), source.label
        else:
            assert offered == {}, source.label


def rollback_check(template: dict[str, Any], digest: str | None) -> subprocess.CompletedProcess[str]:
    script = effective(template, "shipyard-rollback-production")["script"]
    [check] = [line for line in script if "SHIPYARD_ROLLBACK_DIGEST" in line and not line.startswith("python3")]
    assert script.index(check) < len(script) - 1  # before the release script copies anything
    env = {"PATH": os.environ["PATH"]} | ({"SHIPYARD_ROLLBACK_DIGEST": digest} if digest is not None else {})
    return subprocess.run(["sh", "-eu", "-c", check], env=env, capture_output=True, text=True)


@pytest.mark.parametrize(
    "digest",
    [
        None,
        "",
        DIGEST.upper().replace("SHA256", "sha256"),  # uppercase hex
        DIGEST[:-1],  # 63 hex digits
        DIGEST + "0",
        "sha512:" + "5e" * 64,
        "r.example/app@" + DIGEST,  # a reference, not a digest
        DIGEST + "\nsha256:" + "00" * 32,
        "sha256:" + "g" * 64,
    ],
)
def test_a_missing_or_malformed_rollback_digest_fails_before_anything_is_copied(
    template: dict[str, Any], digest: str | None
) -> None:
    run = rollback_check(template, digest)
    assert run.returncode == 1
    assert "SHIPYARD_ROLLBACK_DIGEST" in run.stdout
    assert ("is not set" in run.stdout) == (not digest)


def test_a_well_formed_rollback_digest_passes_the_check(template: dict[str, Any]) -> None:
    run = rollback_check(template, DIGEST)
    assert (run.returncode, run.stdout) == (0, "")
