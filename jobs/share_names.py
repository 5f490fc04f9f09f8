"""The names and manifest of a run-store entry that is about to be copied, checked before anything is read or
written through them (jobs.share, jobs.remote_fs): the manifest must be of the requested kind and key, list at most
MAX_FILES records of an integer size and a sha256, and each name must be a normalised relative POSIX name inside
the entry, neither hidden nor bookkeeping, never both a file and another file's directory."""

from __future__ import annotations

import json
import re
import typing as tp

from jobs import safefs
from jobs.safefs import UnsafePath
from jobs.store import BOOKKEEPING, MANIFEST

MANIFEST_LIMIT = 16 << 20  # a real manifest lists a few files in a few KB
MAX_FILES = 10_000
MAX_PARTS = 32  # directory levels of a listed name
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class Refused(Exception):
    """An entry that is not copied, with why."""


def _no_twice(pairs: list[tuple[str, tp.Any]]) -> dict[str, tp.Any]:
    out: dict[str, tp.Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"key {k[:200]!r} appears twice")
        out[k] = v
    return out


def check_names(names: tp.Iterable[tp.Any], what: str) -> dict[str, tuple[str, ...]]:
    """{name: parts} of an entry's payload names, each a normalised relative POSIX name that is neither hidden nor
    bookkeeping, and never both a file and another file's directory; Refused naming the first bad one."""
    allowed = ("allowed: a normalised relative POSIX name inside the entry (parts separated by single '/'; no '.', "
               f"'..' or empty part, no leading '/' or '.', no backslash or NUL, at most {MAX_PARTS} parts)")
    out = {}
    for name in names:
        try:
            parts = safefs.check_relpath(name, f"{what}: file name")
        except UnsafePath:
            raise Refused(f"{what}: file name {str(name)[:200]!r} is refused; {allowed}") from None
        if "\\" in name or len(parts) > MAX_PARTS or any(p.startswith(".") for p in parts):
            raise Refused(f"{what}: file name {name[:200]!r} is refused; {allowed}")
        if name in BOOKKEEPING:
            raise Refused(f"{what}: {name!r} is a bookkeeping file of the store, never a result file of an entry")
        out[name] = parts
    dirs = {"/".join(parts[:i]) for parts in out.values() for i in range(1, len(parts))}
    clash = sorted(dirs & set(out))
    if clash:
        raise Refused(f"{what}: {clash[0][:200]!r} is listed both as a file and as the directory of other files")
    return out


def check_manifest(data: bytes, kind: str, key: str, where: str) -> tuple[dict, dict[str, tuple[str, ...]]]:
    """The manifest of entry `kind`/`key` and its payload names split into parts; Refused says what is wrong."""
    what = f"{MANIFEST} in {where}"
    try:
        manifest = json.loads(data.decode("utf-8"), object_pairs_hook=_no_twice)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise Refused(f"{what} is not valid JSON ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise Refused(f"{what} has no file list")
    if manifest.get("kind") != kind or manifest.get("key") != key:
        raise Refused(f"{what} is the manifest of {str(manifest.get('kind'))[:40]}/{str(manifest.get('key'))[:80]}, "
                      f"not of the requested {kind}/{key}: not copied")
    files = manifest["files"]
    if len(files) > MAX_FILES:
        raise Refused(f"{what} lists {len(files)} files, more than the {MAX_FILES} allowed")
    names = check_names(files, what)
    for rel, info in files.items():
        ok = isinstance(info, dict) and type(info.get("size")) is int and info["size"] >= 0 \
            and isinstance(info.get("sha256"), str) and SHA256_RE.match(info["sha256"]) \
            and type(info.get("mtime_ns", 0)) is int
        if not ok:
            raise Refused(f"{what}: the record of {rel!r} needs an integer size >= 0, a sha256 of 64 lowercase hex "
                          "digits and an optional integer mtime_ns")
    return manifest, names
