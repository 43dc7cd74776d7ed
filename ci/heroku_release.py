"""Release one image built by shipyard's build job to one Heroku app: copy the exact image from ECR
to the app's Heroku registry image, release it through the Platform API, wait for the release.

Runs in the delivery template's deploy job (python:3-alpine with skopeo); standard library only.

    heroku_release.py [--digest sha256:…] [--dotenv FILE] [--timeout SECONDS]

Without --digest the source is $ECR_REPOSITORY_URL:$CI_COMMIT_SHA (what the build job pushed);
with it, $ECR_REPOSITORY_URL@<digest> (production: the manifest staging released, byte for byte).
The process type released is the last part of $HEROKU_REGISTRY_IMAGE (`…/web`). ECR is read with
the runner's instance role through docker-credential-ecr-login; Heroku's registry with the API key.
Exit codes: 0 released; 1 the copy, the API or the release failed; 2 bad input (missing CI/CD
variables, malformed arguments), nothing done.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

REQUIRED = ("HEROKU_API_KEY", "HEROKU_APP_NAME", "HEROKU_REGISTRY_IMAGE", "ECR_REPOSITORY_URL", "CI_COMMIT_SHA")
# Heroku's registry takes Docker manifest v2 schema 2 only: no OCI manifest, no index (H10).
DOCKER_V2S2 = "application/vnd.docker.distribution.manifest.v2+json"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
RELEASES_API = "application/vnd.heroku+json; version=3"
DOCKER_RELEASES_API = "application/vnd.heroku+json; version=3.docker-releases"


class ReleaseError(Exception):
    """A failure of the deploy itself; the message is the whole story for the job log."""


class BadInput(Exception):
    """Nothing was done: the job's variables or arguments are wrong."""


def fail(message: str) -> None:
    print(f"heroku-release: {message}", file=sys.stderr)


def check_environment(env: dict[str, str], digest: str | None) -> list[str]:
    problems = []
    missing = [name for name in REQUIRED if not env.get(name, "").strip()]
    if missing:
        problems.append(
            "missing CI/CD variable(s): "
            + ", ".join(missing)
            + ". shipyard provisions them: the HEROKU_* ones are scoped to the job's `environment:` (G5), "
            "and production's are protected, so they reach protected branches and tags only (G4)."
        )
    image = env.get("HEROKU_REGISTRY_IMAGE", "").strip()
    if image and not re.match(r"^registry\.heroku\.com/[a-z][a-z0-9-]{1,28}[a-z0-9]/[a-z0-9_-]+$", image):
        problems.append(f"HEROKU_REGISTRY_IMAGE must be registry.heroku.com/<app>/<process>, got {image!r}")
    if digest is not None and not DIGEST.match(digest):
        problems.append(f"--digest must be sha256:<64 hex>, got {digest!r}; it comes from the staging job's dotenv")
    return problems


# --- the registry copy (skopeo) -------------------------------------------------------------------


class Skopeo:
    """skopeo with one credentials file: ECR through the credential helper (the job's instance
    role), Heroku's registry through `skopeo login`."""

    def __init__(self, auth_file: str) -> None:
        self.env = {**os.environ, "REGISTRY_AUTH_FILE": auth_file}

    def run(self, *args: str, stdin: str | None = None) -> bytes:
        data = stdin.encode() if stdin else None
        result = subprocess.run(["skopeo", *args], input=data, capture_output=True, env=self.env)
        # skopeo's own messages never carry the key: it only ever reaches skopeo on stdin.
        if result.returncode != 0:
            raise ReleaseError(f"skopeo {args[0]} failed: {result.stderr.decode(errors='replace').strip()}")
        return result.stdout

    def manifest(self, ref: str) -> tuple[bytes, dict[str, Any]]:
        raw = self.run("inspect", "--raw", f"docker://{ref}")
        try:
            return raw, json.loads(raw)
        except ValueError as exc:
            raise ReleaseError(f"{ref}: the registry returned no JSON manifest") from exc


def releasable(ref: str, manifest: dict[str, Any]) -> str:
    """The image's config digest, which is what Heroku releases (H10)."""
    media_type = manifest.get("mediaType")
    if media_type != DOCKER_V2S2:
        raise ReleaseError(
            f"{ref} is {media_type or 'an unversioned manifest'}, but Heroku's registry accepts only {DOCKER_V2S2}: "
            "build with --platform linux/amd64 --provenance=false --sbom=false and oci-mediatypes=false (H10)"
        )
    config_digest = str(manifest.get("config", {}).get("digest", ""))
    if not DIGEST.match(config_digest):
        raise ReleaseError(f"{ref}: the manifest's config digest {config_digest!r} is not sha256:<64 hex>")
    return config_digest


def copy_image(source: str, target: str, api_key: str) -> tuple[str, str]:
    """Copy source to target unchanged; returns (manifest digest, config digest)."""
    with tempfile.TemporaryDirectory() as folder:
        auth_file = os.path.join(folder, "auth.json")
        with open(auth_file, "w") as handle:
            json.dump({"credHelpers": {source.split("/", 1)[0]: "ecr-login"}}, handle)
        skopeo = Skopeo(auth_file)
        raw, manifest = skopeo.manifest(source)
        manifest_digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        if "@" in source and source.rsplit("@", 1)[1] != manifest_digest:
            raise ReleaseError(f"{source} answered with a manifest of digest {manifest_digest}: not the one asked for")
        config_digest = releasable(source, manifest)
        # The key goes in on stdin: a command-line argument would be visible to every process.
        try:
            skopeo.run("login", "--username", "_", "--password-stdin", target.split("/", 1)[0], stdin=api_key)
        except ReleaseError as exc:
            # The first place an expired or wrong key shows (H9).
            raise ReleaseError(
                f"{exc}. Heroku's registry takes HEROKU_API_KEY as its password: use a long-lived "
                "`heroku authorizations:create` token; `heroku auth:token` expires (H9)."
            ) from None
        # --preserve-digests: fail rather than rewrite the manifest, so the app gets the tested bytes.
        skopeo.run("copy", "--preserve-digests", "--retry-times", "3", f"docker://{source}", f"docker://{target}")
        copied, _ = skopeo.manifest(target)
    if "sha256:" + hashlib.sha256(copied).hexdigest() != manifest_digest:
        raise ReleaseError(f"{target} does not hold the manifest {manifest_digest} after the copy")
    return manifest_digest, config_digest


# --- the Platform API -----------------------------------------------------------------------------


class Heroku:
    def __init__(self, base_url: str, api_key: str, app: str) -> None:
        self.base_url, self.api_key, self.app = base_url.rstrip("/"), api_key, app

    def request(self, method: str, path: str, body: Any = None, accept: str = RELEASES_API, **headers: str) -> Any:
        request = urllib.request.Request(
            f"{self.base_url}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={
                "Accept": accept,
                "Authorization": f"Bearer {self.api_key}",
                "Content-Type": "application/json",
                "User-Agent": "shipyard-heroku-release",
                **headers,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise ReleaseError(self.explain(method, path, exc)) from None
        except (urllib.error.URLError, TimeoutError) as exc:
            raise ReleaseError(f"{method} {path}: Heroku's API did not answer ({exc})") from None

    def explain(self, method: str, path: str, exc: urllib.error.HTTPError) -> str:
        try:
            message = json.loads(exc.read()).get("message", "")
        except ValueError:
            message = ""
        if exc.code == 401:
            return (
                "Heroku refused HEROKU_API_KEY (401). Use a long-lived `heroku authorizations:create` token; "
                "`heroku auth:token` expires (H9)."
            )
        if exc.code == 403:
            return f"HEROKU_API_KEY may not deploy app {self.app} (403): {message}"
        if exc.code == 404:
            return f"{method} {path}: not found (404); does app {self.app} exist? {message}"
        return f"{method} {path} failed ({exc.code}): {message}"

    def latest_release(self) -> dict[str, Any] | None:
        releases = self.request("GET", f"/apps/{self.app}/releases", Range="version ..; max=1, order=desc")
        return releases[0] if releases else None

    def release(self, process: str, config_digest: str) -> None:
        # The docker-releases variant of the formation API releases an image by its config digest (H10).
        self.request(
            "PATCH",
            f"/apps/{self.app}/formation",
            {"updates": [{"type": process, "docker_image": config_digest}]},
            accept=DOCKER_RELEASES_API,
        )

    def output(self, release: dict[str, Any]) -> str:
        """The release phase's output; the stream URL is pre-signed and gets no credentials."""
        url = release.get("output_stream_url")
        if not url:
            return "(Heroku kept no output for this release)"
        try:
            with urllib.request.urlopen(urllib.request.Request(url), timeout=60) as response:
                return str(response.read().decode(errors="replace"))
        except (urllib.error.URLError, TimeoutError) as exc:
            return f"(the release output could not be read: {exc})"


def wait_for_release(heroku: Heroku, after_version: int, timeout: float, interval: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    release: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        if release is None:
            latest = heroku.latest_release()
            if latest is not None and int(latest["version"]) > after_version:
                release = latest
        else:
            release = heroku.request("GET", f"/apps/{heroku.app}/releases/{release['id']}")
        if release is not None and release.get("status") != "pending":
            return release
        time.sleep(interval)
    where = f"release v{release['version']} is still pending" if release else "no release appeared"
    raise ReleaseError(f"{where} after {timeout:.0f} s; see `heroku releases -a {heroku.app}`")


def deploy(args: argparse.Namespace, env: dict[str, str]) -> dict[str, str]:
    problems = check_environment(env, args.digest)
    if problems:
        raise BadInput("\n".join(problems))
    repository = env["ECR_REPOSITORY_URL"].strip()
    source = f"{repository}@{args.digest}" if args.digest else f"{repository}:{env['CI_COMMIT_SHA'].strip()}"
    target, app, api_key = env["HEROKU_REGISTRY_IMAGE"].strip(), env["HEROKU_APP_NAME"].strip(), env["HEROKU_API_KEY"]

    print(f"copying {source} → {target}")
    manifest_digest, config_digest = copy_image(source, target, api_key)
    heroku = Heroku(env.get("HEROKU_API_URL", "https://api.heroku.com"), api_key, app)
    before = heroku.latest_release()
    process = target.rsplit("/", 1)[1]
    print(f"releasing {config_digest} as {process} of {app}")
    heroku.release(process, config_digest)
    release = wait_for_release(heroku, int(before["version"]) if before else 0, args.timeout, args.interval)
    if release.get("status") != "succeeded":
        raise ReleaseError(
            f"release v{release['version']} of {app} {release.get('status')}:\n{heroku.output(release).rstrip()}"
        )
    print(f"released v{release['version']} of {app}: {manifest_digest}")
    return {
        "SHIPYARD_IMAGE_DIGEST": manifest_digest,
        "SHIPYARD_CONFIG_DIGEST": config_digest,
        "SHIPYARD_RELEASE_VERSION": str(release["version"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="heroku-release", description=__doc__.split("\n\n")[0])
    parser.add_argument("--digest", help="release $ECR_REPOSITORY_URL@DIGEST instead of the commit's tag")
    parser.add_argument("--dotenv", help="write SHIPYARD_IMAGE_DIGEST and the release version here")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds to wait for the release")
    parser.add_argument("--interval", type=float, default=5, help="seconds between polls")
    args = parser.parse_args(argv)
    try:
        result = deploy(args, dict(os.environ))
    except BadInput as exc:
        fail(str(exc))
        return 2
    except ReleaseError as exc:
        fail(str(exc))
        return 1
    if args.dotenv:
        with open(args.dotenv, "w") as handle:
            handle.writelines(f"{key}={value}\n" for key, value in result.items())
    return 0


if __name__ == "__main__":
    sys.exit(main())
