"""AutoAttack (Croce & Hein, L∞) for the final test, in blocks whose results do not depend on sharding.

AutoAttack runs through the `pyautoattack` package. Its attacks reseed the global RNG at every call and draw
their random starts over the whole batch, so an example's result depends on which examples share its batch.
To make sharding invisible, the test set is cut into blocks aligned to absolute indices
(block b = examples [b·block_size, (b+1)·block_size)), each block is attacked on its own with seed `seed + b`,
and shard boundaries must fall on block boundaries: an unsharded run and any set of merged shards then perform
exactly the same computations.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch

from awd.attacks import _check_fraction, _check_inputs, _frozen
from awd.checkpoint import load_checkpoint, save_checkpoint
from awd.checks import check_int

log = logging.getLogger(__name__)

AA_VERSIONS = ("standard", "plus", "rand", "custom")
AA_ATTACKS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
_STATE_FORMAT = 1


def _digest(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().to("cpu").contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _load_state(path: Path, fingerprint: dict) -> dict:
    fresh = {"format": _STATE_FORMAT, "fingerprint": fingerprint, "blocks": {}, "partial": None}
    if not path.exists():
        return fresh
    try:
        state = load_checkpoint(path)
    except Exception as err:  # an unreadable cache is recomputed rather than trusted
        warnings.warn(f"autoattack state_path {str(path)!r} is unreadable ({err}); starting the shard over", stacklevel=2)
        return fresh
    if state.get("format") != _STATE_FORMAT or state.get("fingerprint") != fingerprint:
        warnings.warn(f"autoattack state_path {str(path)!r} was written for a different model, data or settings;"
                      " starting the shard over", stacklevel=2)
        return fresh
    return state


def _attack_list(version: str, attacks) -> list[str]:
    if version not in AA_VERSIONS:
        raise ValueError(f"version must be one of {AA_VERSIONS}, got {version!r}")
    if version != "custom":
        if attacks is not None:
            raise ValueError(f"attacks is only allowed with version='custom', got attacks={attacks!r} "
                             f"with version={version!r}")
        return []  # filled from the package's own version settings
    if not attacks or isinstance(attacks, str) or any(a not in AA_ATTACKS for a in attacks) \
            or len(set(attacks)) != len(attacks):
        raise ValueError(f"attacks must be a non-empty list of distinct names from {AA_ATTACKS} with "
                         f"version='custom', got {attacks!r}")
    return list(attacks)


def _standard_settings(aa) -> None:
    """A custom list runs each attack as the standard version does (pyautoattack 0.2's `_set_version("standard")`
    for L∞; a unit test pins these against it). The package's custom defaults differ: APGD-CE and APGD-DLR restart
    5 times and FAB 5 times, where the standard version restarts each once; "the first two attacks of standard
    AutoAttack" must be those attacks as the standard version runs them."""
    aa.apgd.n_restarts = 1
    aa.apgd_targeted.n_restarts = 1
    aa.apgd_targeted.n_target_classes = 9
    aa.fab.n_restarts = 1
    aa.fab.n_target_classes = 9
    aa.square.n_queries = 5000


@contextmanager
def _log_to(log_path):
    if log_path is None:
        yield
        return
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    loggers = [logging.getLogger("auto-attack"), log]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.removeHandler(handler)
            lg.setLevel(level)
        handler.close()


def autoattack(model, x, y, *, eps, version="standard", attacks=None, seed=0, batch_size=256, block_size=None,
               state_path=None, start=0, stop=None, device=None, log_path=None) -> dict:
    """Runs AutoAttack (L∞) on the shard [start, stop) of the test set (x, y); x holds pixels in [0, 1].

    Returns {"start", "stop", "n", "correct", "clean_correct"}: per-example robust and clean correctness of the
    shard as CPU bool tensors. Examples are attacked in blocks of `block_size` (default: `batch_size`) aligned to
    absolute indices, block b with seed `seed + b`; `start` must be a multiple of `block_size` and `stop` one too
    or the end of the test set (see `shard_bounds`). With `state_path`, progress is saved after every attack of
    every block, and a restarted call with the same arguments continues from there with the same result.
    `attacks` picks the attacks of version="custom". The model runs in eval mode; its modes, `requires_grad`
    flags and the global RNG state are restored afterwards.
    """
    from pyautoattack import AutoAttack

    eps = _check_fraction("eps", eps)
    attack_names = _attack_list(version, attacks)
    seed = check_int("seed", seed, 0)
    batch_size = check_int("batch_size", batch_size, 1)
    block_size = batch_size if block_size is None else check_int("block_size", block_size, 1)
    _check_inputs(x, y)
    if x.ndim != 4:
        raise ValueError(f"x must be N×C×H×W images for AutoAttack, got shape {tuple(x.shape)}")
    total = x.shape[0]
    stop = total if stop is None else stop
    start = check_int("start", start, 0)
    stop = check_int("stop", stop, 0)
    if not start < stop <= total:
        raise ValueError(f"shard [start, stop) = [{start}, {stop}) must satisfy 0 <= start < stop <= {total} "
                         f"(the test set size)")
    if start % block_size or (stop % block_size and stop != total):
        raise ValueError(f"shard [{start}, {stop}) must start on a multiple of block_size={block_size} and end on "
                         f"one or at the test set end {total}; use shard_bounds(n, shards, block_size)")
    lo, hi = float(x[start:stop].min()), float(x[start:stop].max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"x must hold pixels in [0, 1], got values in [{lo}, {hi}]")
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)

    state_path = None if state_path is None else Path(state_path)
    if state_path is not None:
        fingerprint = {
            "eps": eps, "version": version, "attacks": attack_names, "seed": seed, "batch_size": batch_size,
            "block_size": block_size, "start": start, "stop": stop, "total": total,
            "data": _digest(x[start:stop], y[start:stop]), "model": _digest(*model.state_dict().values()),
        }
        state = _load_state(state_path, fingerprint)
    else:
        state = {"blocks": {}, "partial": None}

    def save():
        if state_path is not None:
            save_checkpoint(state, state_path)

    cuda = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    t_start = time.time()
    with _frozen(model, False), torch.random.fork_rng(devices=cuda), _log_to(log_path):
        for b in range(start // block_size, math.ceil(stop / block_size)):
            if b in state["blocks"]:
                log.info("block %d: restored from %s", b, state_path)
                continue
            b0, b1 = b * block_size, min((b + 1) * block_size, total)
            xb, yb = x[b0:b1].to(device), y[b0:b1].to(device)
            partial = state["partial"]
            if partial is not None and partial["block"] == b:
                clean, robust, done = partial["clean_correct"], partial["robust"].clone(), partial["attacks_done"]
            else:
                with torch.no_grad():
                    pred = torch.cat([model(xb[i:i + batch_size]).argmax(1) for i in range(0, len(xb), batch_size)])
                clean = (pred == yb).cpu()
                robust, done = clean.clone(), 0
            aa = AutoAttack(model, norm="Linf", eps=eps, version=version, seed=seed + b, device=device,
                            attacks=attack_names if version == "custom" else None)
            if version == "custom":
                _standard_settings(aa)
            sequence = list(aa.attacks_to_run)
            # One package call per attack, on the examples still robust, in index order: the same batches the
            # package would form itself, and a state after every attack that a resumed run continues exactly.
            for k in range(done, len(sequence)):
                idx = robust.nonzero().flatten()
                if idx.numel() == 0:
                    break
                aa.attacks_to_run = [sequence[k]]
                t0 = time.time()
                _, y_adv = aa.run_standard_evaluation(xb[idx.to(device)], yb[idx.to(device)], batch_size=batch_size)
                robust[idx[(y_adv != yb[idx.to(device)]).cpu()]] = False
                log.info("block %d [%d, %d) seed %d: %s robust %d/%d (%.1f s)", b, b0, b1, seed + b, sequence[k],
                         int(robust.sum()), b1 - b0, time.time() - t0)
                state["partial"] = {"block": b, "attacks_done": k + 1, "clean_correct": clean, "robust": robust}
                save()
            state["blocks"][b] = {"clean_correct": clean, "correct": robust}
            state["partial"] = None
            save()
    blocks = [state["blocks"][b] for b in range(start // block_size, math.ceil(stop / block_size))]
    correct = torch.cat([r["correct"] for r in blocks])
    clean_correct = torch.cat([r["clean_correct"] for r in blocks])
    log.info("shard [%d, %d): robust %d, clean %d of %d (%.1f s)", start, stop, int(correct.sum()),
             int(clean_correct.sum()), stop - start, time.time() - t_start)
    return {"start": start, "stop": stop, "n": stop - start, "correct": correct, "clean_correct": clean_correct}


def _flags(value, what: str, n: int) -> torch.Tensor:
    """Per-example outcomes as a bool tensor: a tensor/sequence of bools, or a '0'/'1' string (a stored result)."""
    if isinstance(value, str):
        if set(value) - {"0", "1"}:
            raise ValueError(f"{what}: a '0'/'1' string was expected, got other characters")
        flags = torch.tensor([c == "1" for c in value], dtype=torch.bool)
    else:
        flags = torch.as_tensor(value, dtype=torch.bool).flatten()
    if len(flags) != n:
        raise ValueError(f"{what}: {len(flags)} per-example flags, expected {n}")
    return flags


def merge_autoattack(shards, n: int | None = None) -> dict:
    """Merges the results of shards or blocks into {"robust_acc", "clean_acc", "n", "correct"}; the one merge of
    AutoAttack results (the attack stage uses it on its stored blocks).

    Each result holds `start`, `stop`, `n` (= stop - start), `correct` (per-example robust outcome: bools, or a
    '0'/'1' string as stored) and `clean_correct` (per-example clean outcome, or their count). The ranges must
    cover [0, n) exactly once — no gap and no overlap anywhere, whatever the order they come in — where `n` is
    the number of attacked examples when given (the last range must end there), else the largest `stop`.
    `correct` comes back as a '0'/'1' string in index order: what a paired (McNemar) comparison of two models
    attacked on the same examples needs.
    """
    shards = list(shards)
    if not shards:
        raise ValueError("merge_autoattack needs at least one shard result, got none")
    robust, clean = {}, {}
    for s in shards:
        start, stop = int(s["start"]), int(s["stop"])
        where = f"shard [{start}, {stop})"
        size = stop - start
        if size < 1 or s["n"] != size:
            raise ValueError(f"{where} is inconsistent: n={s['n']}, expected {size} (>= 1)")
        try:
            flags = _flags(s["correct"], f"{where}: robust", size)
            c = s["clean_correct"]
            if isinstance(c, int) and not isinstance(c, bool):
                if not 0 <= c <= size:
                    raise ValueError(f"{where}: clean count {c} outside [0, {size}]")
                clean_count = c
            else:
                clean_count = int(_flags(c, f"{where}: clean", size).sum())
        except ValueError as e:
            raise ValueError(f"{where} is inconsistent: {e}") from None
        robust[(start, stop)], clean[(start, stop)] = flags, clean_count
    ranges = sorted((int(s["start"]), int(s["stop"])) for s in shards)
    covered = 0
    for start, stop in ranges:
        if start > covered:
            raise ValueError(f"gap in AutoAttack shards: [{covered}, {start}) is missing before shard [{start}, {stop})")
        if start < covered:
            raise ValueError(f"overlapping AutoAttack shards: [{start}, {stop}) overlaps the range [0, {covered}) "
                             "covered by the shards before it")
        covered = stop
    if n is not None and covered != n:
        raise ValueError(f"AutoAttack shards cover [0, {covered}) but {n} examples were attacked: "
                         + (f"[{covered}, {n}) is missing" if covered < n else f"they run past {n}"))
    correct = torch.cat([robust[r] for r in ranges])
    total = len(correct)
    return {"robust_acc": correct.sum().item() / total, "clean_acc": sum(clean.values()) / total, "n": total,
            "correct": "".join("1" if c else "0" for c in correct.tolist())}


def save_shard(result: dict, path) -> None:
    """Writes a shard result atomically (plain tensors and ints only)."""
    save_checkpoint({"start": int(result["start"]), "stop": int(result["stop"]), "n": int(result["n"]),
                     "correct": torch.as_tensor(result["correct"], dtype=torch.bool).cpu(),
                     "clean_correct": torch.as_tensor(result["clean_correct"], dtype=torch.bool).cpu()}, path)


def load_shard(path) -> dict:
    shard = load_checkpoint(path)
    missing = {"start", "stop", "n", "correct", "clean_correct"} - set(shard)
    if missing:
        raise ValueError(f"{str(path)!r} is not an AutoAttack shard result: missing {sorted(missing)}")
    return shard
