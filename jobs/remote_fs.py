"""A run store on a remote filesystem, for `awd-bench store push|pull` through any remote DVC reaches (ssh, s3, gs,
azure, http, webdav, ...): the fsspec filesystem DVC builds for the remote from `dvc remote add|modify`, credentials
included (pipeline/store_cli.py makes it; nothing here imports DVC). The layout is the local store's:
`<remote>/awd-store/<kind>/<key[:2]>/<key>/` with `manifest.json` and the files it lists.

Pull (remote to local) trusts nothing the remote says. The manifest is read size-capped and checked like a local
one (jobs.share_names: its kind and key, every name a normalised relative name inside the entry); the remote entry
is listed once, and each listed name must be a regular file of the manifest's size there: a symbolic link (an ssh
server's; listings report links without following them) is refused, never read through. The bytes are downloaded
into a private temporary directory inside the destination store, hashed on the way, and the entry is renamed in
under its run lock only when every file matches its sha256 (jobs.share.to_dest, as for a path remote).

Push (local to remote) reads the local entry as a path-remote push does (no link followed, manifest checked, each
file hashed while it is uploaded: a local file that does not match its manifest is refused). On the remote the
manifest is the commit mark, as in a local store: an entry whose manifest lists the same files, each there with its
size, is present (sizes, not hashes: a pull verifies every byte); any other has its manifest removed first, its
files written, and its manifest written last, to a temporary name then moved. A reader finds no manifest, or every
file the manifest lists; a pull that overlaps a re-push fails the sha256 check and says which file. The remote's
directories on the way to an entry, and the names a push writes, must not be links (refused, not followed).

What a remote cannot give is a directory fd: on an ssh remote these checks are by path, so someone who may write
the remote's directories could swap one for a link between the check and a write. A remote is as trustworthy as
the people who can write to it (docs/threat-model.md); a pull never trusts it.
"""

from __future__ import annotations

import contextlib
import functools
import posixpath
import typing as tp
import uuid

from jobs.layout import entry_parts
from jobs.share import Missing, Source, hash_stream, local_source, source_entry, to_dest
from jobs.share_names import MANIFEST_LIMIT, Refused, check_manifest
from jobs.store import MANIFEST, RunStore

REMOTE_DIR = "awd-store"


def _child(info: dict) -> str:
    return str(info.get("name", "")).rstrip("/").rsplit("/", 1)[-1]


class RemoteStore:
    """The run-store layout under `root` of the fsspec filesystem `fs`; `url` names that root in messages."""

    def __init__(self, fs: tp.Any, root: str, url: str):
        self.fs, self.root, self.url = fs, root.rstrip("/") or "/", url.rstrip("/")
        self._dirs: set[str] = set()  # paths listed as directories (not links) during this run

    def __repr__(self) -> str:
        return f"RemoteStore({self.url!r})"

    def path(self, kind: str, key: str) -> str:
        return "/".join((self.root, *entry_parts(kind, key)))

    def where(self, kind: str, key: str) -> str:
        return f"{self.url}/{kind}/{key[:2]}/{key}"

    def prepare(self, push: bool) -> None:
        """Reaches the remote once (an unreachable host, refused credentials or missing bucket raise here, once,
        rather than for every entry); a push makes the store's root."""
        if push:
            self.fs.makedirs(self.root, exist_ok=True)
        parent = posixpath.dirname(self.root)
        if parent and parent != self.root:
            self._types(parent)

    def _types(self, path: str) -> dict[str, str]:
        """{name: type} of what `path` holds ({} when it does not exist); a link is listed as a link."""
        self.fs.invalidate_cache(path)  # fsspec caches listings (s3fs does): another member may have pushed
        try:
            return {_child(i): str(i.get("type")) for i in self.fs.ls(path, detail=True)}
        except FileNotFoundError:
            return {}

    def _entry_dir(self, kind: str, key: str) -> bool:
        """Whether the entry's directory exists; Refused when the root, kind, prefix or entry is anything but a
        directory (a link is not followed)."""
        entry = self.path(kind, key)
        steps, path = [], entry
        while path != self.root:
            steps.append(path)
            path = posixpath.dirname(path)
        if posixpath.dirname(self.root) not in ("", self.root):
            steps.append(self.root)
        for path in reversed(steps):
            if path in self._dirs:
                continue
            kind_of = self._types(posixpath.dirname(path)).get(posixpath.basename(path))
            if kind_of is None:
                return False
            if kind_of != "directory":
                raise Refused(f"remote {self.url}: {path} is a {kind_of}, not a directory: not followed")
            if path != entry:  # the entry itself is listed afresh each time: it is what pushes replace
                self._dirs.add(path)
        return True

    def files(self, kind: str, key: str) -> dict[str, dict] | None:
        """{name relative to the entry: listing info} of everything below the entry that is not a directory (links
        are listed, not followed); None when there is no entry."""
        if not self._entry_dir(kind, key):
            return None
        entry = self.path(kind, key)
        self.fs.invalidate_cache(entry)
        found = self.fs.find(entry, detail=True, withdirs=False)
        return {name[len(entry) + 1:]: info for name, info in found.items() if name.startswith(entry + "/")}

    def read_manifest(self, kind: str, key: str, info: dict | None) -> bytes:
        where = self.where(kind, key)
        _regular(where, MANIFEST, info)
        with self.fs.open(f"{self.path(kind, key)}/{MANIFEST}", "rb") as f:
            data = f.read(MANIFEST_LIMIT + 1)
        if len(data) > MANIFEST_LIMIT:
            raise Refused(f"{MANIFEST} in {where} is over {MANIFEST_LIMIT} bytes: not read")
        return bytes(data)

    @contextlib.contextmanager
    def source(self, kind: str, key: str, files: dict[str, dict], rel: str) -> tp.Iterator[Source]:
        try:
            f = self.fs.open(f"{self.path(kind, key)}/{rel}", "rb")
        except FileNotFoundError:
            raise Refused(f"source {self.where(kind, key)}: {rel} is missing") from None
        with f:
            yield Source(f.read, int(files[rel]["size"]), None)


def _regular(where: str, rel: str, info: dict | None, size: int | None = None) -> None:
    if info is None:
        raise Refused(f"source {where}: {rel} is missing")
    if info.get("type") != "file":
        raise Refused(f"source {where}: {rel} is a {info.get('type')} on the remote, not a regular file: not "
                      "followed, not copied")
    if size is not None and info.get("size") != size:
        raise Refused(f"source {where}: {rel} has {info.get('size')} bytes, {MANIFEST} says {size}")


def _pull(src: RemoteStore, dest: RunStore, kind: str, key: str,
          is_live: tp.Callable[[RunStore, str, str], str]) -> int | None:
    where = src.where(kind, key)
    files = src.files(kind, key)
    if not files or MANIFEST not in files:
        raise Missing()
    data = src.read_manifest(kind, key, files[MANIFEST])
    manifest, names = check_manifest(data, kind, key, where)
    for rel, record in manifest["files"].items():
        _regular(where, rel, files.get(rel), record["size"])
    return to_dest(functools.partial(src.source, kind, key, files), where, dest, kind, key, (manifest, data, names),
                   is_live)


def _present(dest: RemoteStore, kind: str, key: str, files: dict[str, dict], manifest: dict) -> bool:
    try:
        theirs, _ = check_manifest(dest.read_manifest(kind, key, files.get(MANIFEST)), kind, key, "the remote")
    except Refused:
        return False
    return theirs["files"] == manifest["files"] and all(
        files.get(rel, {}).get("type") == "file" and files[rel].get("size") == record["size"]
        for rel, record in manifest["files"].items())


def _push(src: RunStore, dest: RemoteStore, kind: str, key: str) -> int | None:
    fs, base, where = dest.fs, dest.path(kind, key), dest.where(kind, key)
    with source_entry(src, kind, key) as (entry_fd, src_where, (manifest, data, names)):
        files = dest.files(kind, key) or {}
        if files and _present(dest, kind, key, files, manifest):
            return None
        for parts in names.values():  # only regular files are overwritten; a link, or a file where a directory
            for i in range(1, len(parts) + 1):  # belongs, is not written through
                there = files.get("/".join(parts[:i]))
                if there is not None and (i < len(parts) or there.get("type") != "file"):
                    raise Refused(f"destination {where}: {'/'.join(parts[:i])} is a {there.get('type')} on the "
                                  "remote: not followed, not replaced")
        if MANIFEST in files:
            fs.rm_file(f"{base}/{MANIFEST}")  # no reader takes the entry for complete while its files change
        total, made = 0, set()
        for rel, parts in sorted(names.items()):
            parent = "/".join([base, *parts[:-1]])
            if parent not in made:
                fs.makedirs(parent, exist_ok=True)
                made.add(parent)
            record = manifest["files"][rel]
            with local_source(entry_fd, src_where, rel) as local:
                ok = local.size == record["size"]
                if ok:
                    with fs.open(f"{base}/{rel}", "wb") as f:
                        ok = hash_stream(local.read, record["size"], f.write) == record["sha256"]
            if not ok:  # written all the same (an upload cannot be abandoned halfway everywhere): taken back
                with contextlib.suppress(OSError):
                    fs.rm_file(f"{base}/{rel}")
                raise Refused(f"source {src_where}: {rel} does not match its sha256 in {MANIFEST}: not pushed")
            total += record["size"]
        fs.makedirs(base, exist_ok=True)
        tmp = f"{base}/.{MANIFEST}.{uuid.uuid4().hex[:8]}"
        with fs.open(tmp, "wb") as f:
            f.write(data)
        fs.mv(tmp, f"{base}/{MANIFEST}")
        return total


def copy_one(src: RunStore | RemoteStore, dest: RunStore | RemoteStore, kind: str, key: str,
             is_live: tp.Callable[[RunStore, str, str], str]) -> int | None:
    """jobs.share.copy_entries for one key when one side is remote: bytes copied, None when present; Missing;
    Refused with why (whatever a remote's client raises included, named with its type)."""
    try:
        if isinstance(src, RemoteStore) and isinstance(dest, RunStore):
            return _pull(src, dest, kind, key, is_live)
        if isinstance(src, RunStore) and isinstance(dest, RemoteStore):
            return _push(src, dest, kind, key)
    except (Missing, Refused, OSError, ValueError):
        raise
    except Exception as e:  # a remote's client raises its own kinds (botocore, asyncssh, aiohttp): each one means
        # "this key did not travel"; the next key is tried
        remote = src.where(kind, key) if isinstance(src, RemoteStore) else tp.cast(RemoteStore, dest).where(kind, key)
        raise Refused(f"remote {remote}: {type(e).__name__}: {str(e)[:300]}") from None
    raise ValueError("store: a copy needs a local run store on one side (push: local to remote; pull: remote to "
                     "local)")
