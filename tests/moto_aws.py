"""AWS for tests: moto's server, a real AWS API emulator, on 127.0.0.1. boto3 reaches it through
AWS_ENDPOINT_URL, so the code under test builds its clients exactly as it does against AWS; no
network, no real credentials."""

from __future__ import annotations

import functools
import logging
import os
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

REGION = "eu-west-1"


@dataclass(frozen=True)
class Aws:
    endpoint: str

    def client(self, service: str, region: str = REGION) -> Any:
        """A client of the test itself, to arrange and inspect what the command did."""
        return _client(self.endpoint, service, region)


@functools.cache
def _client(endpoint: str, service: str, region: str) -> Any:
    # Built once per service: creating a boto3 client costs a tenth of a second.
    return boto3.client(
        service,
        region_name=region,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="session", autouse=True)
def shared_service_models() -> Iterator[None]:
    """Every botocore session of the test process reads AWS's service models through one loader.

    The code under test builds its clients afresh on every run, as a command does once per process;
    each new session would parse the same model files again (most of a client's tenth of a second).
    The models are read-only data, so sharing the loader changes nothing but the time."""
    import botocore.loaders
    import botocore.session

    original = botocore.session.create_loader
    botocore.session.create_loader = functools.cache(botocore.loaders.create_loader)  # type: ignore[assignment]
    yield
    botocore.session.create_loader = original  # type: ignore[assignment]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer  # only where a test needs it: moto is slow to import

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    # The server runs in this process: this keeps its EC2 backend from loading thousands of public
    # AMIs on every reset. The tests name their own image id.
    before = os.environ.get("MOTO_EC2_LOAD_DEFAULT_AMIS")
    os.environ["MOTO_EC2_LOAD_DEFAULT_AMIS"] = "false"
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
    if before is None:
        os.environ.pop("MOTO_EC2_LOAD_DEFAULT_AMIS")
    else:
        os.environ["MOTO_EC2_LOAD_DEFAULT_AMIS"] = before


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> Aws:
    """A fresh emulated account per test, and an environment whose credentials point at it only."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")).close()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "MOTO_ACCOUNT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return Aws(moto_endpoint)
