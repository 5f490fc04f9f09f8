"""`awd-bench gc` on a group-shared store (findings 1 and 8, and a member's gc deleting another member's runs).

Each attack is performed for real as the attacker uid on the shared store; then the victim's gc runs as the victim
uid (`jobs.gc.plan` and `delete`, what `awd-bench gc --delete` calls, or the command itself), and the test asserts
that the attack failed: the victim's home, runs and folders are intact, and what the attacker planted is reported.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import typing as tp
import uuid
from pathlib import Path

import pytest

from tests.security.conftest import REPO, Lab, User

ENV = {"PYTHONPATH": str(REPO)}
VICTIM_KEY = "ab" + "1" * 62
ATTACKER_KEY = "cd" + "2" * 62
OLD = 400 * 86400  # seconds: older than any --older-than-days a user would give


@dataclasses.dataclass(frozen=True)
class Home:
    root: Path
    canary: Path
    project: Path

    def intact(self) -> bool:
        return self.canary.read_text() == "precious\n" and (self.project / "notes.txt").read_text() == "work\n"


@pytest.fixture
def victim_home(lab: Lab) -> tp.Iterator[Home]:
    """A folder of the victim's home holding a canary file and a project folder: what a followed link would have
    gc delete. This test's own (other test sessions use the same users at the same time, and a link to the whole
    home would have the unfixed gc delete their files too)."""
    root = lab.victim.home / f"home-{uuid.uuid4().hex[:8]}"
    home = Home(root, root / "canary.txt", root / "project")
    home.project.mkdir(parents=True)
    home.canary.write_text("precious\n")
    (home.project / "notes.txt").write_text("work\n")
    for p in (root, home.canary, home.project, home.project / "notes.txt"):
        os.chown(p, lab.victim.uid, lab.gid)
    yield home
    shutil.rmtree(root, ignore_errors=True)


def py(lab: Lab, user: User, code: str) -> str:
    r = lab.python(user, code, env=ENV)
    assert r.returncode == 0, f"{user.name}'s command failed (a crash is a successful attack):\n{r.stderr[-3000:]}"
    return r.stdout


def commit(lab: Lab, user: User, store: Path, key: str) -> None:
    py(lab, user, f"""
from jobs.store import RunStore
s = RunStore({str(store)!r})
(s.workdir("train", {key!r}) / "model.pt").write_bytes(b"w" * 4096)
s.commit("train", {key!r}, {{"acc": 0.9}})
""")


def is_done(lab: Lab, user: User, store: Path, key: str) -> bool:
    out = py(lab, user, f"""
from jobs.store import RunStore
print(RunStore({str(store)!r}).is_done("train", {key!r}, verify=True))
""")
    return out.strip().splitlines()[-1] == "True"


def victim_gc(lab: Lab, store: Path, used: set[tuple[str, str]], max_age_s: float = 0,
              all_users: bool = False) -> list[dict]:
    """The victim's `gc --delete` (used: the keys their params keep); the items it listed, as dicts."""
    out = py(lab, lab.victim, f"""
import dataclasses, json
from jobs.gc import delete, plan
from jobs.store import RunStore
s = RunStore({str(store)!r})
items = plan(s, {used!r}, max_age_s={max_age_s!r}, all_users={all_users!r})
delete(s, [i for i in items if not getattr(i, "skip", "")], say=lambda line: print("say:", line))  # as the command does
print(json.dumps([dict(dataclasses.asdict(i), path=str(i.path)) for i in items]))
""")
    return json.loads(out.strip().splitlines()[-1])


def shared_dir(lab: Lab, store: Path, name: str) -> Path:
    """A group-writable sticky folder of the store, made by the victim (as the driver makes `_logs/`)."""
    py(lab, lab.victim, f"import os; p = {str(store / name)!r}; os.mkdir(p); os.chmod(p, 0o3777)")
    return store / name


def plant_link(lab: Lab, link: Path, target: Path) -> None:
    py(lab, lab.attacker, f"""
import os, time
os.makedirs({str(link.parent)!r}, exist_ok=True)
os.symlink({str(target)!r}, {str(link)!r})
old = time.time() - {OLD}
os.utime({str(link)!r}, (old, old), follow_symlinks=False)
""")


def test_attack_gc_follows_symlink_in_quarantine(lab, shared_store, victim_home):
    commit(lab, lab.victim, shared_store, VICTIM_KEY)
    # where gc looks for quarantined folders (_quarantine/<kind>/<folder>), a link to the victim's home: followed,
    # the home's folders would be listed as the victim's old quarantine and deleted
    plant_link(lab, shared_store / "_quarantine" / "train", victim_home.root)
    plant_link(lab, shared_store / "_quarantine" / "prune" / f"{VICTIM_KEY}.20200101T000000.abcdef", victim_home.root)

    items = victim_gc(lab, shared_store, used={("train", VICTIM_KEY)})

    assert victim_home.intact()
    assert is_done(lab, lab.victim, shared_store, VICTIM_KEY)
    links = {i["rel"]: i for i in items if i["what"] == "symlink"}
    assert set(links) == {"_quarantine/train", f"_quarantine/prune/{VICTIM_KEY}.20200101T000000.abcdef"}
    assert all("owned by awdattacker" in i["skip"] for i in links.values())
    assert not [i for i in items if i["what"] == "quarantine"]  # nothing of the home listed as quarantine
    assert (shared_store / "_quarantine" / "train").is_symlink()  # the attacker's link is theirs to remove


def test_attack_gc_follows_symlink_in_logs(lab, shared_store, victim_home):
    commit(lab, lab.victim, shared_store, VICTIM_KEY)
    logs = shared_dir(lab, shared_store, "_logs")  # sticky: no one may rename another's folder, but links go in
    plant_link(lab, logs / "awdvictim-old", victim_home.root)  # where _logs/<user>/ belongs
    plant_link(lab, logs / "awdattacker" / "train", victim_home.project)  # where _logs/<user>/<stage>/ belongs

    items = victim_gc(lab, shared_store, used={("train", VICTIM_KEY)})

    assert victim_home.intact()
    assert is_done(lab, lab.victim, shared_store, VICTIM_KEY)
    links = sorted(i["rel"] for i in items if i["what"] == "symlink")
    assert links == ["_logs/awdattacker/train", "_logs/awdvictim-old"]
    assert not [i for i in items if i["what"] == "logs"]


def test_attack_gc_deletes_other_members_runs(lab, shared_store, victim_home):
    commit(lab, lab.victim, shared_store, VICTIM_KEY)
    quarantined = shared_store / "_quarantine" / "train" / f"{VICTIM_KEY}.20200101T000000.abcdef"
    py(lab, lab.victim, f"""
import os, time
os.makedirs({str(quarantined)!r})
open({str(quarantined / "reason.txt")!r}, "w").write("kept for inspection")
old = time.time() - {OLD}
os.utime({str(quarantined / "reason.txt")!r}, (old, old)); os.utime({str(quarantined)!r}, (old, old))
""")
    commit(lab, lab.attacker, shared_store, ATTACKER_KEY)

    # the attacker's own `awd-bench gc --delete`, asking for everyone's entries and forcing past every warning
    r = lab.run(lab.attacker, [str(Path(sys.executable).parent / "awd-bench"), "gc", "--delete", "--all-users",
                               "--force", "--keep-commits", "0", "--older-than-days", "0"],
                env={**ENV, "AWD_STORE": str(shared_store)}, cwd=REPO, timeout=300)

    assert r.returncode == 0, r.stderr[-3000:]
    assert is_done(lab, lab.victim, shared_store, VICTIM_KEY)
    assert (quarantined / "reason.txt").read_text() == "kept for inspection"
    assert f"train/{VICTIM_KEY}" in r.stdout and "owned by awdvictim" in r.stdout  # listed as skipped
    assert not (shared_store / "train" / ATTACKER_KEY[:2] / ATTACKER_KEY).exists()  # their own run: deleted
    assert victim_home.intact()


def test_attack_non_key_name_crashes_gc(lab, shared_store, victim_home):
    commit(lab, lab.victim, shared_store, VICTIM_KEY)
    prefix = shared_store / "train" / VICTIM_KEY[:2]
    py(lab, lab.attacker, f"""
import os
os.mkdir({str(prefix / "not-a-key")!r})
open({str(prefix / "README")!r}, "w").write("x")
os.makedirs({str(shared_store / "train" / "zz")!r})
os.mkdir({str(prefix / ("ef" + "3" * 62))!r})  # a key under the wrong prefix
""")

    # `gc --all-users`: what a lab member runs to see what everyone's entries cost
    items = victim_gc(lab, shared_store, used={("train", VICTIM_KEY)}, all_users=True)

    stray = sorted(i["rel"] for i in items if i["what"] == "stray")
    assert stray == sorted([f"train/ab/{n}" for n in ("README", "ef" + "3" * 62, "not-a-key")] + ["train/zz"])
    assert all("owned by awdattacker" in i["skip"] for i in items)
    assert is_done(lab, lab.victim, shared_store, VICTIM_KEY) and victim_home.intact()
    assert (prefix / "not-a-key").is_dir()  # not the victim's to delete


def test_attack_symlink_in_kind_dir_crashes_gc(lab, shared_store, victim_home):
    commit(lab, lab.victim, shared_store, VICTIM_KEY)
    prefix = shared_store / "train" / VICTIM_KEY[:2]
    plant_link(lab, prefix / ("ab" + "4" * 62), victim_home.root)  # a key-named link: followed, it is an "entry"
    plant_link(lab, prefix / "home", victim_home.root)
    plant_link(lab, shared_store / "train" / "cd", victim_home.root)  # a link where a key prefix directory belongs
    plant_link(lab, shared_store / "autoattack", victim_home.root)  # and where a kind directory belongs

    items = victim_gc(lab, shared_store, used={("train", VICTIM_KEY)})

    links = sorted(i["rel"] for i in items if i["what"] == "symlink")
    assert links == sorted(["autoattack", "train/cd", "train/ab/home", "train/ab/ab" + "4" * 62])
    assert not [i for i in items if i["what"] == "entry"]
    assert is_done(lab, lab.victim, shared_store, VICTIM_KEY) and victim_home.intact()


def test_a_members_own_links_and_strays_go_as_themselves(lab, shared_store, victim_home):
    """What keeps working: the victim's gc removes their own stray link (as the link) and old folders."""
    commit(lab, lab.victim, shared_store, VICTIM_KEY)
    py(lab, lab.victim, f"""
import os, time
os.symlink({str(victim_home.root)!r}, {str(shared_store / "train" / "ab" / "mylink")!r})
os.makedirs({str(shared_store / "_logs" / "awdvictim" / "train")!r})
old = time.time() - {OLD}
os.utime({str(shared_store / "_logs" / "awdvictim" / "train")!r}, (old, old))
""")
    items = victim_gc(lab, shared_store, used=set(), max_age_s=86400)
    assert {i["rel"] for i in items if not i["skip"]} == {"train/ab/mylink", f"train/ab/{VICTIM_KEY}",
                                                           "_logs/awdvictim/train"}
    assert not (shared_store / "train" / "ab" / "mylink").is_symlink()
    assert not (shared_store / "train" / "ab" / VICTIM_KEY).exists()  # unused by the victim's params: gone
    assert not (shared_store / "_logs" / "awdvictim" / "train").exists()
    assert victim_home.intact()
