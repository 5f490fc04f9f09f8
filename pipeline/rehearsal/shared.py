"""The shared-cluster profile of a rehearsal (`--profile shared`, issue 27): other users submit a seeded stream of
sleep jobs of assorted sizes and lengths while the campaign runs, under the multifactor priority with fair share
(scripts/local-slurm.sh, AWD_REHEARSAL_SHARED=1: accounts lab_a and lab_b beside root's, equal shares).

Each other user keeps about `load` × the cluster's GPUs asked for (pending + running), topping up every few seconds
with jobs drawn from a seeded generator: 1 to 8 GPUs, 0.25 to 4 simulated hours. Their demand alone exceeds the
cluster, so what we get is what the scheduler grants us. Their jobs go through the real sbatch (not the rehearsal's
counting shim) as root with `--uid`, and are cancelled when the campaign ends.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import subprocess
import time

USERS = {"awdlab1": "lab_a", "awdlab2": "lab_b"}  # as scripts/local-slurm.sh creates them
SIZES = (1, 1, 1, 2, 2, 4, 8)  # GPUs per job: mostly small, some whole-node-ish
HOURS = (0.25, 4.0)  # simulated length range, drawn log-uniform
TOP_UP_S = 5.0  # wall seconds between top-ups


class Others:
    """The other users' stream: `poll()` from the rehearsal's loop tops each user up to its share of demand."""

    def __init__(self, seed: int, gpus: int, load: float, mpg: float, partition: str, env: dict) -> None:
        self.rng = {u: random.Random(f"shared|{seed}|{u}") for u in USERS}
        self.target = max(1, round(load * gpus))
        self.mpg, self.partition, self.env = mpg, partition, env
        self.sbatch = shutil.which("sbatch", path=os.environ.get("PATH")) or "sbatch"  # not the shim
        self.submitted = {u: 0 for u in USERS}
        self.refused: list[str] = []
        self.last = 0.0

    def _asked(self, user: str) -> int | None:
        done = subprocess.run(["squeue", "-h", "-u", user, "-o", "%j"], env=self.env, capture_output=True, text=True,
                              timeout=60)
        if done.returncode != 0:
            return None  # the controller is down (an injected fault): top up later
        return sum(int(n[len("other-g"):]) for n in done.stdout.split() if n.startswith("other-g"))

    def poll(self, _train_fraction: float = 0.0) -> None:
        if time.time() - self.last < TOP_UP_S:
            return
        self.last = time.time()
        for user, account in USERS.items():
            asked = self._asked(user)
            while asked is not None and asked < self.target:
                rng = self.rng[user]
                gpus = rng.choice(SIZES)
                hours = math.exp(rng.uniform(math.log(HOURS[0]), math.log(HOURS[1])))
                seconds = max(1, round(hours * self.mpg * 60))
                cmd = [self.sbatch, f"--uid={user}", f"--account={account}", f"--partition={self.partition}",
                       f"--gres=gpu:{gpus}", "--cpus-per-task=1", f"--time={math.ceil(seconds / 60) + 1}",
                       "--chdir=/tmp", "--output=/dev/null", f"--job-name=other-g{gpus}", f"--wrap=sleep {seconds}"]
                done = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=60)
                if done.returncode != 0:
                    self.refused.append(done.stderr.strip()[:200])
                    break
                self.submitted[user] += 1
                asked += gpus

    def close(self) -> None:
        for user in USERS:
            subprocess.run(["scancel", "-u", user], env=self.env, capture_output=True, timeout=60)


def others_gpu_h(env: dict, t0: float, t1: float, mpg: float) -> dict:
    """Simulated GPU-hours the other users' jobs held in [t0, t1], per user, from sacct."""
    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t0 - 60))
    out = subprocess.run(["sacct", "-X", "-P", "-n", "-u", ",".join(USERS), f"--starttime={start}", "-o",
                          "User,JobName,Start,End"], env=dict(env, SLURM_TIME_FORMAT="%s"), capture_output=True,
                         text=True, timeout=120).stdout
    held = {u: 0.0 for u in USERS}
    for line in out.splitlines():
        user, name, st, en = (line.split("|") + ["", "", "", ""])[:4]
        if user not in held or not name.startswith("other-g") or not st.isdigit():
            continue
        end = float(en) if en.isdigit() else t1
        seconds = max(0.0, min(end, t1) - max(float(st), t0))
        held[user] += int(name[len("other-g"):]) * seconds / 60 / mpg
    return {u: round(h, 1) for u, h in held.items()}


def granted(series: dict, times: list[float], t0: float, mpg: float, buckets_h: float = 2.0) -> list[dict]:
    """Mean GPUs our jobs held per `buckets_h` simulated hours (from the plot's series)."""
    total = [sum(col) for col in zip(*series.values())] if series else []
    rows: dict[int, list[int]] = {}
    for t, n in zip(times, total):
        rows.setdefault(int((t - t0) / 60 / mpg // buckets_h), []).append(n)
    return [{"from_h": b * buckets_h, "mean_gpus": round(sum(v) / len(v), 1)} for b, v in sorted(rows.items())]
