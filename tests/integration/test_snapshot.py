"""Code snapshots: jobs import the code their key names from the run store, verified, never from the checkout."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jobs.keys import PROJECT_PACKAGES, code_digest, unit_key
from jobs.snapshot import SnapshotError, snapshot_path, verify_snapshot, write_snapshot

ROOT = Path(__file__).resolve().parents[2]
PROBE = "pipeline.units.probe:probe_unit"

PROBE_UNIT = '''
"""A unit that reports which code it ran (test fixture)."""
import awd.probe_value


def probe_unit(config, workdir, store):
    return {"value": awd.probe_value.VALUE, "file": awd.probe_value.__file__}
'''


def make_project(dest: Path, value: str = "before") -> Path:
    """A copy of the project packages plus a probe unit whose result says which awd/probe_value.py it imported."""
    for pkg in PROJECT_PACKAGES:
        shutil.copytree(ROOT / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "pipeline" / "units" / "probe.py").write_text(textwrap.dedent(PROBE_UNIT))
    set_value(dest, value)
    return dest


def set_value(project: Path, value: str) -> None:
    (project / "awd" / "probe_value.py").write_text(f"VALUE = {value!r}\n")


def probe_key(code: str) -> str:
    return unit_key("probe", {}, code)


def run_in(project: Path, code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Python in a fresh interpreter whose checkout is `project` (as a job's would be)."""
    env = dict(os.environ, PYTHONPATH=str(project))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=project, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture()
def project(tmp_path):
    return make_project(tmp_path / "checkout")


@pytest.fixture()
def written(project, tmp_path):
    store = tmp_path / "store"
    digest = code_digest("pipeline.units.probe", root=project)
    return store, digest, write_snapshot(store, "pipeline.units.probe", digest, root=project)


def test_snapshot_is_content_addressed_read_only_and_complete(project, written):
    store, digest, dest = written
    # per user: the uid the driver (and so its jobs) runs as
    assert dest == snapshot_path(store, digest) and dest.parent.parent.name == f"u{os.geteuid()}"
    assert dest.parents[2].name == "_code" and dest.parent.name == digest[:2]
    manifest = verify_snapshot(store, digest)
    assert set(manifest["files"]) == {"awd", "awd.weight_decay", "awd.train_config", "awd.checks", "awd.methods",
                                     "awd.probe_value", "pipeline", "pipeline.units", "pipeline.units.probe"}
    # awd/__init__.py imports awd.weight_decay, which takes its method names from awd.train_config and resolves
    # methods through awd.methods
    assert (dest / "awd" / "probe_value.py").read_text() == "VALUE = 'before'\n"
    for path in [dest, *dest.rglob("*")]:
        assert not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH), path
    # written once: the same digest again (another stage, another driver) reuses it untouched
    mtime = (dest / "awd" / "probe_value.py").stat().st_mtime_ns
    assert write_snapshot(store, "pipeline.units.probe", digest, root=project) == dest
    assert (dest / "awd" / "probe_value.py").stat().st_mtime_ns == mtime


def test_a_checkout_edited_after_the_key_was_computed_is_refused(project, tmp_path):
    digest = code_digest("pipeline.units.probe", root=project)
    set_value(project, "after")
    with pytest.raises(SnapshotError, match="changed after its units' keys were computed"):
        write_snapshot(tmp_path / "store", "pipeline.units.probe", digest, root=project)


def _writable(path: Path) -> None:
    for p in [path, *path.parents][:4]:
        os.chmod(p, os.stat(p).st_mode | stat.S_IWUSR)


@pytest.mark.parametrize("tamper, message", [
    (lambda d: (_writable(d / "awd" / "probe_value.py"), (d / "awd" / "probe_value.py").write_text("VALUE = 'evil'\n")),
     r"awd/probe_value.py was modified"),
    (lambda d: (_writable(d / "awd" / "probe_value.py"),
                (d / "awd" / "probe_value.py").write_text("VALUE = 'before'  # same code, other bytes\n")),
     r"awd/probe_value.py was modified"),
    (lambda d: (_writable(d / "awd"), (d / "awd" / "__pycache__").mkdir(),
                (d / "awd" / "__pycache__" / "probe_value.cpython-311.pyc").write_bytes(b"\0")),
     r"unexpected file\(s\) \['awd/__pycache__/probe_value.cpython-311.pyc'\]"),
    (lambda d: (_writable(d / "awd"), os.chmod(d / "awd" / "probe_value.py", 0o644),
                (d / "awd" / "probe_value.py").unlink()), r"missing file\(s\) \['awd/probe_value.py'\]"),
])
def test_a_tampered_snapshot_makes_the_job_refuse_with_a_clear_error(written, tamper, message):
    store, digest, dest = written
    tamper(dest)
    with pytest.raises(SnapshotError, match=message):
        verify_snapshot(store, digest)
    # the job: the unit is refused with the reason in its error.txt, nothing of the snapshot is imported
    out = run_in(store.parent / "checkout", f"""
        import sys
        from jobs.job import Unit, UnitError, execute_units
        unit = Unit("probe", {probe_key(digest)!r}, {PROBE!r}, {{}}, code={digest!r})
        try:
            execute_units({str(store)!r}, [unit])
        except UnitError as e:
            print("refused:", e)
        assert "awd.probe_value" not in sys.modules
    """)
    assert out.returncode == 0 and "refused: 1 of 1 units failed" in out.stdout, out.stderr
    error = (store / "probe" / probe_key(digest)[:2] / probe_key(digest) / "error.txt").read_text()
    assert error.startswith("SnapshotError: code snapshot") and "not safe to run" in error
    assert not (store / "probe" / probe_key(digest)[:2] / probe_key(digest) / "manifest.json").exists()


def test_the_job_imports_the_snapshot_not_the_edited_checkout(project, written):
    store, digest, dest = written
    set_value(project, "after")  # e.g. a `git pull` while the job was queued
    out = run_in(project, f"""
        import json
        from jobs.store import RunStore
        from jobs.job import Unit, execute_units
        unit = Unit("probe", {probe_key(digest)!r}, {PROBE!r}, {{}}, code={digest!r})
        execute_units({str(store)!r}, [unit])
        execute_units({str(store)!r}, [unit])  # a requeued job starts over: verified and imported again
        print(json.dumps(RunStore({str(store)!r}).result("probe", unit.key)))
    """)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"value": "before", "file": str(dest / "awd" / "probe_value.py")}
    manifest = json.loads((store / "probe" / probe_key(digest)[:2] / probe_key(digest) / "manifest.json").read_text())
    assert manifest["meta"]["code"] == digest


def test_a_module_outside_the_snapshot_is_refused_not_taken_from_the_checkout(project, written):
    store, digest, _ = written
    (project / "awd" / "unkeyed.py").write_text("X = 1\n")
    out = run_in(project, f"""
        from jobs.snapshot import use_snapshot
        use_snapshot({str(store)!r}, {digest!r})
        import awd.probe_value
        try:
            import awd.unkeyed
        except ModuleNotFoundError as e:
            print("refused:", e)
    """)
    assert out.returncode == 0, out.stderr
    assert "refused: module 'awd.unkeyed' is not in the code snapshot" in out.stdout


def test_unit_code_that_imports_the_runner_cannot_be_snapshotted(project, tmp_path):
    (project / "pipeline" / "units" / "probe.py").write_text(PROBE_UNIT + "\nimport jobs.store\n")
    digest = code_digest("pipeline.units.probe", root=project)
    with pytest.raises(SnapshotError, match="imports jobs"):
        write_snapshot(tmp_path / "store", "pipeline.units.probe", digest, root=project)


def test_a_driver_refuses_to_submit_against_a_tampered_snapshot(project, written):
    store, digest, dest = written
    os.chmod(dest / "awd", 0o755)
    (dest / "awd" / "extra.py").write_text("X = 1\n")
    out = run_in(project, f"""
        from jobs.executors import ExecutorConfig
        from jobs.store import StoreError
        from jobs.driver import run_units
        from jobs.job import Unit
        unit = Unit("probe", {probe_key(digest)!r}, {PROBE!r}, {{}}, code={digest!r})
        try:
            run_units([unit], {str(store)!r}, ExecutorConfig(kind="local"), desc="probe")
        except StoreError as e:
            print("refused:", e)
    """)
    assert out.returncode == 0, out.stderr
    assert "refused: code snapshot" in out.stdout and "unexpected file(s) ['awd/extra.py']" in out.stdout
    assert "(nothing was submitted)" in out.stdout
    assert not (store / "probe").exists() and not (store / "_logs").exists()


PLUGIN_PROBE = '''
"""A unit that runs a plugin named in its config (test fixture)."""
import importlib


def plugin_unit(config, workdir, store):
    module = importlib.import_module(config["plugin"])
    return {"value": module.VALUE, "file": module.__file__}
'''


def test_a_plugin_is_snapshotted_with_the_unit_and_imported_from_the_snapshot(project, tmp_path):
    from jobs.keys import unit_code_digest

    (project / "pipeline" / "units" / "plugin_probe.py").write_text(PLUGIN_PROBE)
    (project / "myplugin").mkdir()
    (project / "myplugin" / "__init__.py").write_text("")
    (project / "myplugin" / "method.py").write_text("import awd.probe_value\nVALUE = 'plugin v1'\n")
    modules = ["pipeline.units.plugin_probe", "myplugin.method"]
    digest = unit_code_digest(modules, root=project)
    store = tmp_path / "store"
    dest = write_snapshot(store, modules, digest, root=project)
    files = verify_snapshot(store, digest)["files"]
    assert {"myplugin", "myplugin.method", "awd.probe_value", "pipeline.units.plugin_probe"} <= set(files)
    (project / "myplugin" / "method.py").write_text("VALUE = 'plugin v2'\n")  # edited after submission
    assert unit_code_digest(modules, root=project) != digest
    key = unit_key("probe", {"plugin": "myplugin.method"}, digest)
    out = run_in(project, f"""
        import json
        from jobs.store import RunStore
        from jobs.job import Unit, execute_units
        unit = Unit("probe", {key!r}, "pipeline.units.plugin_probe:plugin_unit", {{"plugin": "myplugin.method"}},
                    code={digest!r}, modules=("myplugin.method",))
        execute_units({str(store)!r}, [unit])
        print(json.dumps(RunStore({str(store)!r}).result("probe", unit.key)))
    """)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"value": "plugin v1", "file": str(dest / "myplugin" / "method.py")}


def test_why_a_plugin_unit_is_pending_names_the_file_that_changed(project, tmp_path):
    from jobs.job import Unit
    from jobs.keys import config_digest, unit_code_digest
    from jobs.store import RunStore
    from jobs.why import pending_reasons

    (project / "pipeline" / "units" / "plugin_probe.py").write_text(PLUGIN_PROBE)
    (project / "myplugin").mkdir()
    (project / "myplugin" / "__init__.py").write_text("")
    plugin_file = project / "myplugin" / "method.py"
    plugin_file.write_text("import awd.probe_value\nVALUE = 'plugin v1'\n")
    modules = ["pipeline.units.plugin_probe", "myplugin.method"]
    fn, config = "pipeline.units.plugin_probe:plugin_unit", {"plugin": "myplugin.method"}
    edits = [(lambda: set_value(project, "after"), "awd/probe_value.py changed"),
             (lambda: plugin_file.write_text("import awd.probe_value\nVALUE = 'v2'\n"), "myplugin/method.py changed")]
    for i, (edit, expected) in enumerate(edits):
        store = RunStore(tmp_path / f"store{i}")
        old = unit_code_digest(modules, root=project)
        write_snapshot(store.root, modules, old, root=project)
        store.commit("probe", unit_key("probe", {"old": old}, old), {"ok": True},
                     meta={"config": config_digest(config), "code": old})
        edit()
        new = unit_code_digest(modules, root=project)
        unit = Unit("probe", unit_key("probe", config, new), fn, config, code=new, modules=("myplugin.method",))
        assert pending_reasons([unit], store.root, root=project) == {unit.key: expected}


def test_the_job_runs_the_verified_bytes_even_if_the_file_changes_after_verification(written):
    store, digest, dest = written
    out = run_in(store.parent / "checkout", f"""
        import os
        from pathlib import Path
        from jobs.snapshot import use_snapshot
        use_snapshot({str(store)!r}, {digest!r})
        file = Path({str(dest / "awd" / "probe_value.py")!r})
        os.chmod(file.parent, 0o755)
        os.chmod(file, 0o644)
        file.write_text("VALUE = 'swapped'\\n")  # after the check, before the (lazy) import
        os.utime(file, (1, 1))
        import awd.probe_value
        print(awd.probe_value.VALUE, awd.probe_value.__file__ == str(file))
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["before", "True"]


def test_a_snapshot_anyone_else_may_write_is_refused(written):
    store, digest, dest = written
    os.chmod(dest / "awd" / "probe_value.py", 0o664)  # a member of the group could rewrite it
    with pytest.raises(SnapshotError, match=r"awd/probe_value.py is writable by group or others \(mode 0664\)"):
        verify_snapshot(store, digest)
    os.chmod(dest / "awd" / "probe_value.py", 0o444)
    os.chmod(dest / "awd", 0o775)
    with pytest.raises(SnapshotError, match=r"awd/ is writable by group or others"):
        verify_snapshot(store, digest)


def test_a_symlink_in_a_snapshot_is_refused_never_followed(written, tmp_path):
    store, digest, dest = written
    os.chmod(dest / "awd", 0o755)
    target = dest / "awd" / "probe_value.py"
    (tmp_path / "elsewhere.py").write_bytes(target.read_bytes())
    os.chmod(target, 0o644)
    target.unlink()
    target.symlink_to(tmp_path / "elsewhere.py")
    with pytest.raises(SnapshotError, match=r"awd/probe_value.py is not a regular file"):
        verify_snapshot(store, digest)


def test_a_snapshot_of_the_layout_before_per_user_directories_is_still_run(project, written):
    store, digest, dest = written
    legacy = store / "_code" / digest[:2] / digest  # what earlier versions wrote, queued jobs may still name
    legacy.parent.mkdir()
    os.rename(dest, legacy)
    assert verify_snapshot(store, digest)["digest"] == digest
    out = run_in(project, f"""
        from jobs.snapshot import use_snapshot
        print(use_snapshot({str(store)!r}, {digest!r}))
        import awd.probe_value
        print(awd.probe_value.VALUE)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(legacy), "before"]
