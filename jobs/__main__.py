"""`python -m jobs status|cancel [--store DIR] [--kind K]`: the jobs recorded for entries that are not done yet
(`awd-bench status`, `awd-bench cancel`).

Exit status: 0 done (`status` lists the jobs, possibly none; `cancel` cancels those that are yours), 2 bad command
line or no run store at DIR.
"""

from __future__ import annotations

import argparse
import os
import sys

from jobs.console import configure_logging
from jobs.executors import JobWatch, cancel_jobs
from jobs.records import OWN, pending_jobs, skip_message
from jobs.store import RunStore

WHAT = {"status": "list the jobs of the run store's unfinished entries and their state",
        "cancel": "cancel the jobs of the run store's unfinished entries (yours only)"}


def parser_for(prog: str = "python -m jobs", command: str | None = None) -> argparse.ArgumentParser:
    """The command line of `python -m jobs <command>`, or of one command alone (`awd-bench status`)."""
    parser = argparse.ArgumentParser(prog=prog, description=WHAT[command] if command else __doc__.split("\n\n")[0],
                                     epilog="exit status: 0 done, 2 bad command line or no run store")
    if command is None:
        parser.add_argument("command", choices=tuple(WHAT), help="; ".join(f"{k}: {v}" for k, v in WHAT.items()))
    else:
        parser.set_defaults(command=command)
    parser.add_argument("--store", default=os.environ.get("AWD_STORE", "runs"),
                        help="run store root (default: $AWD_STORE or ./runs)")
    parser.add_argument("--kind", action="append", help="only units of this kind (repeatable)")
    return parser


def main(argv=None, prog: str = "python -m jobs", command: str | None = None) -> int:
    parser = parser_for(prog, command)
    args = parser.parse_args(argv)
    store = RunStore(args.store)
    if not store.root.is_dir():
        print(f"ERROR: no run store at {store.root} (--store DIR, or $AWD_STORE)", file=sys.stderr)
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
