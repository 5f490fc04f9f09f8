"""`python -m jobs status|cancel --store DIR [--kind K]`: the jobs recorded for entries that are not done yet."""

from __future__ import annotations

import argparse
import os
import sys

from jobs.console import configure_logging
from jobs.executors import JobWatch, cancel_jobs
from jobs.records import OWN, pending_jobs, skip_message
from jobs.store import RunStore


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs", description=__doc__)
    parser.add_argument("command", choices=("status", "cancel"))
    parser.add_argument("--store", default=os.environ.get("AWD_STORE", "runs"),
                        help="run store root (default: $AWD_STORE or ./runs)")
    parser.add_argument("--kind", action="append", help="only units of this kind (repeatable)")
    args = parser.parse_args(argv)
    store = RunStore(args.store)
    if not store.root.is_dir():
        print(f"no run store at {store.root}", file=sys.stderr)
        return 2
    records = pending_jobs(store, args.kind)
    watch = JobWatch()
    watch.refresh(records, force=True)
    live = []
    for r in records:
        try:
            alive, state = watch.state(r)
        except RuntimeError as e:
            alive, state = False, f"unknown ({e})"
        if args.command == "status":
            print(f"{r['kind']}/{r['key']}  {r['executor']} job {r['job_id']}  {state}  log: "
                  f"{r.get('log_paths', {}).get('stderr', '')}")
        if alive:
            live.append(r)
    if args.command == "cancel":
        for line in skip_message([r for r in live if not r[OWN]], "not cancelled"):
            print(line)
        live = [r for r in live if r[OWN]]
        n = cancel_jobs(live)
        print(f"cancelled {n} jobs ({len(live)} units in flight)")
    return 0


if __name__ == "__main__":
    configure_logging()
    sys.exit(main())
