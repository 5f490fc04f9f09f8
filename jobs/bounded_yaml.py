"""Settings files (params.yaml, executor.yaml) read under caps, so that no file content can exhaust memory, time or
the stack of the process reading it. Both are YAML 1.2, read by ruamel.yaml (as DVC reads params.yaml): `yes`, `no`,
`on` and `off` are strings, only `true`/`false` are booleans.

A YAML alias repeats a whole subtree without repeating its text: nine levels of ten aliases each are a 1 KB file
that expands to 10^9 nodes; loading it is cheap (the aliases share one object), but the first repr, JSON dump or
pydantic walk of it runs out of memory. A file of 100,000 `[` overflows every recursive reader (the composer first).
So every parser event is counted before the composer sees it: what the file would expand to, how deep, how long a
list; the read stops at the first cap exceeded, before the composer goes one level deeper or a value is built. Each
anchor's expanded size and height are remembered when it closes, so an alias costs one step however much it
repeats: the count is linear in the text.

`check_data` applies the same caps to data already parsed (an API caller of `pipeline.params.validate`), following
shared references (what YAML aliases become) the same way: memoised per object.
"""

from __future__ import annotations

import dataclasses
import io
import re
import typing as tp
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.parser import Parser

from jobs.checks import brief

__all__ = ["LIMITS", "Limits", "SettingsFileError", "check_data", "check_events", "dumps", "error_line", "load",
           "load_text", "read_text"]


@dataclasses.dataclass(frozen=True)
class Limits:
    """The caps, generous for real settings: configs/paper.yaml is 8.6 KB, 495 nodes, 8 levels deep, and has no list
    of more than 19 entries."""

    file_bytes: int = 256 * 1024
    nodes: int = 10_000  # every node of the document with every alias expanded
    depth: int = 32  # nested lists and mappings, aliases expanded
    items: int = 5_000  # entries of one list or mapping
    text: int = 64 * 1024  # characters of one scalar
    int_digits: int = 4_000  # Python refuses to read an int of more than 4300 digits, with a bare ValueError


LIMITS = Limits()
_DIGITS = re.compile(r"[-+]?[0-9_]+")
_NODES = {"ScalarEvent", "AliasEvent", "SequenceStartEvent", "MappingStartEvent"}
_ENDS = {"SequenceEndEvent", "MappingEndEvent"}


class SettingsFileError(ValueError):
    """A settings file over a cap, or not UTF-8 text: `<file>: <dotted.key>: <what, and the cap>`."""

    def __init__(self, source: str, key: str | None, message: str) -> None:
        self.source, self.key, self.message = source, key, message
        super().__init__(f"{source}: {message}" if key is None else f"{source}: {key or '<top level>'}: {message}")


def read_text(path: str | Path, source: str | None = None, limits: Limits = LIMITS) -> str:
    """The file's text, reading at most one byte past the cap (FileNotFoundError passes through, for the caller's
    own message)."""
    source = str(path) if source is None else source
    try:
        with open(path, "rb") as f:
            data = f.read(limits.file_bytes + 1)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise SettingsFileError(source, None, f"cannot be read: {e.strerror or e}") from None
    if len(data) > limits.file_bytes:
        raise SettingsFileError(source, None, f"file larger than {limits.file_bytes} bytes; a settings file may "
                                              f"have at most {limits.file_bytes} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise SettingsFileError(source, None, f"not UTF-8 text: byte {e.start} (line {line}) is "
                                              f"{data[e.start:e.start + 1]!r}; a settings file must be UTF-8") from None


@dataclasses.dataclass
class _Frame:
    mapping: bool
    anchor: str | None
    start: int  # expanded nodes before this one
    children: int = 0
    height: int = 1
    key: str = "?"


def _path(frames: list[_Frame]) -> str:
    """The dotted key of the node each frame is at (`suites.grid[0].lrs`)."""
    return "".join(f".{f.key}" if f.mapping else f"[{max(f.children - 1, 0)}]" for f in frames).lstrip(".")


class _Counter:
    """The caps over a stream of parser events, one event at a time (`see`)."""

    def __init__(self, source: str, limits: Limits) -> None:
        self.source, self.limits = source, limits
        self.sizes: dict[str, tuple[int, int]] = {}  # anchor -> (expanded nodes, height)
        self.frames: list[_Frame] = []
        self.total = 0
        self.too_deep = (f"nested more than {limits.depth} levels deep (aliases expanded); at most {limits.depth} "
                         "allowed")

    def fail(self, message: str, ev: tp.Any, of_parent: bool = False) -> tp.NoReturn:
        mark = getattr(ev, "start_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        frames = self.frames[:-1] if of_parent else self.frames
        raise SettingsFileError(self.source, _path(frames), message + where)

    def see(self, ev: tp.Any) -> None:
        limits, frames = self.limits, self.frames
        kind = type(ev).__name__
        if kind in _ENDS:
            done = frames.pop()
            size, height = self.total - done.start, done.height
            if done.anchor is not None:
                self.sizes[done.anchor] = (size, height)
            if frames:
                frames[-1].height = max(frames[-1].height, height + 1)
            return
        if kind not in _NODES:
            return
        if frames:
            parent = frames[-1]
            parent.children += 1
            entries = (parent.children + 1) // 2 if parent.mapping else parent.children
            if entries > limits.items:
                what = "mapping of more than" if parent.mapping else "list of more than"
                self.fail(f"a {what} {limits.items} entries; at most {limits.items} allowed", ev, of_parent=True)
            if parent.mapping and parent.children % 2 == 1:
                parent.key = brief(ev.value, 40).strip("'") if kind == "ScalarEvent" else "?"
        if kind == "AliasEvent":
            if any(f.anchor == ev.anchor for f in frames):
                self.fail(f"alias *{ev.anchor[:40]} refers to a node that contains it; a value cannot contain "
                          "itself", ev)
            size, height = self.sizes.get(ev.anchor, (1, 0))  # an undefined alias: the composer names it
        elif kind == "ScalarEvent":
            size, height = 1, 0
            if len(ev.value) > limits.text:
                self.fail(f"a value of {len(ev.value)} characters; at most {limits.text} allowed", ev)
            if not ev.style and len(ev.value) > limits.int_digits and _DIGITS.fullmatch(ev.value):  # plain
                self.fail(f"an integer of {len(ev.value)} digits; at most {limits.int_digits} allowed", ev)
        else:
            size, height = 1, 1
        self.total += size
        if self.total > limits.nodes:
            self.fail(f"the file expands to more than {limits.nodes} values (YAML aliases counted at every use); "
                      f"at most {limits.nodes} allowed", ev)
        if len(frames) + height > limits.depth:
            self.fail(self.too_deep, ev)
        if kind in ("SequenceStartEvent", "MappingStartEvent"):
            frames.append(_Frame(mapping=kind == "MappingStartEvent", anchor=ev.anchor, start=self.total - 1))
            return
        if kind == "ScalarEvent" and ev.anchor is not None:
            self.sizes[ev.anchor] = (1, 0)
        if frames:
            frames[-1].height = max(frames[-1].height, height + 1)


def check_events(events: tp.Iterable[tp.Any], source: str, limits: Limits = LIMITS) -> None:
    """Raises SettingsFileError at the first cap a YAML event stream (ruamel's `YAML().parse`) exceeds."""
    counter = _Counter(source, limits)
    for ev in events:
        counter.see(ev)


class _CappedParser(Parser):
    """ruamel's parser, each event counted as the composer takes it: one pass, and the composer never sees the
    event that exceeds a cap (it would recurse one level deeper, or build one more node)."""

    def get_event(self) -> tp.Any:
        ev = super().get_event()
        self.loader.caps.see(ev)
        return ev


def load(path: str | Path, *, source: str | None = None, limits: Limits = LIMITS) -> tp.Any:
    """The file's data, YAML 1.2 by ruamel.yaml's safe loader (pure Python). Raises SettingsFileError past a cap;
    ruamel's own YAMLError on a syntax error."""
    source = str(path) if source is None else source
    return load_text(read_text(path, source, limits), source, limits=limits)


def load_text(text: str, source: str, *, limits: Limits = LIMITS) -> tp.Any:
    """`load` of text already read (by `read_text`, within its byte cap)."""
    if len(text) > limits.file_bytes:
        raise SettingsFileError(source, None, f"more than {limits.file_bytes} characters; a settings file may have "
                                              f"at most {limits.file_bytes} bytes")
    reader = YAML(typ="safe", pure=True)
    reader.Parser = _CappedParser
    reader.caps = _Counter(source, limits)  # type: ignore[attr-defined]  # what _CappedParser counts with
    return reader.load(text)


def dumps(value: tp.Any, *, flow: bool = False) -> str:
    """YAML 1.2 text that `load` reads back as `value`, mappings in their own order; `flow`: on one line (a value
    written into a commented file)."""
    writer = YAML(typ="safe", pure=True)
    writer.default_flow_style = flow
    writer.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    writer.width = 10_000
    buf = io.StringIO()
    writer.dump(value, buf)
    text = buf.getvalue().removesuffix("...\n")  # a lone scalar's document end
    return text.strip() if flow else text


def error_line(e: Exception, source: str, text: str) -> str:
    """`<file>:<line>:<col>: invalid YAML: <what> (line L, column C)` for ruamel's error;
    a duplicate key also says where the key was first."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    context, problem = getattr(e, "context", None), getattr(e, "problem", None)
    if context is None and problem is None:
        return f"{source}: invalid YAML: {e}"
    what = " ".join(s for s in (context, problem) if s)
    dup = re.match(r'found duplicate key "(.*?)"', problem or "")
    if dup:
        what = f"{context}: found duplicate key {dup.group(1)!r}{_first_at(text, dup.group(1), e)}"
    if not mark:
        return f"{source}: invalid YAML: {what}"
    line, col = mark.line + 1, mark.column + 1
    return f"{source}:{line}:{col}: invalid YAML: {what} (line {line}, column {col})"


def _first_at(text: str, key: str, e: tp.Any) -> str:
    """' (first at line N)': the earlier line of a block mapping that starts with the duplicated key."""
    lines = text.splitlines()
    col = e.problem_mark.column
    for n in range(e.context_mark.line, e.problem_mark.line):
        if re.match(rf"{re.escape(key)}\s*:", lines[n][col:]) and not lines[n][:col].strip(" -"):
            return f" (first at line {n + 1})"
    return ""


def check_data(value: tp.Any, source: str, limits: Limits = LIMITS) -> None:
    """Raises SettingsFileError where parsed data exceeds the caps `load` applies to a file (shared sub-objects
    counted at every use, each measured once)."""
    memo: dict[int, tuple[int, int]] = {}
    inside: set[int] = set()
    total = 0

    def fail(path: tuple[str, ...], message: str) -> tp.NoReturn:
        raise SettingsFileError(source, "".join(path).lstrip("."), message)

    def count(n: int, path: tuple[str, ...]) -> None:
        nonlocal total
        total += n
        if total > limits.nodes:
            fail(path, f"more than {limits.nodes} values (shared values counted at every use); at most "
                       f"{limits.nodes} allowed")

    def walk(v: tp.Any, path: tuple[str, ...], level: int) -> int:
        if isinstance(v, str) and len(v) > limits.text:
            fail(path, f"a value of {len(v)} characters; at most {limits.text} allowed")
        if isinstance(v, int) and v.bit_length() > 4 * limits.int_digits:
            fail(path, f"an integer of {v.bit_length()} bits; at most {limits.int_digits} digits allowed")
        if not isinstance(v, (dict, list, tuple)):
            count(1, path)
            return 0
        ident = id(v)
        if ident in inside:
            fail(path, "a value that contains itself")
        if ident in memo:
            size, height = memo[ident]
            count(size, path)
        else:
            if len(v) > limits.items:
                fail(path, f"a {'mapping' if isinstance(v, dict) else 'list'} of {len(v)} entries; at most "
                           f"{limits.items} allowed")
            start, height = total, 1
            count(1, path)
            if level + 1 > limits.depth:
                fail(path, f"nested more than {limits.depth} levels deep; at most {limits.depth} allowed")
            inside.add(ident)
            if isinstance(v, dict):
                for k, child in v.items():
                    walk(k, path, level + 1)
                    height = max(height, 1 + walk(child, (*path, f".{brief(k, 40).strip(chr(39))}"), level + 1))
            else:
                for i, child in enumerate(v):
                    height = max(height, 1 + walk(child, (*path, f"[{i}]"), level + 1))
            inside.discard(ident)
            memo[ident] = (total - start, height)
        if level + height > limits.depth:
            fail(path, f"nested more than {limits.depth} levels deep; at most {limits.depth} allowed")
        return height

    walk(value, (), 0)
