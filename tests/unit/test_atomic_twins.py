"""awd/checkpoint.py keeps a copy of jobs/atomic.py's writer (awd imports nothing of jobs): both follow one
durability policy. Each writes the whole file, fsyncs the file then its directory, renames over the target, and
leaves the old file and no temporary when the write fails."""

import os

import pytest

import awd.checkpoint
import jobs.atomic

WRITERS = [pytest.param(jobs.atomic.atomic_write_bytes, id="jobs.atomic"),
           pytest.param(awd.checkpoint._atomic_write_bytes, id="awd.checkpoint")]


@pytest.mark.parametrize("write", WRITERS)
def test_the_file_then_its_directory_are_fsynced_around_the_rename(tmp_path, monkeypatch, write):
    target = tmp_path / "sub" / "f.bin"
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync file")
        real_fsync(fd)

    def replace(src, dst, **kwargs):
        events.append("rename")
        real_replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write(target, b"new")
    assert events == ["fsync file", "rename", "fsync dir"]
    assert target.read_bytes() == b"new" and os.listdir(target.parent) == ["f.bin"]


@pytest.mark.parametrize("write", WRITERS)
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch, write):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    def broken(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="No space left"):
        write(target, b"new")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.bin"]
