"""A real OCI registry on loopback: Debian's ``docker-registry`` (distribution 2.8) with a temp storage dir.

If ``/usr/bin/docker-registry`` is missing, the fixture installs it with apt-get when running as root,
else skips saying how to install it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REGISTRY_BINARY = "/usr/bin/docker-registry"
INSTALL_HINT = "install it with: sudo apt-get install -y docker-registry"


def _ensure_binary() -> str:
    if os.path.exists(REGISTRY_BINARY):
        return REGISTRY_BINARY
    if os.geteuid() != 0:
        pytest.skip(f"{REGISTRY_BINARY} is missing; {INSTALL_HINT}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "docker-registry"]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
        result = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            pytest.fail(f"could not install docker-registry: {result.stderr[-2000:]}")
    return REGISTRY_BINARY


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalRegistry:
    host: str
    #: ``Authorization`` header value the fixture pushes with (registries started with htpasswd auth).
    authorization: str | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def _request(
        self, method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None
    ):
        headers = dict(headers or {})
        if self.authorization:
            headers["Authorization"] = self.authorization
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        return urllib.request.urlopen(request, timeout=10)

    def push_blob(self, repository: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        with self._request("POST", f"{self.url}/v2/{repository}/blobs/uploads/") as response:
            location = response.headers["Location"]
        if location.startswith("/"):
            location = self.url + location
        separator = "&" if "?" in location else "?"
        with self._request(
            "PUT", f"{location}{separator}digest={digest}", data, {"Content-Type": "application/octet-stream"}
        ) as response:
            assert response.status == 201
        return digest

    def push_image(self, repository: str, tag: str, *, label: str = "v1") -> str:
        """Push a minimal OCI image (config blob + manifest) under ``tag``; return the manifest digest."""
        config = json.dumps(
            {"architecture": "amd64", "os": "linux", "config": {"Labels": {"v": label}}}
        ).encode()
        config_digest = self.push_blob(repository, config)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config_digest,
                    "size": len(config),
                },
                "layers": [],
            }
        ).encode()
        with self._request(
            "PUT",
            f"{self.url}/v2/{repository}/manifests/{tag}",
            manifest,
            {"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        ) as response:
            assert response.status == 201
            digest = response.headers["Docker-Content-Digest"]
        assert digest == "sha256:" + hashlib.sha256(manifest).hexdigest()
        return digest


def start_registry(root: Path, *, htpasswd: Path | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``docker-registry serve`` on a free loopback port with storage under ``root``; return
    the process and its ``host:port``. ``htpasswd``: require basic auth with that (bcrypt) file."""
    binary = _ensure_binary()
    port = _free_port()
    config = root / "config.yml"
    auth = f"auth:\n  htpasswd:\n    realm: test-registry\n    path: {htpasswd}\n" if htpasswd else ""
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'storage'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n" + auth
    )
    log_file = (root / "registry.log").open("wb")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log_file, stderr=subprocess.STDOUT)
    log_file.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"{url}/v2/", timeout=1) as response:
                if response.status == 200:
                    break
        except urllib.error.HTTPError as err:
            if err.code == 401 and htpasswd:  # up, and asking for the login
                break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"docker-registry did not start: {(root / 'registry.log').read_text()[-2000:]}")
        time.sleep(0.1)
    return process, f"127.0.0.1:{port}"


def stop_registry(process: subprocess.Popen[bytes], root: Path) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
    shutil.rmtree(root / "storage", ignore_errors=True)


@pytest.fixture(scope="session")
def oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    root: Path = tmp_path_factory.mktemp("registry")
    process, host = start_registry(root)
    try:
        yield LocalRegistry(host=host)
    finally:
        stop_registry(process, root)
