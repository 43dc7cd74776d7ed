"""The AWS partition facts agree with botocore, the AWS SDK the operations use (P9)."""

from __future__ import annotations

import json
from pathlib import Path

import botocore
import pytest

from infra.facts import aws_partition, load


def test_partition_facts_are_botocores_own() -> None:  # guards P9
    source = json.loads((Path(botocore.__file__).parent / "data" / "partitions.json").read_text())
    expected = [
        {"id": p["id"], "regionRegex": p["regionRegex"], "dnsSuffix": p["outputs"]["dnsSuffix"]}
        for p in source["partitions"]
    ]
    facts = load("aws-partitions")
    assert facts["partitions"] == expected
    assert facts["sources"][0]["ref"] == f"boto/botocore@{botocore.__version__}:botocore/data/partitions.json"


@pytest.mark.parametrize(
    ("region", "partition"),
    [("eu-west-1", "aws"), ("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov"), ("us-iso-east-1", "aws-iso")],
)
def test_a_region_belongs_to_its_partition(region: str, partition: str) -> None:  # guards P9
    assert aws_partition(region)[0] == partition
