"""Only protected refs write release images (G11), shown on the offline plans of the committed
stacks: who may push where, who may sign, the signing key, the CI/CD variables the delivery template
reads, and the settings that refuse a build stack without that boundary."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from infra.offline.engine import Project, Run, ShipyardMocks, Step
from infra.settings import SettingsError
from tests.conftest import ROOT, run_stack, stack_document

REPO = "aws:ecr/repository:Repository"
RUNNER = "gitlab:index/userRunner:UserRunner"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
KEY = "aws:kms/key:Key"
ALIAS = "aws:kms/alias:Alias"
VAR = "gitlab:index/projectVariable:ProjectVariable"
PUSH = {"ecr:CompleteLayerUpload", "ecr:InitiateLayerUpload", "ecr:PutImage", "ecr:UploadLayerPart"}


def arn_of(run: Run, name: str) -> str:
    """An ECR repository's ARN, as the mock provider answered it."""
    return f"arn:aws:ecr:eu-west-1:123456789012:repository/{run.one(REPO, name=name).raw_inputs['name']}"


def allowed(run: Run, policy: Step) -> dict[str, set[str]]:
    """Resource → the actions a runner's role policy allows on it."""
    found: dict[str, set[str]] = {}
    for statement in json.loads(policy.raw_inputs["policy"])["Statement"]:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        found.setdefault(statement["Resource"], set()).update(actions)
    return found


def runners_by_role_policy(run: Run) -> list[tuple[Step, Step]]:
    """(runner, its role policy) pairs, matched through the component both belong to."""
    pairs = []
    for runner in run.resources(RUNNER):
        [policy] = [p for p in run.resources(ROLE_POLICY) if p.parent == runner.parent]
        pairs.append((runner, policy))
    return pairs


def key_statements(run: Run) -> list[dict[str, Any]]:
    return list(json.loads(run.one(KEY).raw_inputs["policy"])["Statement"])


def variable(run: Run, key: str) -> dict[str, Any]:
    return run.one(VAR, key=key, environmentScope="*").raw_inputs


# --- who may write and sign, on the committed staging plan -----------------------------------------


def test_only_the_protected_runner_can_push_to_the_release_repository(committed_runs: dict[str, Run]) -> None:
    run = committed_runs["staging"]  # guards G11
    release = arn_of(run, "acme/storefront")
    pushers = [r for r, policy in runners_by_role_policy(run) if PUSH & allowed(run, policy).get(release, set())]
    assert [r.name for r in pushers] == ["runner"]
    assert pushers[0].raw_inputs["accessLevel"] == "ref_protected"
    # And no runner's role has a wildcard that would reach it another way.
    for _, policy in runners_by_role_policy(run):
        assert not PUSH & allowed(run, policy).get("*", set())


def test_the_review_runner_can_push_only_to_the_review_repository(committed_runs: dict[str, Run]) -> None:
    run = committed_runs["staging"]  # guards G11
    [(review, policy)] = [(r, p) for r, p in runners_by_role_policy(run) if r.name == "review-runner"]
    assert review.raw_inputs["accessLevel"] == "not_protected"  # it takes merge-request jobs
    pushed = {resource for resource, actions in allowed(run, policy).items() if PUSH & actions}
    assert pushed == {arn_of(run, "acme/storefront-review")}
    assert allowed(run, policy)[arn_of(run, "acme/storefront")] == {
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
    }


def test_only_the_release_runners_role_may_sign(committed_runs: dict[str, Run]) -> None:
    run = committed_runs["staging"]  # guards G11
    statements = key_statements(run)
    signers = [s for s in statements if "kms:Sign" in s["Action"]]
    assert [s["Principal"] for s in signers] == [{"AWS": run.outputs["runnerRoleArn"]}]
    assert signers[0]["Action"] == ["kms:DescribeKey", "kms:GetPublicKey", "kms:Sign"]
    # The account administers the key (never unmanageable) but may neither sign nor hand signing out.
    [admin] = [s for s in statements if s is not signers[0]]
    assert admin["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}
    for action in ("kms:Sign", "kms:CreateGrant"):
        assert not [p for p in admin["Action"] if fnmatch.fnmatchcase(action, p)], action
    assert "kms:Put*" in admin["Action"] and "kms:ScheduleKeyDeletion" in admin["Action"]
    # No runner's own policy reaches for KMS: the key policy is the one place signing is granted.
    for _, policy in runners_by_role_policy(run):
        assert "kms:" not in policy.raw_inputs["policy"]


def test_the_signing_key_is_an_asymmetric_p256_key_with_a_fixed_alias(committed_runs: dict[str, Run]) -> None:
    run = committed_runs["staging"]
    key = run.one(KEY)
    inputs = key.raw_inputs
    assert (inputs["customerMasterKeySpec"], inputs["keyUsage"]) == ("ECC_NIST_P256", "SIGN_VERIFY")
    assert "release images" in inputs["description"]
    assert inputs["deletionWindowInDays"] == 30
    alias = run.one(ALIAS)
    assert alias.raw_inputs["name"] == "alias/shipyard-staging-image-signing"
    assert alias.raw_inputs["targetKeyId"] == run.outputs["imageSigningKeyArn"].rsplit("/", 1)[1]
    assert alias.delete_before_replace
    # The key policy names the role, so the role exists first (KMS refuses unknown principals).
    role = next(s for s in run.resources("aws:iam/role:Role") if s.name == "runner-role")
    assert role.urn in key.dependencies


@pytest.mark.parametrize(("region", "partition"), [("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov")])
def test_the_key_policy_names_principals_in_the_stacks_partition(region: str, partition: str) -> None:
    doc = stack_document("staging")  # guards P9
    doc["aws:region"] = region
    run = run_stack(doc)
    principals = [s["Principal"]["AWS"] for s in key_statements(run)]
    assert principals and all(p.startswith(f"arn:{partition}:iam::") for p in principals)
    assert run.outputs["imageSigningKeyArn"].startswith(f"arn:{partition}:kms:{region}:")


# --- the CI/CD variables the delivery template reads (unscoped, from the build stack) -------------------


def test_the_contract_variables_carry_the_build_stacks_values(committed_runs: dict[str, Run]) -> None:
    run = committed_runs["staging"]
    key_arn = run.outputs["imageSigningKeyArn"]
    assert variable(run, "ECR_REPOSITORY_URL")["value"] == run.outputs["registryUrl"]
    assert variable(run, "ECR_REVIEW_REPOSITORY_URL")["value"] == run.outputs["reviewRegistryUrl"]
    assert run.outputs["reviewRegistryUrl"].endswith("/acme/storefront-review")
    assert variable(run, "SHIPYARD_SIGNING_KEY")["value"] == f"awskms:///{key_arn}"
    assert variable(run, "SHIPYARD_SCAN_THRESHOLD")["value"] == "CRITICAL"
    for key in ("ECR_REVIEW_REPOSITORY_URL", "SHIPYARD_SIGNING_KEY", "SHIPYARD_SIGNING_PUBLIC_KEY"):
        inputs = variable(run, key)
        assert inputs["protected"] is False  # merge-request builds read them too
        assert inputs["raw"] is True  # `$` is literal


def test_the_public_key_variable_is_what_kms_answers_for_the_key(committed_runs: dict[str, Run]) -> None:
    run = committed_runs["staging"]
    key_arn = run.outputs["imageSigningKeyArn"]
    mocks = ShipyardMocks("eu-west-1", lambda reference: {})
    answer = cast(dict[str, Any], mocks._answer("aws:kms/getPublicKey:getPublicKey", {"keyId": key_arn}))
    public = variable(run, "SHIPYARD_SIGNING_PUBLIC_KEY")
    assert public["value"] == answer["publicKeyPem"] == run.outputs["imageSigningPublicKey"]
    # A PEM of several lines cannot be masked in GitLab (G2), and a public key needs no masking.
    assert public["value"].count("\n") > 2 and public["masked"] is False
    key = load_pem_public_key(public["value"].encode())
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"


def test_the_scan_threshold_follows_its_setting(staging_doc: dict[str, Any]) -> None:
    staging_doc["shipyard:registry"]["scanThreshold"] = "HIGH"
    assert variable(run_stack(staging_doc), "SHIPYARD_SCAN_THRESHOLD")["value"] == "HIGH"


# --- deploy runners read enhanced scan findings when the build stack scans with Inspector ----------------


def test_a_deploy_runner_reads_enhanced_findings_when_the_build_stack_scans_enhanced(
    tmp_path: Path, committed_runs: dict[str, Run]
) -> None:
    # A copy of the project whose staging stack scans with Inspector; prod reads it by reference.
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    staging = yaml.safe_load((ROOT / "Pulumi.staging.yaml").read_text())
    staging["config"]["shipyard:registry"]["scanning"] = "enhanced"
    (tmp_path / "Pulumi.staging.yaml").write_text(yaml.safe_dump(staging))
    project = Project(root=tmp_path, name="shipyard", main=ROOT / "infra")
    run = run_stack(stack_document("prod"), "prod", project=project)
    statements = {s["Sid"]: s for s in json.loads(run.one(ROLE_POLICY).raw_inputs["policy"])["Statement"]}
    assert statements["ReadEnhancedScanFindings"]["Action"] == "inspector2:ListFindings"
    assert "ReadEnhancedScanFindings" not in committed_runs["prod"].one(ROLE_POLICY).raw_inputs["policy"]  # basic


# --- settings that would let merge requests write release images, refused before anything exists ------


def refused(doc: dict[str, Any], stack: str) -> list[str]:
    record: list[Step] = []
    with pytest.raises(SettingsError) as info:
        run_stack(doc, stack, record=record)
    assert [s for s in record if s.custom] == []
    return info.value.problems


def test_an_unprotected_build_runner_is_refused(staging_doc: dict[str, Any]) -> None:  # guards G11
    staging_doc["shipyard:runner"]["protectedOnly"] = False
    problems = refused(staging_doc, "staging")
    assert any(p.startswith("shipyard:runner.protectedOnly must be true") and "G11" in p for p in problems)


def test_a_protected_review_runner_is_refused(staging_doc: dict[str, Any]) -> None:  # guards G11
    staging_doc["shipyard:reviewRunner"]["protectedOnly"] = True
    problems = refused(staging_doc, "staging")
    assert any(p.startswith("shipyard:reviewRunner.protectedOnly: must be false") for p in problems), problems


def test_a_review_runner_outside_the_build_stack_is_refused(prod_doc: dict[str, Any]) -> None:
    prod_doc["shipyard:reviewRunner"] = {"instanceType": "t3.large"}
    problems = refused(prod_doc, "prod")
    assert any(p.startswith("shipyard:reviewRunner belongs to the build stack") for p in problems), problems


# --- fleet mode: the jobs run on the workers, with the jobs' permissions ---------------------------------


def test_in_fleet_mode_only_the_protected_runners_workers_push_release_images(fleet_run: Run) -> None:
    run = fleet_run  # guards G11, R15
    release, review = arn_of(run, "acme/storefront"), arn_of(run, "acme/storefront-review")
    pushed = {
        policy.name: {resource for resource, actions in allowed(run, policy).items() if PUSH & actions}
        for policy in run.resources(ROLE_POLICY)
    }
    assert pushed == {
        "runner-least-privilege": set(),  # the managers push nothing: they run no job
        "review-runner-least-privilege": set(),
        "runner-workers-jobs": {release},
        "review-runner-workers-jobs": {review},
    }
    # The review runner's workers belong to the runner that takes merge-request jobs.
    workers = next(s for s in run.resources(ROLE_POLICY) if s.name == "review-runner-workers-jobs")
    fleet = next(s for s in run.steps if s.urn == workers.parent)
    [review_runner] = [r for r in run.resources(RUNNER) if r.parent == fleet.parent]
    assert review_runner.raw_inputs["accessLevel"] == "not_protected"


def test_in_fleet_mode_only_the_release_runners_workers_may_sign(fleet_run: Run) -> None:
    run = fleet_run  # guards G11
    [signer] = [s for s in key_statements(run) if "kms:Sign" in s["Action"]]
    role = next(s for s in run.resources("aws:iam/role:Role") if s.name == "runner-workers-role")
    assert signer["Principal"]["AWS"].split(":role/")[1].startswith("runner-workers-role-")
    assert role.urn in run.one(KEY).dependencies
    assert signer["Principal"] != {"AWS": run.outputs["runnerRoleArn"]}  # not the manager's role
    for policy in run.resources(ROLE_POLICY):
        assert "kms:" not in policy.raw_inputs["policy"]
