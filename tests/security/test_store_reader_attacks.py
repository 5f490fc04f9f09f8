"""Store readers facing records a group member wrote (finding 6): a manifest nested 200,000 levels deep, or of any
other hostile content, must not crash the victim's driver, gc or pull.

The attacker writes the content for real, as their uid, into an entry of their own and over the manifest of one of
the victim's (an entry is group-writable: any member may recompute it). Then the victim's readers run as the victim:
the driver-side reads (`dry_run`, `quarantine_damaged`, `why.pending_reasons`, `result`, `pending_jobs`), `gc`
(`plan`, `delete`) and the pull-side read (`jobs.share.copy_entries` into the victim's own store). The victim's
damaged entry is quarantined by the victim (its files kept for inspection), the attacker's is left in place with a
message, and nothing crashes or hangs.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.security.conftest import REPO, Lab, User

ENV = {"PYTHONPATH": str(REPO)}
VICTIM_KEY = "ab" + "5" * 62
ATTACKER_KEY = "cd" + "6" * 62
SPARE_KEY = "ef" + "7" * 62  # a healthy victim entry: what must keep working


def py(lab: Lab, user: User, code: str) -> tuple[str, str]:
    r = lab.python(user, code, env=ENV, timeout=300)
    assert r.returncode == 0, f"{user.name}'s command failed (a crash is a successful attack):\n{r.stderr[-3000:]}"
    return r.stdout, r.stderr


def commit(lab: Lab, user: User, store: Path, key: str) -> None:
    py(lab, user, f"""
from jobs.store import RunStore
s = RunStore({str(store)!r})
(s.workdir("train", {key!r}) / "model.pt").write_bytes(b"w" * 4096)
s.commit("train", {key!r}, {{"acc": 0.9}})
""")


# what the attacker puts where a manifest belongs (python run as the attacker, `p` the path it writes)
HOSTILE = {
    "nested": 'p.write_bytes(b"[" * 200_000)',
    "nested-valid": 'p.write_text("[" * 5000 + "]" * 5000)',  # parses within the recursion limit; still no record
    "huge": 'p.write_bytes(b"[" + b"1," * (9 << 20) + b"1]")',
    "not-utf8": 'p.write_bytes(b\'{"files": "\\xff\\xfe"}\')',
    "wrong-type": 'p.write_text(\'[{"files": {"result.json": {"size": 1}}}]\')',
    "wrong-field-types": 'p.write_text(\'{"files": {"result.json": [], "../../x": 3, "a": {"size": "big"}}}\')',
    "fifo": "os.mkfifo(p)",
    "link-to-dev-zero": 'os.symlink("/dev/zero", p)',
}


def plant(lab: Lab, store: Path, key: str, content: str) -> None:
    py(lab, lab.attacker, f"""
import os
from pathlib import Path
m = Path({str(store / "train" / key[:2] / key / "manifest.json")!r})
p = m.with_name(".planted")
{content}
os.replace(p, m)  # the entry is group-writable: any member may replace its files
""")


def victim_reads(lab: Lab, store: Path, private: Path) -> dict:
    """Everything the victim's tools read from the store; what they saw, as a dict."""
    out, err = py(lab, lab.victim, f"""
import dataclasses, json
from jobs.driver import dry_run
from jobs.gc import delete, plan
from jobs.job import Unit
from jobs.share import copy_entries
from jobs.store import RunStore, StoreError
from jobs.why import pending_reasons

s = RunStore({str(store)!r})
keys = [{VICTIM_KEY!r}, {ATTACKER_KEY!r}, {SPARE_KEY!r}]
units = [Unit("train", k, "tests.jobfns:record", {{"tag": k}}) for k in keys]
seen = {{"pending": sorted(u.key for u in dry_run(units, s))}}
seen["damage"] = {{k: s.damage("train", k, verify=True) for k in keys}}
results = {{}}
for k in keys:
    try:
        results[k] = s.result("train", k)
    except StoreError as e:
        results[k] = "StoreError: " + str(e)
seen["results"] = results
seen["reasons"] = pending_reasons([u for u in units if u.key != {SPARE_KEY!r}], s.root)
seen["pending_jobs"] = s.pending_jobs()
seen["moved"] = sorted(k for _, k in s.quarantine_damaged(("train", k) for k in keys))
items = plan(s, {{("train", {SPARE_KEY!r})}}, max_age_s=30 * 86400, all_users=True)
delete(s, [i for i in items if not i.skip], say=lambda line: None)
seen["gc"] = [dict(what=i.what, key=i.key, skip=i.skip) for i in items]
pulled = copy_entries(s, RunStore({str(private)!r}), [("train", k) for k in keys])
seen["pull"] = dataclasses.asdict(pulled)
print(json.dumps(seen))
""")
    return dict(json.loads(out.strip().splitlines()[-1]), stderr=err)


@pytest.fixture
def private_store(lab: Lab) -> Path:
    """The victim's own store (mode 0755, theirs alone) that a pull copies into."""
    path = lab.victim.home / f"runs-{uuid.uuid4().hex[:8]}"
    py(lab, lab.victim, f"import os; os.mkdir({str(path)!r}, 0o755)")
    return path


def check_survived(lab: Lab, store: Path, private: Path, seen: dict) -> None:
    assert seen["pending"] == sorted([VICTIM_KEY, ATTACKER_KEY])  # both damaged: not done, to be recomputed
    assert seen["damage"][SPARE_KEY] == "" and all(seen["damage"][k] for k in (VICTIM_KEY, ATTACKER_KEY))
    assert seen["results"][SPARE_KEY] == {"acc": 0.9}
    assert all(seen["results"][k].startswith("StoreError") for k in (VICTIM_KEY, ATTACKER_KEY))
    assert set(seen["reasons"].values()) == {"new config"}
    # the victim moved their own damaged entry aside, files kept; the attacker's stays where it is, said once
    assert seen["moved"] == [VICTIM_KEY]
    (moved,) = (store / "_quarantine" / "train").iterdir()
    assert (moved / "model.pt").read_bytes() == b"w" * 4096 and "manifest.json" in (moved / "reason.txt").read_text()
    assert f"train/{ATTACKER_KEY} is damaged" in seen["stderr"] and "belongs to awdattacker" in seen["stderr"]
    assert (store / "train" / ATTACKER_KEY[:2] / ATTACKER_KEY).is_dir()
    assert {(i["key"], i["skip"][:22]) for i in seen["gc"]} == {(ATTACKER_KEY, "owned by awdattacker (")}
    pull = seen["pull"]
    assert pull["copied"] == [["train", SPARE_KEY]] and pull["missing"] == [["train", VICTIM_KEY]]
    assert [r[:2] for r in pull["refused"]] == [["train", ATTACKER_KEY]]
    assert not (private / "train" / ATTACKER_KEY[:2] / ATTACKER_KEY).exists()
    assert py(lab, lab.victim, f"""
from jobs.store import RunStore
print(RunStore({str(private)!r}).is_done("train", {SPARE_KEY!r}, verify=True))
""")[0].split()[-1] == "True"


def test_attack_nested_manifest_crashes_readers(lab, shared_store, private_store):
    for user, key in ((lab.victim, VICTIM_KEY), (lab.attacker, ATTACKER_KEY), (lab.victim, SPARE_KEY)):
        commit(lab, user, shared_store, key)
    for key in (VICTIM_KEY, ATTACKER_KEY):
        plant(lab, shared_store, key, HOSTILE["nested"])

    seen = victim_reads(lab, shared_store, private_store)

    check_survived(lab, shared_store, private_store, seen)
    assert "nested too deeply" in seen["damage"][VICTIM_KEY]


@pytest.mark.parametrize("content", sorted(set(HOSTILE) - {"nested"}))
def test_attack_hostile_manifest_crashes_readers(lab, shared_store, private_store, content):
    for user, key in ((lab.victim, VICTIM_KEY), (lab.attacker, ATTACKER_KEY), (lab.victim, SPARE_KEY)):
        commit(lab, user, shared_store, key)
    for key in (VICTIM_KEY, ATTACKER_KEY):
        plant(lab, shared_store, key, HOSTILE[content])

    seen = victim_reads(lab, shared_store, private_store)

    check_survived(lab, shared_store, private_store, seen)


def test_attack_hostile_bookkeeping_records_crash_readers(lab, shared_store, private_store):
    """job.json, attempts.json and .heartbeat of the victim's unfinished entry rewritten by the attacker: the
    victim's readers see no record (said once), and their job still records its attempts and commits."""
    unfinished = "ab" + "8" * 62
    py(lab, lab.victim, f"""
from jobs.store import RunStore
s = RunStore({str(shared_store)!r})
s.record_jobs("train", {unfinished!r}, "123", "local", {{}})
s.record_attempt("train", {unfinished!r}, "preempted")
s.beat("train", {unfinished!r}, "123")
""")
    entry = shared_store / "train" / unfinished[:2] / unfinished
    py(lab, lab.attacker, f"""
import os
from pathlib import Path
e = Path({str(entry)!r})
for name, data in (("job.json", b"[" * 200_000), ("attempts.json", b"{{" * 100_000), (".heartbeat", b'{{"t": "x"}}')):
    (e / ".planted").write_bytes(data)
    os.replace(e / ".planted", e / name)
os.unlink(e / "error.txt") if (e / "error.txt").exists() else None
os.mkfifo(e / "error.txt")
""")
    out, err = py(lab, lab.victim, f"""
import json
from jobs.gc import live_reason, plan
from jobs.store import RunStore
s = RunStore({str(shared_store)!r})
k = {unfinished!r}
seen = dict(job=s.job_record("train", k), attempts=s.attempts("train", k), beat=s.heartbeat("train", k),
            error=s.error("train", k), pending=s.pending_jobs(), live=live_reason(s, "train", k),
            gc=[i.key for i in plan(s, set(), max_age_s=0)])
s.record_attempt("train", k, "node failure")
(s.workdir("train", k) / "model.pt").write_bytes(b"w")
s.commit("train", k, {{"acc": 1.0}})
seen["done"] = s.is_done("train", k, verify=True)
print(json.dumps(seen))
""")
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen == {"job": None, "attempts": [], "beat": None, "error": None, "pending": [], "live": "",
                    "gc": [unfinished], "done": True}
    assert "job.json ignored" in err and "nested too deeply" in err
