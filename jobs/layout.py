"""The run store's layout, `<kind>/<key[:2]>/<key>/`, read without trusting what group members put in it.

`scan_store(root)` yields the entries, and everything else found where entries belong: a symbolic link (reported,
never followed), a name that is not a key or a key prefix, a file where a directory belongs, a directory that
cannot be read. Names starting with '.' are the store's own temporaries (renamed-away entries, incoming copies)
and are left out; `_...` folders at the top (`_logs`, `_quarantine`, `_code`) are not entries.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import typing as tp
from pathlib import Path

from jobs import safefs
from jobs.keys import KIND_RE

KEY_MIN_LEN = 8
PREFIX_RE = re.compile(r"^[0-9a-f]{2}$")


def is_key(name: str) -> bool:
    return isinstance(name, str) and len(name) >= KEY_MIN_LEN and all(c in "0123456789abcdef" for c in name)


def entry_parts(kind: str, key: str) -> tuple[str, str, str]:
    """(kind, key[:2], key): an entry's place under any store root, local or remote; ValueError for a kind or key
    that could leave it."""
    if not isinstance(kind, str) or not KIND_RE.match(kind):
        raise ValueError(f"store: kind {kind!r} is not allowed; lowercase letters, digits, '_' or '-', "
                         "starting with a letter")
    if not is_key(key):
        raise ValueError(f"store: key {key!r} is not a lowercase hex digest of at least {KEY_MIN_LEN} "
                         "characters (see jobs.keys.unit_key)")
    return kind, key[:2], key


@dataclasses.dataclass
class Found:
    what: str  # "entry", "symlink", "stray" (not a key name, or not a directory), "unreadable"
    rel: str  # under the store root
    st: os.stat_result  # lstat: a link's own
    kind: str = ""
    key: str = ""
    why: str = ""


def _odd(rel: str, st: os.stat_result, where: str) -> Found | None:
    if stat.S_ISLNK(st.st_mode):
        return Found("symlink", rel, st, why=f"a symbolic link where {where} belongs (never followed)")
    if not stat.S_ISDIR(st.st_mode):
        return Found("stray", rel, st, why=f"not a directory, where {where} belongs")
    return None


def _children(root: Path, rel: str, st: os.stat_result) -> tuple[list[tuple[str, os.stat_result]], Found | None]:
    try:
        return [(n, s) for n, s in safefs.scan(root, rel) if not n.startswith(".")], None
    except FileNotFoundError:
        return [], None
    except OSError as e:  # a member's directory we may not read, or one swapped for a link under us
        return [], Found("unreadable", rel, st, why=f"cannot be read ({e.strerror or e})")


def scan_store(root: str | Path, kinds: tp.Collection[str] | None = None) -> tp.Iterator[Found]:
    """Everything under the kind directories (all of them, or `kinds`), in name order."""
    root = Path(root)
    try:
        top = safefs.scan(root)
    except FileNotFoundError:
        return
    for kind, kst in top:
        if kind.startswith(("_", ".")) or not KIND_RE.match(kind) or (kinds is not None and kind not in kinds):
            continue
        if stat.S_ISLNK(kst.st_mode):
            yield Found("symlink", kind, kst, why="a symbolic link where a kind directory belongs (never followed)")
        if not stat.S_ISDIR(kst.st_mode):
            continue  # a plain file with a kind-like name is not the store's
        prefixes, problem = _children(root, kind, kst)
        if problem:
            yield problem
        for prefix, pst in prefixes:
            rel = f"{kind}/{prefix}"
            odd = _odd(rel, pst, "a key prefix directory")
            if odd or not PREFIX_RE.match(prefix):
                yield odd or Found("stray", rel, pst, why="not a key prefix (two hex digits)")
                continue
            keys, problem = _children(root, rel, pst)
            if problem:
                yield problem
            for key, est in keys:
                entry = f"{rel}/{key}"
                odd = _odd(entry, est, "an entry")
                if odd or not is_key(key) or key[:2] != prefix:
                    yield odd or Found("stray", entry, est, why=f"not a run-store key of prefix {prefix}/")
                    continue
                yield Found("entry", entry, est, kind=kind, key=key)
