"""AWS for tests: moto, a real AWS API emulator, in this process. The code under test builds its
boto3 clients exactly as it does against AWS (default endpoints, credentials from the environment);
moto answers every request to an AWS endpoint from its backends, before anything is sent: no
network, no real credentials. A request to any other address (a test's own fake API) goes out as
it would without moto."""

from __future__ import annotations

import collections
import contextlib
import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

REGION = "eu-west-1"
DEFAULT_ACCOUNT = "123456789012"  # moto's

# How often each server's state has been wiped: what a test deployed before is gone once it changes.
_resets: collections.Counter[str] = collections.Counter()


# What tests pass around where a server's address used to be: moto answers in this process.
IN_PROCESS = "moto:in-process"


@dataclass(frozen=True)
class Aws:
    endpoint: str

    def client(self, service: str, region: str = REGION) -> Any:
        """A client of the test itself, to arrange and inspect what the command did."""
        return _client(self.endpoint, service, region)

    def session(self) -> _Session:
        """A stand-in for the boto3 session the operations take, whose clients are the test's own."""
        return _Session(self)

    @property
    def resets(self) -> int:
        """How many times moto's state has been reset so far in this process."""
        return _resets[self.endpoint]


@dataclass(frozen=True)
class _Session:
    aws: Aws

    def client(self, service: str, region_name: str = REGION) -> Any:
        # One client per service, made once: a command's checks run without building them again.
        return self.aws.client(service, region_name)


@functools.cache
def _client(endpoint: str, service: str, region: str) -> Any:
    # Built once per service: creating a boto3 client costs a tenth of a second.
    return boto3.client(service, region_name=region, aws_access_key_id="testing", aws_secret_access_key="testing")


@contextlib.contextmanager
def account(account_id: str) -> Iterator[None]:
    """Every request moto answers is served by another emulated account while inside: moto reads
    MOTO_ACCOUNT_ID on each request (an account's state is its own)."""
    before = os.environ.get("MOTO_ACCOUNT_ID")
    os.environ["MOTO_ACCOUNT_ID"] = account_id
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MOTO_ACCOUNT_ID", None)
        else:
            os.environ["MOTO_ACCOUNT_ID"] = before


@pytest.fixture(scope="session", autouse=True)
def shared_service_models() -> Iterator[None]:
    """Every botocore session of the test process reads AWS's service models through one loader,
    and every client class of a service gets its operation methods from one table.

    The code under test builds its clients afresh on every run, as a command does once per process;
    each new session would parse the same model files again (most of a client's tenth of a second),
    and each new client would build a method, with its docstring, for every operation of the service
    again (some 700 for EC2), only for the garbage collector to sweep them up after the run. The
    models are read-only data, and a method only calls its client's `_make_api_call` with the
    operation's name, so sharing them changes nothing but the time."""
    import botocore.client
    import botocore.loaders
    import botocore.session

    original = botocore.session.create_loader
    botocore.session.create_loader = functools.cache(botocore.loaders.create_loader)
    create_methods = botocore.client.ClientCreator._create_methods
    tables: dict[tuple[str, int], tuple[Any, dict[str, Any]]] = {}

    def shared_methods(creator: Any, service_model: Any) -> dict[str, Any]:
        model = service_model._service_description  # one object per service: the shared loader's
        key = (service_model.service_name, id(model))
        if key not in tables:
            tables[key] = (model, create_methods(creator, service_model))  # kept, so no other object gets its id
        return dict(tables[key][1])  # a copy: the class's creation may add methods (boto3's for S3)

    botocore.client.ClientCreator._create_methods = shared_methods
    yield
    botocore.client.ClientCreator._create_methods = create_methods
    botocore.session.create_loader = original


class _KeyPairOnFirstUse:
    """The key pair moto keeps for a KMS key, made when GetPublicKey, Sign or Verify first needs it
    rather than when the key is created: moto makes one for every key, an RSA-2048 pair for a
    symmetric key too, and that takes some 40 ms of a CreateKey that otherwise takes one."""

    def __init__(self, make: Any, key_spec: str) -> None:
        self._make, self._key_spec, self._pair = make, key_spec, None

    def __getattr__(self, name: str) -> Any:  # sign, verify, public_key
        if name.startswith("_"):
            raise AttributeError(name)
        if self._pair is None:
            self._pair = self._make(self._key_spec)
        return getattr(self._pair, name)


@pytest.fixture(scope="session", autouse=True)
def moto_endpoint() -> Iterator[str]:
    import moto.kms.models
    from moto import mock_aws

    # Moto answers in this process from the session's start to its end, for every test alike: a test
    # that reaches AWS without asking for it gets moto's answer whatever ran before it. It intercepts
    # requests to AWS endpoints only, and leaves the environment's credentials alone (each test's
    # `environment` sets them), so a test without credentials still finds none. In-process, a call
    # costs a fifth of what a call to moto's server costs.
    before = os.environ.get("MOTO_EC2_LOAD_DEFAULT_AMIS")
    # Keeps the EC2 backend from loading thousands of public AMIs on every reset: the tests name
    # their own image id.
    os.environ["MOTO_EC2_LOAD_DEFAULT_AMIS"] = "false"
    # KMS keys get their key pair when it is first used (see _KeyPairOnFirstUse).
    generate_private_key = moto.kms.models.generate_private_key

    def key_pair_on_first_use(key_spec: str) -> Any:
        return _KeyPairOnFirstUse(generate_private_key, key_spec)

    moto.kms.models.generate_private_key = key_pair_on_first_use
    mock = mock_aws(config={"core": {"mock_credentials": False, "reset_boto3_session": False}})
    mock.start(reset=True)
    yield IN_PROCESS
    mock.stop()
    moto.kms.models.generate_private_key = generate_private_key
    if before is None:
        os.environ.pop("MOTO_EC2_LOAD_DEFAULT_AMIS")
    else:
        os.environ["MOTO_EC2_LOAD_DEFAULT_AMIS"] = before


def _reset(endpoint: str) -> None:
    from moto.core.base_backend import BackendDict
    from moto.core.model_instances import reset_model_data

    BackendDict.reset()
    reset_model_data()  # as moto's own reset does: no model instance outlives its backend
    _resets[endpoint] += 1


def environment(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Aws:
    """An environment whose credentials are moto's only. Without the reset of `aws`, moto's state is
    as the tests before left it: for tests that share what their module deployed
    once, and add only resources of their own, named apart. What was deployed before `Aws.resets`
    changed is gone."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "MOTO_ACCOUNT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)  # AWS's own endpoints: the ones moto answers
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return Aws(endpoint)


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> Aws:
    """A fresh emulated account per test, and an environment whose credentials point at it only."""
    _reset(moto_endpoint)
    return environment(moto_endpoint, monkeypatch)


def act_as_user(aws: Aws, monkeypatch: pytest.MonkeyPatch, allowed_actions: list[str], name: str = "ci") -> Any:
    """From here on, calls are made as an IAM user `name` whose only policy allows `allowed_actions`,
    and moto's IAM decides every call. Returns the IAM client made before the switch."""
    import json

    import moto.settings

    iam: Any = aws.client("iam")
    iam.create_user(UserName=name)
    allowed = {"Effect": "Allow", "Action": allowed_actions, "Resource": "*"}
    iam.put_user_policy(
        UserName=name, PolicyName="only", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [allowed]})
    )
    key = iam.create_access_key(UserName=name)["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    return iam
