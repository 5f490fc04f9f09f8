"""The loopback ssh and S3 servers of scripts/test-services.sh, for tests marked `services`.

    from tests.services_util import services  # noqa: F401  (the fixture)

`services` skips the test when the servers do not answer, unless AWD_REQUIRE_SERVICES=1 (CI sets it after
`scripts/test-services.sh start`), in which case their absence fails it. The settings come from the env file the
script writes ($AWD_SERVICES_DIR/env, default /var/lib/awd-services/env).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import urllib.request
import uuid
from pathlib import Path

import pytest

START_HINT = "start them with `scripts/test-services.sh start` (as root)"


@dataclasses.dataclass(frozen=True)
class Services:
    ssh_host: str
    ssh_port: int
    ssh_user: str
    ssh_home: str  # the ssh user's home on the server (this machine): remotes go below it
    ssh_key: str
    s3_endpoint: str

    def ssh(self, command: str) -> str:
        """Runs `command` on the ssh server as its user (how a test plants files there, whoever runs the tests)."""
        import asyncssh

        async def go() -> str:
            async with asyncssh.connect(self.ssh_host, port=self.ssh_port, username=self.ssh_user,
                                        client_keys=[self.ssh_key], known_hosts=None) as conn:
                return str((await conn.run(command, check=True)).stdout)

        return asyncio.run(go())

    def ssh_fs(self):  # DVC's ssh filesystem (dvc-ssh), as a `dvc remote modify` of these settings builds it
        from dvc_ssh import SSHFileSystem

        return SSHFileSystem(host=self.ssh_host, port=self.ssh_port, user=self.ssh_user, keyfile=self.ssh_key)

    def s3_fs(self):  # DVC's s3 filesystem (dvc-s3); the server takes any credentials
        from dvc_s3 import S3FileSystem

        return S3FileSystem(endpointurl=self.s3_endpoint, access_key_id="awd", secret_access_key="awd-test")

    def new_bucket(self) -> str:
        name = f"awd-{uuid.uuid4().hex[:10]}"
        self.s3_fs().fs.mkdir(name)
        return name

    def remote_config(self, kind: str, path: str) -> tuple[str, dict[str, str]]:
        """A DVC remote url for `path` on the server and the `dvc remote modify` options that reach it."""
        if kind == "ssh":
            return (f"ssh://{self.ssh_host}{path}",
                    {"port": str(self.ssh_port), "user": self.ssh_user, "keyfile": self.ssh_key})
        return f"s3://{path}", {"endpointurl": self.s3_endpoint, "access_key_id": "awd", "secret_access_key": "t"}


def env_file() -> Path:
    return Path(os.environ.get("AWD_SERVICES_DIR", "/var/lib/awd-services")) / "env"


def _answers(host: str, port: int, what: str) -> bool:
    try:
        if what == "ssh":
            with socket.create_connection((host, port), timeout=3) as s:
                return s.recv(64).startswith(b"SSH-2.0-")
        with urllib.request.urlopen(f"http://{host}:{port}/", timeout=3) as r:
            return b"ListAllMyBucketsResult" in r.read()
    except OSError:
        return False


def probe() -> tuple[Services | None, str]:
    """(the servers, "") when both answer, else (None, why not)."""
    try:
        pairs = dict(line.split("=", 1) for line in env_file().read_text().splitlines() if "=" in line)
        found = Services(pairs["AWD_SSH_HOST"], int(pairs["AWD_SSH_PORT"]), pairs["AWD_SSH_USER"],
                         pairs["AWD_SSH_HOME"], pairs["AWD_SSH_KEY"], pairs["AWD_S3_ENDPOINT"])
    except (OSError, KeyError, ValueError) as e:
        return None, f"no usable {env_file()} ({type(e).__name__}: {e})"
    if not _answers(found.ssh_host, found.ssh_port, "ssh"):
        return None, f"no ssh server answers on {found.ssh_host}:{found.ssh_port}"
    host, port = found.s3_endpoint.removeprefix("http://").rsplit(":", 1)
    if not _answers(host, int(port), "s3"):
        return None, f"no S3 server answers on {found.s3_endpoint}"
    if not os.access(found.ssh_key, os.R_OK):
        return None, f"the test key {found.ssh_key} is not readable by uid {os.getuid()}"
    return found, ""


@pytest.fixture(scope="session")
def services() -> Services:
    found, why = probe()
    if found is None:
        if os.environ.get("AWD_REQUIRE_SERVICES", "") == "1":
            pytest.fail(f"AWD_REQUIRE_SERVICES=1 but the test servers are not usable: {why}; {START_HINT}")
        pytest.skip(f"test servers not usable: {why}; {START_HINT} (AWD_REQUIRE_SERVICES=1 turns this into a failure)")
    return found
