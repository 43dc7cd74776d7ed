"""A stand-in for `cosign verify` 2.4.3 over the stubs' registry (_state.py), answering as
infra/facts/cosign.yaml says cosign does: the public key from --key (env://NAME, or a file), the
signatures from the image's `sha256-<hex>.sig` tag, registry credentials found as cosign finds them
(DOCKER_CONFIG, ~/.docker/config.json, REGISTRY_AUTH_FILE), its messages on stderr, its exit codes.

A signature here is a stand-in for ECDSA: base64(sha256(public key PEM + "\\n" + payload)), so it
verifies with the key it was made for and with no other. `sign()` writes one the way `cosign sign`
stores it (payload blob, signature manifest, `.sig` tag); the tests call it to set up the registry.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.realpath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))

from tests.ci.stubs._state import facts, is_file, log, read, write

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

COSIGN = facts("cosign")
VERIFY = COSIGN["verify"]
MESSAGES = VERIFY["messages"]
EXIT = VERIFY["exit_codes"]
SIGNATURE = COSIGN["signature"]


def signature_tag(digest: str) -> str:
    return SIGNATURE["tag"].format(hex=digest.split(":", 1)[1])


def payload(repository: str, digest: str) -> bytes:
    claim = json.loads(json.dumps(SIGNATURE["payload"]).replace("{repository}", repository).replace("{digest}", digest))
    return json.dumps(claim, separators=(",", ":")).encode()


def stand_in_signature(public_key: str, signed: bytes) -> str:
    return base64.b64encode(hashlib.sha256(public_key.strip().encode() + b"\n" + signed).digest()).decode()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sign(repository: str, digest: str, public_key: str, claimed: str | None = None) -> None:
    """Store a signature of repository@digest made with the key whose public half is `public_key`,
    as `cosign sign` does; `claimed` puts another digest in the signed payload."""
    signed = payload(repository, claimed or digest)
    write(f"{repository}/blobs@{sha256(signed)}", signed)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2, "digest": sha256(b"{}")},
        "layers": [
            {
                "mediaType": SIGNATURE["layer_media_type"],
                "size": len(signed),
                "digest": sha256(signed),
                "annotations": {SIGNATURE["annotation"]: stand_in_signature(public_key, signed)},
            }
        ],
    }
    raw = json.dumps(manifest).encode()
    write(f"{repository}@{sha256(raw)}", raw)
    write(f"{repository}:{signature_tag(digest)}", sha256(raw))


def fail(message: str, code: int) -> int:
    # cobra prints the error, then cosign's main logs it with Go's default log prefix.
    print(f"Error: {message}", file=sys.stderr)
    print(f"{time.strftime('%Y/%m/%d %H:%M:%S')} error during command execution: {message}", file=sys.stderr)
    return code


def read_json(path: str) -> Any:
    with open(path) as handle:
        return json.load(handle)


def credentials() -> dict[str, Any]:
    """The registry credentials cosign's default keychain reads (go-containerregistry)."""
    home = os.path.join(os.environ.get("HOME", "/nonexistent"), ".docker", "config.json")
    docker_config = os.environ.get("DOCKER_CONFIG", "")
    if os.path.isfile(home) or (docker_config and os.path.isfile(os.path.join(docker_config, "config.json"))):
        path = os.path.join(docker_config, "config.json") if docker_config else home
    elif os.environ.get("REGISTRY_AUTH_FILE") and os.path.isfile(os.environ["REGISTRY_AUTH_FILE"]):
        path = os.environ["REGISTRY_AUTH_FILE"]
    else:
        return {}
    return read_json(path) if os.path.isfile(path) else {}


def public_key(ref: str) -> str | None:
    if ref.startswith("env://"):
        return os.environ.get(ref[len("env://") :])
    if not os.path.isfile(ref):
        return None
    with open(ref) as handle:
        return handle.read()


def verify(args: list[str]) -> int:
    key, ignore_tlog, images = "", False, []
    while args:
        arg = args.pop(0)
        if arg == "--key":
            key = args.pop(0)
        elif arg.startswith("--key="):
            key = arg.split("=", 1)[1]
        elif arg in ("--insecure-ignore-tlog", "--insecure-ignore-tlog=true"):
            ignore_tlog = True
        elif arg == "--insecure-ignore-tlog=false":
            ignore_tlog = False
        elif arg.startswith("-"):
            return fail(f"unknown flag: {arg.split('=', 1)[0]}", EXIT["other"])
        else:
            images.append(arg)
    if not images:
        return fail("requires at least 1 arg(s), only received 0", EXIT["other"])
    if ignore_tlog:
        print(VERIFY["ignore_tlog_warning"], file=sys.stderr)
    pem = public_key(key)
    if pem is None:
        return fail(MESSAGES["key_variable_unset"].replace("{variable}", key.split("://", 1)[-1]), EXIT["other"])
    if f"-----BEGIN {VERIFY['public_key_pem_type']}-----" not in pem:
        return fail(MESSAGES["key_not_pem"], EXIT["other"])
    for image in images:
        repository, digest = image.rsplit("@", 1)
        registry, name = repository.split("/", 1)
        tag = signature_tag(digest)
        known = credentials()
        if registry not in known.get("auths", {}) and not known.get("credHelpers", {}).get(registry):
            message = VERIFY["registry_unauthorized"].format(registry=registry, name=name, tag=tag)
            return fail(message, EXIT["other"])
        tagged = f"{repository}:{tag}"
        if not is_file(tagged):
            return fail(MESSAGES["no_signature"], EXIT["no_signature"])
        manifest = json.loads(read(f"{repository}@{read(tagged).decode()}"))
        reasons, verified = [], []
        for layer in manifest["layers"]:
            signed = read(f"{repository}/blobs@{layer['digest']}")
            claimed = json.loads(signed)["critical"]["image"]["docker-manifest-digest"]
            if not ignore_tlog:
                reasons.append(MESSAGES["not_in_tlog"])
            elif layer["annotations"][SIGNATURE["annotation"]] != stand_in_signature(pem, signed):
                reasons.append(MESSAGES["other_key"])
            elif claimed != digest:
                reasons.append(MESSAGES["other_digest"].format(digest=claimed))
            else:
                verified.append(json.loads(signed))
        if not verified:
            message = MESSAGES["no_matching_signature"].format(reasons="\n ".join(reasons))
            return fail(message, EXIT["no_matching_signature"])
        print("\n" + "\n".join(VERIFY["verified_header"]).format(repository=repository, digest=digest), file=sys.stderr)
        print(json.dumps(verified))
    return 0


def main(args: list[str]) -> int:
    config = os.path.join(os.environ.get("DOCKER_CONFIG", "/nonexistent"), "config.json")
    log("cosign", args, docker_config=read_json(config) if os.path.isfile(config) else None)
    if not args or args[0] != "verify":
        return fail(f'unknown command "{args[0] if args else ""}" for "cosign"', EXIT["other"])
    return verify(args[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
