"""Run folders: every command writes one.

A run folder holds ``config.json`` (resolved settings, seed, library versions), ``metrics.json`` and
CSV tables, ``figures/``, ``checkpoints/`` and ``log.txt``. Reports are built from these folders,
never from console output. All files are written atomically (temporary file, then rename), so an
interrupted command never leaves a half-written file behind.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch

from cnnlab.errors import CnnlabError

log = logging.getLogger("cnnlab")


# --------------------------------------------------------------------------- atomic writes
_UMASK = os.umask(0)  # read once (the only way to read it), restored at once
os.umask(_UMASK)

def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes 0600 files: give the permissions open() would
            os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of atomic writes that a killed process left in ``folder`` (only a
    SIGKILL or a power cut can leave one; nothing else writes into a run folder while it opens)."""
    stale = [p for p in Path(folder).rglob(".*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    if stale:
        log.info("removed %d temporary file(s) of an interrupted run in %s", len(stale), folder)
    return stale


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(obj: Any) -> Any:
    """Turn dataclasses, paths, numpy and torch scalars into plain JSON values."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None if np.isnan(obj) else (1e308 if obj > 0 else -1e308)
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


FLOAT32_MAX = float(np.finfo(np.float32).max)


def csv_value(v: Any) -> Any:
    """A float that is exactly a float32 (a tensor's ``.item()``) is written as its shortest float32
    form, ``0.937`` rather than ``0.9369999766349792``: the same number, without float64 noise."""
    if isinstance(v, float) and abs(v) <= FLOAT32_MAX and float(np.float32(v)) == v:
        return str(np.float32(v))
    return v


def write_csv(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write dict rows as CSV; the header is the union of keys in first-seen order."""
    rows = [{k: csv_value(v) for k, v in to_jsonable(r).items()} for r in rows]
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def save_torch(path: str | os.PathLike, obj: Any) -> Path:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def finished_round(folder: Path, r: int, net: torch.nn.Module, *, resume: bool, device) -> dict | None:
    """Round ``r`` of a round-based stage (pseudo-labels, DIRT-T) when a resumed run had finished it before
    an interruption: its weights (``round<r>.pt``) go into ``net`` and its row (``rounds.json``) is returned.
    None when the round still has to be trained."""
    done, weights = folder / "rounds.json", folder / f"round{r}.pt"
    if not (resume and weights.exists() and done.exists()):
        return None
    rows = read_json(done)
    if len(rows) <= r:
        return None
    net.load_state_dict(torch.load(weights, map_location=device, weights_only=True))
    return rows[r]


# --------------------------------------------------------------------------- seeds, devices, versions
def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a fresh ``torch.Generator`` for code that takes one."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU. An unavailable explicit choice is a clear error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise CnnlabError(f"--device {name!r} is not a device name ({e}); use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CnnlabError(f"--device {name}: CUDA is not available on this machine; use --device auto or cpu")
    return dev


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("cnnlab", "torch", "torchvision", "numpy", "scikit-learn", "scikit-image", "matplotlib"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def cache_dir(*parts: str) -> Path:
    """cnnlab's cache (extracted features, pretrained small networks, built datasets):
    ``$CNNLAB_CACHE`` or ``~/.cache/cnnlab``."""
    root = Path(os.environ.get("CNNLAB_CACHE") or Path.home() / ".cache" / "cnnlab")
    p = root.joinpath(*parts)
    p.mkdir(parents=True, exist_ok=True)
    return p


# --------------------------------------------------------------------------- the run folder
runs_created: list[Path] = []  # every run folder this process created, oldest first (see record_failure)


def record_failure(roots: Iterable[Path], message: str) -> None:
    """Append why a command failed to the ``log.txt`` of the run folders it had created: the folder
    then says that its run did not finish and why, not only how it started."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    for root in roots:
        try:
            with open(Path(root) / "log.txt", "a", encoding="utf-8") as f:
                f.write(f"{stamp} ERROR {message}\n")
        except OSError:
            pass  # the folder was removed or is not writable: nothing to record into


class Run:
    """One run folder. Create with :meth:`Run.create`; open an existing one with :meth:`Run.open`."""

    def __init__(self, root: Path):
        self.root = Path(root)

    # -- creation
    @classmethod
    def create(cls, out: str | os.PathLike, command: str, config: Any, seed: int,
               resume: bool = False) -> "Run":
        from cnnlab import distributed

        root = Path(out)
        if not distributed.is_main():  # under torchrun only rank 0 writes the run folder
            root = Path(tempfile.mkdtemp(prefix=f"cnnlab-rank{distributed.rank()}-"))
            if resume and Path(out).is_dir():  # resume from rank 0's files: the same checkpoints on every rank
                shutil.copytree(out, root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.tmp*", "log.txt"))
        distributed.barrier()  # every rank has read the folder before rank 0 writes its new config.json
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe = root / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as e:
            raise CnnlabError(f"--out {root}: cannot write there ({e.strerror}); choose a writable folder") from None
        remove_stale_temporaries(root)
        run = cls(root)
        from cnnlab.threads import machine

        cfg = {"command": command, "seed": seed, "config": to_jsonable(config),
               "argv": sys.argv, "versions": library_versions(), "machine": machine()}
        if resume and (root / "config.json").exists():
            old = read_json(root / "config.json")
            if old.get("config") != cfg["config"]:
                log.warning("resuming %s with a different config than it was started with", root)
        write_json(root / "config.json", cfg)
        run._attach_log()
        runs_created.append(root)
        log.info("%s: run folder %s", command, root)
        return run

    @classmethod
    def open(cls, root: str | os.PathLike) -> "Run":
        root = Path(root)
        if not (root / "config.json").exists():
            raise CnnlabError(f"{root} is not a cnnlab run folder (no config.json); pass a folder a cnnlab command wrote")
        return cls(root)

    def _attach_log(self) -> None:
        handler = logging.FileHandler(self.root / "log.txt", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        handler._cnnlab_run = str(self.root)  # type: ignore[attr-defined]
        logger = logging.getLogger("cnnlab")
        logger.addHandler(handler)
        logger.setLevel(min(logger.level or logging.INFO, logging.INFO))
        self._log_handler = handler

    def close(self) -> None:
        h = getattr(self, "_log_handler", None)
        if h is not None:
            logging.getLogger("cnnlab").removeHandler(h)
            h.close()
            self._log_handler = None

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- paths
    def path(self, *parts: str) -> Path:
        p = self.root.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    @property
    def figures(self) -> Path:
        p = self.root / "figures"
        p.mkdir(exist_ok=True)
        return p

    @property
    def checkpoints(self) -> Path:
        p = self.root / "checkpoints"
        p.mkdir(exist_ok=True)
        return p

    @property
    def config(self) -> dict:
        return read_json(self.root / "config.json")

    # -- metrics
    @property
    def metrics(self) -> dict:
        p = self.root / "metrics.json"
        return read_json(p) if p.exists() else {}

    def log_metrics(self, **values: Any) -> dict:
        """Merge ``values`` into ``metrics.json`` (top-level keys are replaced)."""
        m = self.metrics
        m.update(to_jsonable(values))
        write_json(self.root / "metrics.json", m)
        return m

    def write_table(self, name: str, rows: list[Mapping[str, Any]]) -> Path:
        """A metrics table as ``<name>.csv`` (and mirrored in metrics.json under ``tables``)."""
        path = write_csv(self.root / f"{name}.csv", rows)
        m = self.metrics
        m.setdefault("tables", {})[name] = to_jsonable(list(rows))
        write_json(self.root / "metrics.json", m)
        return path

    def save_figure(self, fig, name: str, dpi: int = 110) -> Path:
        """Save a matplotlib figure as ``figures/<name>.png`` and close it."""
        from cnnlab.plotting import pyplot

        plt = pyplot()

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        plt.close(fig)
        return atomic_write_bytes(self.figures / f"{name}.png", buf.getvalue())
