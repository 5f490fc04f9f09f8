"""`awd-bench store push|pull` and `awd-bench gc`: run-store entries that travel with a campaign, and its clean-up.

    awd-bench store push [--remote NAME]    # after `dvc push`: the entries the current unit lists name
    awd-bench store pull [--remote NAME]    # after `dvc pull`: the same entries, into $AWD_STORE (or ./runs)
    awd-bench gc [--keep-commits 5] [--older-than-days 30] [--delete] [--force]

Which entries: the keys in the unit lists the stages write (`artifacts/train/runs.json`,
`artifacts/attack/units.json`, `artifacts/prune/units.json`) plus the training runs the current params name. They
go to `<remote>/awd-store/<kind>/<key[:2]>/<key>/` of the DVC remote (`dvc remote add -d NAME URL`), reached
through DVC's own filesystem for it with the options and credentials `dvc remote modify [--local]` gave it: any
remote type DVC supports that can list (a path, ssh, s3, gs, azure, webdav, ...; its plugin, e.g. `dvc-s3`,
installed; http(s) cannot list, and is refused saying so). A path remote is copied through directory fds
(jobs.share), any other through jobs.remote_fs. Every copy is verified against its manifest's sha256 before it
counts.

`gc` keeps the entries of the current unit lists and params and of the unit lists of the last N commits (read
through DVC from its cache or remote), lists the rest with their sizes (plus `_logs` and `_quarantine` folders
untouched for longer than the age limit, and resume state a cut-short commit left), and deletes them only with
`--delete`. Entries a live job holds (run lock, fresh heartbeat, submission claim, queued or running job) are
never touched. A kept commit whose lists cannot be read stops `--delete` unless `--force`. On a shared store gc
deletes only what you own (others' entries are listed as skipped with `--all-users`), and a symbolic link or a
non-key name where entries, logs or quarantine belong is listed, never followed (jobs/gc.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from jobs.remote_fs import REMOTE_DIR, RemoteStore
from jobs.store import RunStore
from pipeline.common import PROJECT_ROOT, open_store

LISTS = {"train": "artifacts/train/runs.json", "autoattack": "artifacts/attack/units.json",
         "prune": "artifacts/prune/units.json"}


class StoreCliError(RuntimeError):
    pass


def keys_in(kind: str, text: str, where: str = "") -> set[tuple[str, str]]:
    """The (kind, key) pairs a unit list names (`where`: its file, for the error a malformed one gets)."""
    where = where or LISTS.get(kind, f"the {kind} unit list")
    allowed = ('a JSON list of records with a string "key"' if kind == "train" else
               f'a JSON object {{"{kind}": [key strings]}}')
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as e:  # RecursionError: nested deeper than the parser's stack
        raise StoreCliError(f"{where} is not valid JSON ({type(e).__name__}); expected {allowed}") from None
    if kind == "train":
        listed = [r.get("key") for r in data if isinstance(r, dict) and r.get("key")] \
            if isinstance(data, list) else None
    else:
        listed = data.get(kind, []) if isinstance(data, dict) else None
    if not isinstance(listed, list) or not all(isinstance(k, str) for k in listed):
        raise StoreCliError(f"{where} is not a unit list: expected {allowed}")
    return {(kind, k) for k in listed}


def workspace_keys(root: Path) -> tuple[set[tuple[str, str]], list[str]]:
    keys, notes = set(), []
    for kind, rel in LISTS.items():
        path = root / rel
        if path.is_file():
            keys |= keys_in(kind, path.read_text(errors="replace"), str(path))
        else:
            notes.append(f"no {rel} in the workspace (run `dvc pull` or `dvc repro` first)")
    return keys, notes


def params_keys(root: Path, params_file: str = "params.yaml") -> set[tuple[str, str]]:
    """Training runs the params name outright (as `awd-bench dry-run` counts them)."""
    from pipeline.params import load_params
    from pipeline.plan import unit_for
    from pipeline.suites import independent_runs

    params = load_params(str(root / params_file))
    return {("train", unit_for(spec, params, estimate=False).key) for spec in independent_runs(params)}


def commit_keys(root: Path, n: int) -> tuple[set[tuple[str, str]], list[str], set[str]]:
    """Keys in the unit lists of the last `n` commits; what could not be read (one line per commit the DVC cache
    lacks); kinds whose keys some commit does not list (pipeline/commit_lists.py)."""
    from pipeline.commit_lists import read_commit_lists

    got = read_commit_lists(root, n, list(LISTS.values()))
    keys, unreadable = set(), list(got.unreadable)
    for sha, texts in got.texts.items():
        for kind, rel in LISTS.items():
            if rel in texts:
                try:
                    keys |= keys_in(kind, texts[rel], f"{sha}:{rel}")
                except StoreCliError as e:
                    unreadable.append(str(e))
    if got.uncached:
        unreadable.append(f"the unit lists of {len(got.uncached)} kept commit(s) ({', '.join(got.uncached)}): not in "
                          "this clone's DVC cache and no DVC remote is set (`dvc pull` or `dvc fetch` them, or lower "
                          "--keep-commits)")
    unreadable += [f"{rel} of {', '.join(sorted(shas))}: its stage ran but wrote no such list (an older layout)"
                   for rel, shas in got.predating.items() if rel == LISTS["train"]]
    unlisted = {kind for kind, rel in LISTS.items() if kind != "train" and rel in got.predating}
    return keys, unreadable, unlisted


def remote_store(root: Path, name: str | None) -> RunStore | RemoteStore:
    """The run store under the DVC remote `name` (default: the default remote), as `dvc push` would reach it."""
    from dvc.exceptions import DvcException
    from dvc.fs import get_cloud_fs
    from dvc.repo import Repo

    with Repo(str(root)) as repo:  # every config level: system, global, .dvc/config, .dvc/config.local
        conf = repo.config
        remote = name or conf["core"].get("remote")
        if not remote:
            raise StoreCliError("no DVC remote is set: add one with `dvc remote add -d NAME URL` (README, "
                                "'Sharing a campaign'), or pass --remote NAME")
        if remote not in conf["remote"]:
            raise StoreCliError(f"no DVC remote named {remote!r}; known: "
                                f"{', '.join(sorted(conf['remote'])) or 'none'}")
        url = str(conf["remote"][remote]["url"])
        try:
            cls, fs_conf, fs_path = get_cloud_fs(conf, name=remote)
            if cls.protocol == "local":  # relative urls come back resolved against the config's directory
                return RunStore((root / fs_path).resolve() / REMOTE_DIR)
            if cls.protocol in ("http", "https"):
                raise StoreCliError(
                    f"DVC remote {remote!r} is {url}: an http(s) remote cannot list what it holds (DVC cannot "
                    "either), and `awd-bench store` checks an entry's listing before it takes a byte of it; share "
                    "the run store through another remote type (a path, ssh, s3, gs, azure, webdav, ...)")
            fs = cls(**fs_conf)
            store = RemoteStore(fs.fs, fs.join(fs_path, REMOTE_DIR), f"{url.rstrip('/')}/{REMOTE_DIR}")
        except StoreCliError:
            raise
        except (DvcException, ImportError) as e:  # a remote type whose plugin is missing says which to install
            raise StoreCliError(f"DVC remote {remote!r} ({url}) cannot be used: {e}") from None
        except Exception as e:  # noqa: BLE001 - connecting (an ssh login) happens here: any failure says why
            raise StoreCliError(f"DVC remote {remote!r} ({url}) does not answer: {type(e).__name__}: {e}") from None
    return store


def _where(store: RunStore | RemoteStore) -> str:
    return str(store.root) if isinstance(store, RunStore) else store.url


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def needed_keys(root: Path) -> set[tuple[str, str]]:
    keys, notes = workspace_keys(root)
    for note in notes:
        print(f"store: {note}", file=sys.stderr)
    try:
        keys |= params_keys(root)
    except Exception as e:  # noqa: BLE001 - bad params are refused by the stages; here they only add no keys
        print(f"store: the params name no extra training runs ({type(e).__name__}: {e})", file=sys.stderr)
    return keys


def store_main(argv: list[str]) -> int:
    from jobs.gc import live_reason
    from jobs.share import copy_entries

    ap = argparse.ArgumentParser(prog="awd-bench store", description=__doc__.split("\n\n")[0])
    ap.add_argument("direction", choices=("push", "pull"))
    ap.add_argument("--remote", help="DVC remote name (default: the default remote, `dvc remote add -d`)")
    a = ap.parse_args(argv)
    root = PROJECT_ROOT
    remote, local = remote_store(root, a.remote), open_store()
    if isinstance(remote, RemoteStore):
        try:
            remote.prepare(push=a.direction == "push")
        except Exception as e:  # noqa: BLE001 - credentials, a missing bucket, a refused login: said once
            raise StoreCliError(f"DVC remote {remote.url}: {type(e).__name__}: {str(e)[:300]}") from None
    keys = needed_keys(root)
    src, dest = (local, remote) if a.direction == "push" else (remote, local)
    out = copy_entries(src, dest, keys, is_live=lambda s, kind, key: live_reason(s, kind, key))
    print(f"store {a.direction}: {len(out.copied)} entries copied ({_human(out.bytes)}), {len(out.present)} already "
          f"there, {len(out.missing)} not in {_where(src)}; {_where(dest)}")
    for kind, key, why in out.refused:
        print(f"  refused {kind}/{key}: {why}", file=sys.stderr)
    if out.missing:
        print("  not in the source (recomputed by `dvc repro`): "
              + ", ".join(f"{k}/{key[:12]}" for k, key in out.missing[:20])
              + (" ..." if len(out.missing) > 20 else ""), file=sys.stderr)
    return 1 if out.refused else 0


def gc_main(argv: list[str]) -> int:
    from jobs.gc import delete, plan

    ap = argparse.ArgumentParser(prog="awd-bench gc", description="store entries, logs and quarantine no kept "
                                 "key list uses: listed, deleted with --delete")
    ap.add_argument("--keep-commits", type=int, default=5, metavar="N",
                    help="keep what the unit lists of the last N commits name (default 5)")
    ap.add_argument("--older-than-days", type=float, default=30.0, metavar="D",
                    help="_logs and _quarantine folders untouched for longer than this go (default 30)")
    ap.add_argument("--delete", action="store_true", help="delete what is listed (default: only list)")
    ap.add_argument("--force", action="store_true", help="delete even if a kept commit's unit lists are unreadable")
    ap.add_argument("--all-users", action="store_true",
                    help="also list entries and folders other users made (a shared store); only their owner may "
                         "delete them, so they are listed as skipped")
    a = ap.parse_args(argv)
    if a.keep_commits < 0 or a.older_than_days < 0:
        raise StoreCliError("gc: --keep-commits and --older-than-days must be >= 0")
    root, store = PROJECT_ROOT, open_store()
    used, notes = workspace_keys(root)
    try:
        used |= params_keys(root)
    except Exception as e:  # noqa: BLE001 - bad params are refused by the stages; here they only add no keys
        print(f"gc: the params name no extra training runs ({type(e).__name__}: {e})", file=sys.stderr)
    kept, unreadable, unlisted = commit_keys(root, a.keep_commits)
    if notes:  # a fresh clone knows no keys of its own
        unreadable.append(f"the workspace's unit lists ({', '.join(n.split()[1] for n in notes)}): not there (run "
                          "`dvc pull` or `dvc repro` first)")
    used |= kept
    items = plan(store, used, a.older_than_days * 86400, all_users=a.all_users)
    items = [i for i in items if not (i.what == "entry" and i.kind in unlisted)]
    for kind in sorted(unlisted):
        print(f"gc: a kept commit predates the unit lists of {kind!r} units: every {kind} entry is kept")
    mine = [i for i in items if not i.skip]  # the rest: another member's, or holding their files (listed, kept)
    for i in items:
        name = f"{i.kind}/{i.key}" if i.key else i.path.relative_to(store.root).as_posix()
        print(f"{_human(i.bytes):>10}  {i.what:<12}  {name}  ({i.why}{f'; {i.skip}' if i.skip else ''})")
    skipped = f"; {len(items) - len(mine)} more listed as skipped (not yours to delete)" if len(mine) < len(items) else ""
    print(f"gc: {len(mine)} items, {_human(sum(i.bytes for i in mine))} in {store.root} (keeping {len(used)} units of "
          f"the current params and the last {a.keep_commits} commits){skipped}")
    for u in unreadable:
        print(f"gc: cannot read {u}", file=sys.stderr)
    if not mine:
        print("gc: nothing to delete")
        return 0
    if not a.delete:
        print("gc: nothing deleted; run again with --delete to delete the items above")
        return 0
    if unreadable and not a.force:
        print("gc: refusing to delete: the unit lists of a kept commit could not be read (its entries might be "
              "deleted); `dvc pull` them, lower --keep-commits, or pass --force", file=sys.stderr)
        return 1
    freed = delete(store, mine)
    print(f"gc: deleted, {_human(freed)} freed")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command, rest = (args[0], args[1:]) if args else ("", [])
    try:
        if command == "store":
            return store_main(rest)
        if command == "gc":
            return gc_main(rest)
    except StoreCliError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 2
    print("usage: python -m pipeline.store_cli store push|pull | gc [...]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
