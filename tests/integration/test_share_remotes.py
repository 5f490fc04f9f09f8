"""`awd-bench store push|pull` through DVC's filesystems, against a real ssh server and a real S3 server on loopback
(scripts/test-services.sh; the `services` fixture skips without them unless AWD_REQUIRE_SERVICES=1).

The remote is as hostile here as a shared path is in tests/security/test_share_attacks.py: whatever can be written
to it (bytes that differ from the manifest, a manifest of another entry, a name that leaves the entry, a link on the
ssh server) is written with the remote's own client, and the copy must refuse it and land nothing. The end-to-end
flow (a fresh clone pulls from an ssh and an s3 remote, then `dvc repro` computes nothing) is in test_e2e_travel.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import typing as tp
import uuid

import pytest

from jobs.remote_fs import RemoteStore
from jobs.share import copy_entries
from jobs.store import RunStore
from tests.services_util import Services, services  # noqa: F401  (the fixture)

KEY = "ab" + "12" * 31
OTHER = "cd" + "34" * 31


@pytest.fixture
def local(tmp_path) -> RunStore:
    store = RunStore(tmp_path / "local")
    work = store.workdir("train", KEY)
    (work / "model.pt").write_bytes(os.urandom(3 << 20))  # above SMALL_FILE, and several chunks
    (work / "sub").mkdir()
    (work / "sub" / "history.json").write_text("[0.5]")
    store.commit("train", KEY, {"acc": 0.5})
    return store


class Remote:
    """A fresh run store on the ssh or S3 server, with the raw filesystem to tamper with it."""

    def __init__(self, services: Services, kind: str):
        self.kind = kind
        if kind == "ssh":
            self.base = f"{services.ssh_home}/remote-{uuid.uuid4().hex[:8]}"
            self.fs = services.ssh_fs().fs
        else:
            self.base = f"{services.new_bucket()}/campaign"
            self.fs = services.s3_fs().fs
        self.store = RemoteStore(self.fs, f"{self.base}/awd-store", f"{kind}://{self.base}/awd-store")

    def entry(self, key: str = KEY, kind: str = "train") -> str:
        return self.store.path(kind, key)

    def put(self, path: str, data: bytes) -> None:
        self.fs.pipe_file(path, data)
        self.fs.invalidate_cache()

    def remove(self, services: Services) -> None:
        if self.kind == "ssh":
            services.ssh(f"rm -rf {self.base}")
        else:
            self.fs.rm(self.base.split("/")[0], recursive=True)


@pytest.fixture(params=["ssh", "s3"])
def remote(request, services) -> tp.Iterator[Remote]:
    made = Remote(services, request.param)
    yield made
    made.remove(services)


def copy(src, dest, keys=(("train", KEY),)):
    return copy_entries(src, dest, list(keys))


@pytest.mark.services
def test_push_then_pull_verifies_every_byte_and_a_second_copy_finds_the_entry_present(local, remote, tmp_path):
    pushed = copy(local, remote.store, [("train", KEY), ("train", OTHER)])
    assert pushed.copied == [("train", KEY)] and pushed.missing == [("train", OTHER)] and pushed.refused == []
    assert pushed.bytes == sum(i["size"] for i in local.manifest("train", KEY)["files"].values())
    listed = sorted(p[len(remote.entry()) + 1:] for p in remote.fs.find(remote.entry()))
    assert listed == ["manifest.json", "model.pt", "result.json", "sub/history.json"]  # nothing else travels
    assert copy(local, remote.store).present == [("train", KEY)]

    dest = RunStore(tmp_path / "dest")
    pulled = copy(remote.store, dest, [("train", KEY), ("train", OTHER)])
    assert pulled.copied == [("train", KEY)] and pulled.missing == [("train", OTHER)] and pulled.refused == []
    assert dest.is_done("train", KEY, verify=True)
    assert dest.manifest("train", KEY) == local.manifest("train", KEY)
    entry = dest.path("train", KEY)
    for rel, info in local.manifest("train", KEY)["files"].items():  # the manifest's mtimes: cheap checks pass
        assert (entry / rel).read_bytes() == (local.path("train", KEY) / rel).read_bytes()
        assert (entry / rel).stat().st_mtime_ns == info["mtime_ns"]
    assert sorted(os.listdir(entry.parent)) == [KEY]  # no temporary left beside it
    assert copy(remote.store, dest).present == [("train", KEY)]


@pytest.mark.services
def test_remote_bytes_that_differ_from_the_manifest_are_refused_and_nothing_lands(local, remote, tmp_path):
    copy(local, remote.store)
    remote.put(f"{remote.entry()}/sub/history.json", b"[0.9]")  # same size, other bytes
    dest = RunStore(tmp_path / "dest")
    out = copy(remote.store, dest)
    assert out.copied == [] and "sub/history.json does not match its sha256" in out.refused[0][2], out
    assert os.listdir(dest.path("train", KEY).parent) == []

    remote.put(f"{remote.entry()}/sub/history.json", b"[0.55]")  # another size: refused before any download
    out = copy(remote.store, dest)
    assert "sub/history.json has 6 bytes, manifest.json says 5" in out.refused[0][2], out


def manifest_for(files: dict[str, bytes], kind: str = "train", key: str = KEY) -> bytes:
    records = {rel: {"size": len(b), "sha256": hashlib.sha256(b).hexdigest(), "mtime_ns": 1}
               for rel, b in files.items()}
    return json.dumps({"kind": kind, "key": key, "meta": {}, "files": records}).encode()


@pytest.mark.services
@pytest.mark.parametrize("forged", ["other key", "other kind", "leaves the entry", "bookkeeping", "too big"])
def test_a_remote_manifest_that_is_not_this_entrys_is_refused(remote, tmp_path, forged):
    payload = b"import os\n"
    target = tmp_path / "dest" / "evil.pth"
    rel = os.path.relpath(target, tmp_path / "dest" / "train" / KEY[:2] / f".{KEY}.incoming.x")
    files, kind, key, message = {"result.json": b"{}"}, "train", KEY, ""
    if forged == "other key":
        key, message = OTHER, f"is the manifest of train/{OTHER}, not of the requested train/{KEY}"
    elif forged == "other kind":
        kind, message = "prune", f"is the manifest of prune/{KEY}, not of the requested train/{KEY}"
    elif forged == "leaves the entry":
        files[rel], message = payload, "is refused; allowed: a normalised relative POSIX name"
    elif forged == "bookkeeping":
        files["job.json"], message = b"{}", "'job.json' is a bookkeeping file of the store"
    for name, data in files.items():
        if ".." not in name:
            remote.put(f"{remote.entry()}/{name}", data)
    data = manifest_for(files, kind, key)
    if forged == "too big":
        data, message = data[:-1] + b" " * (16 << 20) + b"}", "is over 16777216 bytes: not read"
    remote.put(f"{remote.entry()}/manifest.json", data)

    dest = RunStore(tmp_path / "dest")
    out = copy(remote.store, dest)
    assert out.copied == [] and len(out.refused) == 1 and message in out.refused[0][2], out
    assert not target.exists() and not dest.path("train", KEY).exists()


@pytest.mark.services
def test_an_interrupted_push_is_completed_by_the_next_and_a_tampered_local_file_is_not_pushed(local, remote,
                                                                                               tmp_path):
    copy(local, remote.store)
    remote.fs.rm_file(f"{remote.entry()}/manifest.json")  # as a push cut short leaves it: files, no manifest
    remote.fs.invalidate_cache()
    assert copy(remote.store, RunStore(tmp_path / "early")).missing == [("train", KEY)]
    assert copy(local, remote.store).copied == [("train", KEY)]
    assert copy(remote.store, RunStore(tmp_path / "dest")).copied == [("train", KEY)]

    other = RunStore(tmp_path / "other")  # the same key, rebuilt elsewhere with other bytes: a differing entry
    (other.workdir("train", KEY) / "model.pt").write_bytes(b"retrained")
    other.commit("train", KEY, {"acc": 0.6})
    (other.path("train", KEY) / "model.pt").write_bytes(b"tampered!")  # same size, not what its manifest says
    out = copy(other, remote.store)
    assert out.copied == [] and "model.pt does not match its sha256 in manifest.json: not pushed" in out.refused[0][2]
    remote.fs.invalidate_cache()
    assert not remote.fs.exists(f"{remote.entry()}/manifest.json")  # taken off first: no reader takes it as done
    assert copy(remote.store, RunStore(tmp_path / "late")).missing == [("train", KEY)]
    assert copy(local, remote.store).copied == [("train", KEY)]  # and the next push puts it back


@pytest.fixture
def ssh_remote(services) -> tp.Iterator[Remote]:
    made = Remote(services, "ssh")
    yield made
    made.remove(services)


@pytest.mark.services
def test_a_link_on_the_ssh_remote_is_never_read_through_on_pull(local, ssh_remote, services, tmp_path):
    """A listed file replaced by a link to a server file with the very bytes the manifest names: refused all the
    same (a copy takes regular files only, wherever it reads them)."""
    copy(local, ssh_remote.store)
    model = f"{ssh_remote.entry()}/model.pt"
    services.ssh(f"cp {model} {ssh_remote.base}/elsewhere.pt && ln -sf {ssh_remote.base}/elsewhere.pt {model}")
    dest = RunStore(tmp_path / "dest")
    out = copy(ssh_remote.store, dest)
    assert out.copied == [] and "model.pt is a link on the remote, not a regular file" in out.refused[0][2], out
    assert not dest.root.exists()  # refused from the listing: nothing was downloaded


@pytest.mark.services
def test_a_push_never_writes_through_a_link_on_the_ssh_remote(local, ssh_remote, services):
    """The push's way into the remote (a prefix directory) and a file it would overwrite, each replaced by a link to
    a file or directory of the ssh user's (their authorized_keys, say): nothing is written there."""
    canary = f"{ssh_remote.base}/canary"
    services.ssh(f"mkdir -p {ssh_remote.base}/elsewhere {ssh_remote.store.root}/train && echo precious > {canary} "
                 f"&& ln -s {ssh_remote.base}/elsewhere {ssh_remote.store.root}/train/ab")
    out = copy(local, ssh_remote.store)
    assert out.copied == [] and "train/ab is a link, not a directory: not followed" in out.refused[0][2], out
    assert services.ssh(f"ls -A {ssh_remote.base}/elsewhere") == ""

    services.ssh(f"rm {ssh_remote.store.root}/train/ab && mkdir -p {ssh_remote.entry()} && "
                 f"ln -s {canary} {ssh_remote.entry()}/model.pt")
    ssh_remote.store = RemoteStore(ssh_remote.fs, ssh_remote.store.root, ssh_remote.store.url)  # a new run
    out = copy(local, ssh_remote.store)
    assert out.copied == [] and "model.pt is a link on the remote: not followed, not replaced" in out.refused[0][2]
    assert services.ssh(f"cat {canary}") == "precious\n"
    assert services.ssh(f"ls -A {ssh_remote.entry()}") == "model.pt\n"  # no manifest: not taken for done


def store_cli(repo, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "import sys; from pipeline.store_cli import remote_store; "
                           "from pathlib import Path; print(repr(remote_store(Path('.'), sys.argv[1])))", *args],
                          cwd=repo, capture_output=True, text=True, env={**os.environ, "DVC_NO_ANALYTICS": "1"})


def dvc(repo, *args: str) -> None:
    subprocess.run([os.path.join(os.path.dirname(sys.executable), "dvc"), *args], cwd=repo, check=True,
                   capture_output=True, env={**os.environ, "DVC_NO_ANALYTICS": "1"})


@pytest.fixture
def dvc_repo(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    dvc(repo, "init", "-q")
    return repo


@pytest.mark.services
def test_the_remote_is_dvcs_own_with_the_options_and_credentials_dvc_remote_modify_gave_it(dvc_repo, services):
    url, options = services.remote_config("ssh", f"{services.ssh_home}/r")
    dvc(dvc_repo, "remote", "add", "lab", url)
    for option, value in options.items():
        dvc(dvc_repo, "remote", "modify", *(["--local"] if option == "keyfile" else []), "lab", option, value)
    out = store_cli(dvc_repo, "lab")
    assert out.returncode == 0 and out.stdout.strip() == f"RemoteStore('{url}/awd-store')", out.stderr

    dvc(dvc_repo, "remote", "modify", "--local", "lab", "keyfile", str(dvc_repo / "no-such-key"))
    out = store_cli(dvc_repo, "lab")
    assert out.returncode != 0 and f"DVC remote 'lab' ({url}) does not answer" in out.stderr, out.stderr


def test_a_remote_type_whose_dvc_plugin_is_missing_or_that_cannot_list_is_refused_saying_why(dvc_repo):
    dvc(dvc_repo, "remote", "add", "gcs", "gs://bucket/path")
    out = store_cli(dvc_repo, "gcs")
    assert out.returncode != 0 and "DVC remote 'gcs' (gs://bucket/path) cannot be used" in out.stderr, out.stderr
    assert "dvc-gs" in out.stderr or "dvc[gs]" in out.stderr, out.stderr
    dvc(dvc_repo, "remote", "add", "web", "https://example.org/awd")
    out = store_cli(dvc_repo, "web")
    assert out.returncode != 0 and "StoreCliError: DVC remote 'web' is https://example.org/awd: an http(s) remote " \
        "cannot list what it holds" in out.stderr, out.stderr
    out = store_cli(dvc_repo, "nope")
    assert "no DVC remote named 'nope'; known: gcs, web" in out.stderr, out.stderr
