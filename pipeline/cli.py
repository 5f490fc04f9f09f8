"""`awd-bench <command> [args]`: one command for what users do besides `dvc repro`.

Each command is the `main` of a module that also runs as `python -m <module>` (dvc.yaml and older scripts use
those); `awd-bench <command> --help` shows its own usage. Modules are imported only when their command runs, so
`awd-bench --help` stays instant.

Exit status, every command:
  0    done (`repro`: dvc's own status; `rehearse`: 0 only when no work was lost and every table was made)
  1    refused or failed, said on one `ERROR: ...` line (or a refusal's own message): a bad executor.yaml, a missing
       program or file, a budget exceeded, units failed after their retries, a damaged or busy run store
  2    bad command line or bad params: the usage, or every problem one per line; nothing was run
  130  interrupted (Ctrl-C); jobs already submitted keep running, the message says how to cancel or re-attach
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
import typing as tp
from pathlib import Path

# name -> (module, leading arguments, one line of help)
COMMANDS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "check": ("pipeline.params", (), "validate params files (default params.yaml); --data also checks CIFAR files"),
    "init": ("jobs.init_cluster", (), "write executor.yaml for the SLURM cluster this runs on (sinfo/sacctmgr), "
             "checked against it"),
    "dry-run": ("pipeline.dry_run", (), "what would be trained/evaluated, why, where, and its GPU-hour estimate"),
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
EXIT_CODES = __doc__.split("Exit status, every command:\n", 1)[1].rstrip()


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {help_}" for name, (_, _, help_) in COMMANDS.items()]
    return ("usage: awd-bench <command> [args]   (awd-bench <command> --help: its options)\n\ncommands:\n"
            + "\n".join(lines) + "\n\nexit status:\n" + EXIT_CODES + "\n")


def _check_args(prog: str, args: list[str]) -> list[str]:
    """`awd-bench check`'s command line (pipeline.params.main reads a bare list of files and flags)."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Validate params files: every problem at once, one line each, naming the file and "
        "key. Plugin methods (package.module:Class) are imported from the current directory as with "
        "`python -m pipeline.params`.", epilog="exit status: 0 every file ok, 2 a problem in any file")
    parser.add_argument("files", nargs="*", metavar="FILE", help="params files (default: params.yaml)")
    parser.add_argument("--data", action="store_true", help="also check that the CIFAR files the params use exist")
    ns = parser.parse_args(args)
    return [*ns.files, *(["--data"] if ns.data else [])]


def _repro_args(prog: str, args: list[str]) -> list[str]:
    parser = argparse.ArgumentParser(
        prog=prog, usage=f"{prog} [-h] [dvc repro arguments ...]",
        description="`dvc repro` with the given arguments (e.g. `-s train`, `--force`), after clearing a stage lock "
        "left by a killed earlier run of this command; dvc and the stages run from this environment's bin/.",
        epilog="exit status: dvc's (0 every stage done); 1 dvc is not installed")
    _, rest = parser.parse_known_args(args)  # anything else is dvc's
    return rest


FRONTS: dict[str, tp.Callable[[str, list[str]], list[str]]] = {"check": _check_args, "repro": _repro_args}


def _environment() -> str | None:
    """Runs commands the way `python -m` and an activated venv would: the current directory importable (plugin
    methods, `package.module:Class`, resolve as in `python -m pipeline.params`), and this interpreter's bin/ (dvc,
    and the `python` of the stages) first on PATH. Returns why dvc cannot run, if it cannot."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    bindir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if bindir not in path.split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([bindir, path]) if path else bindir
    if shutil.which("dvc") is None:
        return (f"dvc is not installed: not in {bindir} nor on $PATH. Set up the environment (`make setup`, or any "
                "`make` target) and run .venv/bin/awd-bench")
    return None


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
    prog = f"awd-bench {name}"
    no_dvc = _environment()
    if name in FRONTS:
        rest = FRONTS[name](prog, rest)  # --help and bad options end here (status 0 / 2)
    if name == "repro" and no_dvc:
        print(f"ERROR: {no_dvc}", file=sys.stderr)
        return 1
    # argparse inside the modules reads sys.argv; the program name shows in their usage lines
    sys.argv = [prog, *lead, *rest]
    try:
        from pipeline.common import exit_status  # logging, and an expected failure as one ERROR line

        entry = importlib.import_module(module).main
        if module == "jobs.__main__":
            return exit_status(lambda: entry(rest, prog=prog, command=lead[0]))
        return exit_status(entry)
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] in ("awd", "jobs", "pipeline"):
            raise
        print(f"ERROR: {sys.executable} has no module {e.name!r}: this is not the project's environment, or it is "
              "incomplete; run `make setup` and use .venv/bin/awd-bench", file=sys.stderr)
        return 1
    except OSError as e:  # a file or program named on the command line or in settings, not a bug
        where = f": {e.filename}" if e.filename else ""
        print(f"ERROR: {e.strerror or e}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
