"""The policy pack that `pulumi preview|up --policy-pack policy` runs. It only builds the pack:
constructing a PolicyPack starts the analyzer server and blocks (P3), so nothing imports this
module; the validators live in policy/policies.py, where the tests and `shipyard policy check`
use them."""

from pulumi_policy import EnforcementLevel, PolicyPack

from policy.policies import pack_policies

PolicyPack(name="shipyard", policies=pack_policies(), enforcement_level=EnforcementLevel.MANDATORY)
