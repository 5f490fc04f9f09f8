"""`awd-bench <command> [args]`: one command for what users do besides `dvc repro`.

Each command is the `main` of a module that also runs as `python -m <module>` (dvc.yaml and older scripts use
those); `awd-bench <command> --help` shows its options. Modules are imported only when their command runs, so
`awd-bench --help` stays instant.
"""

from __future__ import annotations

import importlib
import sys

# name -> (module, leading arguments, one line of help)
COMMANDS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "check": ("pipeline.params", (), "validate params files (default params.yaml); --data also checks CIFAR files"),
    "init": ("jobs.init_cluster", (), "write executor.yaml for the SLURM cluster this runs on (sinfo/sacctmgr), "
             "checked against it"),
    "dry-run": ("pipeline.dry_run", (), "what would be trained/evaluated, why, and the GPU-hour estimate"),
    "repro": ("pipeline.repro", (), "dvc repro, clearing a lock left by a killed earlier run of it"),
    "status": ("jobs.__main__", ("status",), "the jobs of the run store's unfinished entries and their state"),
    "cancel": ("jobs.__main__", ("cancel",), "cancel the jobs of the run store's unfinished entries"),
    "rehearse": ("pipeline.rehearsal.run", (), "dress rehearsal of a config on a local fake-GPU SLURM cluster"),
    "diff": ("pipeline.diff", (), "result tables of two revisions side by side: old | new | Δ | paper"),
    "store": ("pipeline.store_cli", ("store",), "store push|pull: copy the run-store entries the params need "
              "to/from the DVC remote"),
    "gc": ("pipeline.store_cli", ("gc",), "list (--delete: remove) store entries, logs and quarantine no recent "
           "commit uses"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {help_}" for name, (_, _, help_) in COMMANDS.items()]
    return "usage: awd-bench <command> [args]\n\ncommands:\n" + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage(), end="")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"awd-bench: unknown command {name!r}\n\n{usage()}", end="", file=sys.stderr)
        return 2
    module, lead, _ = COMMANDS[name]
    # argparse inside the modules reads sys.argv; the program name shows in their usage lines.
    sys.argv = [f"awd-bench {name}", *lead, *rest]
    from pipeline.common import exit_status  # logging, and an expected failure as one ERROR line

    return exit_status(importlib.import_module(module).main)


if __name__ == "__main__":
    sys.exit(main())
