"""The unit lists of recent commits, for `awd-bench gc`: read from the DVC cache by the hashes each commit's
dvc.lock records, without DVC's data index.

Asking DVC for a file of an old revision (`dvc.api.read`) builds the revision's data index: a second or more per
list, and on a clone that never ran or pulled that revision one `DataIndexDirError` per list. Here a commit's
dvc.lock gives the list's md5 (a dependency entry of a later stage, or the stage's output directory listing), and
the object is read from the cache directly. Lists the cache lacks are fetched through DVC only when a remote is
set; otherwise the commit is reported once, by name, as not in this clone's cache.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

OBJECT_LIMIT = 256 << 20  # a unit list of paper scale is a few MB


@dataclasses.dataclass
class CommitLists:
    texts: dict[str, dict[str, str]]  # commit -> {list path: its text}
    uncached: list[str]  # commits whose lists neither the cache nor a remote had (short shas)
    unreadable: list[str]  # "<sha>:<path> (why)"
    predating: dict[str, set[str]]  # list path -> commits whose lock has the stage but not that list (older layout)


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=120)


def _lock_hashes(lock: dict) -> tuple[dict[str, str], dict[str, str]]:
    """(file path -> md5, directory path -> md5 of its listing) of every dep and out a dvc.lock records."""
    files: dict[str, str] = {}
    dirs: dict[str, str] = {}
    for stage in (lock.get("stages") or {}).values():
        for entry in (stage.get("deps") or []) + (stage.get("outs") or []):
            md5, path = entry.get("md5"), entry.get("path")
            if isinstance(md5, str) and isinstance(path, str):
                (dirs if md5.endswith(".dir") else files)[path] = md5
    return files, dirs


class _Cache:
    def __init__(self, root: Path):
        from dvc.repo import Repo

        self.repo = Repo(str(root))
        self.remote = self.repo.config["core"].get("remote")

    def read(self, md5: str) -> bytes | None:
        for odb in (self.repo.cache.local, self.repo.cache.legacy):
            path = Path(odb.oid_to_path(md5))
            if path.is_file() and path.stat().st_size <= OBJECT_LIMIT:
                return path.read_bytes()
        return None

    def close(self) -> None:
        self.repo.close()


def _listed_md5(rel: str, files: dict[str, str], dirs: dict[str, str], cache: _Cache) -> str | None:
    if rel in files:
        return files[rel]
    for out, md5 in dirs.items():
        if rel.startswith(f"{out}/"):
            listing = cache.read(md5)
            if listing is None:
                return "?"  # the directory's listing is not cached either
            entries = {e.get("relpath"): e.get("md5") for e in json.loads(listing) if isinstance(e, dict)}
            return entries.get(rel[len(out) + 1:])
    return None


def read_commit_lists(root: Path, n: int, rels: list[str]) -> CommitLists:
    """The texts of `rels` (unit list paths) in the last `n` commits that have a dvc.lock."""
    out = CommitLists({}, [], [], {})
    shas = _git(root, "rev-list", "-n", str(n), "HEAD").stdout.split()
    cache: _Cache | None = None
    try:
        for sha in shas:
            shown = _git(root, "show", f"{sha}:dvc.lock")
            if shown.returncode != 0:
                continue  # nothing reproduced at that commit
            try:
                # as DVC wrote it: YAML 1.2 by ruamel
                files, dirs = _lock_hashes(YAML(typ="safe", pure=True).load(shown.stdout) or {})
            except YAMLError as e:
                out.unreadable.append(f"{sha[:7]}:dvc.lock ({str(e).splitlines()[0][:120]})")
                continue
            cache = cache or _Cache(root)
            texts, missing = {}, False
            for rel in rels:
                md5 = _listed_md5(rel, files, dirs, cache)
                if md5 is None:  # the stage did not run at that commit, or wrote no such list yet
                    if any(rel.startswith(f"{d}/") for d in dirs):
                        out.predating.setdefault(rel, set()).add(sha[:7])
                    continue
                data = cache.read(md5) if md5 != "?" else None
                if data is None and cache.remote:
                    data = _from_remote(root, sha, rel, out)
                    if data is None:
                        continue  # reported as unreadable, with the remote's answer
                if data is None:
                    missing = True
                    continue
                texts[rel] = data.decode(errors="replace")
            out.texts[sha[:7]] = texts
            if missing:
                out.uncached.append(sha[:7])
    finally:
        if cache is not None:
            cache.close()
    return out


def _from_remote(root: Path, sha: str, rel: str, out: CommitLists) -> bytes | None:
    import dvc.api

    try:
        return dvc.api.read(rel, repo=str(root), rev=sha, mode="rb")
    except Exception as e:  # noqa: BLE001 - DVC raises many kinds; each means "the remote has it not"
        out.unreadable.append(f"{sha[:7]}:{rel} (not in the DVC cache, nor read from the remote: {type(e).__name__})")
        return None
