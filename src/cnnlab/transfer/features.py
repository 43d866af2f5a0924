"""Feature extraction from a pretrained CNN (Part A).

Several layers come out of ONE forward pass: torchvision's ``create_feature_extractor`` picks the
nodes by name, and we insert a ``clone`` right after each requested node so that a later in-place
ReLU (VGG, SqueezeNet) cannot overwrite the value we return. 4-D feature maps are average-pooled
over space (or flattened, on request); every vector is L2-normalised (``normalize=False`` keeps raw activations, for training a head).

Raw (pooled, un-normalised) features go into a disk cache keyed by model, weights, layer, data and
preprocessing, so a sweep over layers and C values extracts each image once. They are written in
chunks of ``CHUNK_IMAGES`` (each written then renamed), so memory stays bounded on large folders, a
killed extraction resumes at its first missing chunk, and under torchrun the ranks share the chunks;
rank 0 merges them into one ``.npy`` per layer that any single process memory-maps.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab import distributed
from cnnlab.data.imageset import ImageSet, Skipped
from cnnlab.errors import CnnlabError
from cnnlab.models.layers import resolve_layers
from cnnlab.models.registry import ModelBundle
from cnnlab.precision import PRECISIONS, autocast, memory_format, use_bf16
from cnnlab.progress import progress_bar
from cnnlab.runs import atomic_write_text, cache_dir

log = logging.getLogger("cnnlab")

CHUNK_IMAGES = 512  # images per cache part: the unit of resuming and of sharding across ranks


def make_extractor(model: nn.Module, nodes: list[str]) -> nn.Module:
    """A module returning ``{node: tensor}`` for ``nodes`` from one forward pass, each output
    cloned immediately after it is computed (safe from later in-place ops)."""
    from torchvision.models.feature_extraction import create_feature_extractor

    gm = create_feature_extractor(model, return_nodes={n: n for n in nodes})
    graph = gm.graph
    out_node = next(n for n in graph.nodes if n.op == "output")
    returned = out_node.args[0]
    cloned = {}
    for key, node in returned.items():
        with graph.inserting_after(node):
            cloned[key] = graph.call_function(torch.clone, (node,))
    out_node.args = (cloned,)
    graph.lint()
    gm.recompile()
    return gm.eval()


SPATIAL = ("avg", "spp", "flatten")


def pool_features(t: torch.Tensor, spatial: str = "avg", normalize: bool = True) -> torch.Tensor:
    """B×C×H×W → B×C (``avg``), B×5C (``spp``: the mean over the whole map, then over each of its 2×2
    quadrants: where things are, not only what, which helps scenes) or B×CHW (``flatten``); 2-D stays;
    then L2-normalise rows."""
    if t.dim() > 2:
        if spatial == "avg":
            t = t.flatten(2).mean(-1)
        elif spatial == "spp":
            t = torch.cat([t.flatten(2).mean(-1), F.adaptive_avg_pool2d(t, 2).flatten(1)], 1)
        else:
            t = t.flatten(1)
    t = t.float()
    return t / t.norm(dim=1, keepdim=True).clamp_min(1e-12) if normalize else t


class CompiledExtractor:
    """``torch.compile`` of an extractor with frozen weights (inductor): each convolution fused with
    its ReLU, weights prepacked once. Up to 1.1× eager fp32 throughput on CPU (VGG16, 2 threads: 89–95%
    of the matmul rate, eager 86–93%) after a one-off compilation of 4–60 s: for thousands of images,
    not a few. Batches shorter than the first are padded to its size (one compiled shape, no
    recompilation for a last short batch).
    Without a working compiler (no C++ toolchain, an unsupported op) it warns once and runs eagerly."""

    def __init__(self, extractor: nn.Module):
        self.eager = extractor
        self.compiled = torch.compile(extractor, dynamic=False, options={"freezing": True})
        self.batch: int | None = None

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.compiled is None:
            return self.eager(x)
        n = len(x)
        self.batch = self.batch or n
        if n > self.batch:
            return self.eager(x)
        if n < self.batch:  # keep the caller's memory format: the compiled code was specialised on it
            fmt = torch.channels_last if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) \
                else torch.contiguous_format
            x_in = torch.cat([x, x[-1:].expand(self.batch - n, *x.shape[1:])]).contiguous(memory_format=fmt)
        else:
            x_in = x
        try:
            outs = self.compiled(x_in)
        except Exception as e:  # compilation happens at the first call: any failure there means eager
            log.warning("--compile: torch.compile failed (%s: %s); extracting without it",
                        type(e).__name__, str(e).splitlines()[0][:200] if str(e) else "")
            self.compiled = None
            return self.eager(x)
        return {k: v[:n] for k, v in outs.items()}


@dataclass
class Features:
    """Extracted features of one dataset: ``arrays[layer]`` (N×D float32, L2-normalised, maybe a memmap)."""

    arrays: dict[str, np.ndarray]
    labels: np.ndarray
    classes: list[str]
    seconds: float  # extraction time (0 when everything came from the cache)
    cached_layers: list[str]


def _cache_key(bundle: ModelBundle, node: str, dataset: ImageSet, spatial: str, tta: str, bf16: bool) -> str:
    desc = {"arch": bundle.arch, "weights": bundle.weights_id, "node": node, "data": dataset.fingerprint,
            "size": bundle.input_size, "mean": bundle.mean, "std": bundle.std, "channels": bundle.in_channels,
            "spatial": spatial, "tta": tta, "v": 2}
    if bf16:  # (fp32 keys are unchanged from before precision existed)
        desc["precision"] = "bf16"
    desc = json.dumps(desc, sort_keys=True)
    return hashlib.sha1(desc.encode()).hexdigest()[:20]


def extract_features(bundle: ModelBundle, dataset: ImageSet, layers: list[str], *, batch_size: int = 32,
                     spatial: str = "avg", use_cache: bool = True, cache: str | os.PathLike | None = None,
                     num_workers: int = 0, progress: str | None = "extracting features",
                     input_transform=None, normalize: bool = True, tta: str = "none",
                     precision: str = "auto", compile: bool = False) -> Features:
    """Features of ``dataset`` at ``layers`` (aliases or node names) in one pass per missing layer set.

    ``input_transform`` (optional) maps a uint8 batch to another uint8 batch before the model's
    preprocessing (e.g. 8×8 UCI digits → MNIST geometry); it is part of the cache key through its name.
    ``precision``: auto (default: bf16 autocast where the CPU has native bf16, i.e. AVX512-BF16/AMX,
    where it is faster and its features close to fp32's: docs/checks/part_a.md; fp32 elsewhere),
    fp32 or bf16. ``compile``: see :class:`CompiledExtractor` (same features up to
    float rounding, so it shares the cache).
    """
    nodes = resolve_layers(bundle.arch, bundle.model, layers)
    folder = Path(cache) if cache else cache_dir("features")
    tname = getattr(input_transform, "__name__", "none") if input_transform else "none"
    if tta not in ("none", "flip"):
        raise CnnlabError(f"--tta {tta!r}: choose none or flip")
    if spatial not in SPATIAL:
        raise CnnlabError(f"--spatial {spatial!r}: choose one of {', '.join(SPATIAL)}")
    if precision not in PRECISIONS:
        raise CnnlabError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    bf16 = use_bf16(precision, bundle.device)
    keys = {name: _cache_key(bundle, node, dataset, spatial, tta, bf16) + ("" if tname == "none" else "-" + tname)
            for name, node in nodes.items()}
    arrays: dict[str, np.ndarray] = {}
    labels = None
    if use_cache:
        for name, key in keys.items():
            f, lf = folder / f"{key}.npy", folder / f"{key}.labels.npy"
            if f.exists() and lf.exists():
                arrays[name] = np.load(f, mmap_mode="r")
                labels = np.load(lf)
                _read_skipped({name: f}, dataset)
    missing = [n for n in nodes if n not in arrays]
    seconds = 0.0
    if missing:
        t0 = time.perf_counter()
        new, labels = _extract(bundle, dataset, {n: nodes[n] for n in missing}, batch_size=batch_size,
                               spatial=spatial, tta=tta, num_workers=num_workers, progress=progress,
                               input_transform=input_transform, bf16=bf16, compile=compile,
                               out_files={n: folder / f"{keys[n]}.npy" for n in missing} if use_cache else None,
                               labels_files={n: folder / f"{keys[n]}.labels.npy" for n in missing} if use_cache else None)
        arrays.update(new)
        seconds = time.perf_counter() - t0
    if normalize:  # the cache holds raw activations (a new head trains on those): normalise on the way out
        arrays = {n: a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12) for n, a in arrays.items()}
    return Features({n: arrays[n] for n in nodes}, np.asarray(labels), list(dataset.classes), seconds,
                    [n for n in nodes if n not in missing])


def _chunks(n: int, batch_size: int) -> list[tuple[int, int]]:
    """Fixed image ranges: the unit of sharding across ranks and of resuming a killed extraction."""
    size = batch_size * max(1, CHUNK_IMAGES // batch_size)
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def _save_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


@torch.inference_mode()
def _extract(bundle, dataset, nodes: dict[str, str], *, batch_size, spatial, tta, num_workers, progress, input_transform,
             out_files, labels_files, bf16=False, compile=False):
    """Extract ``nodes`` chunk by chunk. With a cache (``out_files``), each finished chunk is saved in a
    parts folder: a killed run resumes at the first missing chunk, and under torchrun each rank takes
    every world_size-th chunk; rank 0 then merges the parts into one memmap-able ``.npy`` per layer."""
    fmt = memory_format(bundle.device)
    with torch.inference_mode(False):  # weights re-laid out here must stay trainable (fine-tuning after extraction)
        bundle.model.to(memory_format=fmt)  # NHWC: faster oneDNN/cuDNN convolutions, same values
    wanted = sorted(set(nodes.values()))
    if compile:  # kept on the bundle: the test split (or a second call) reuses the train split's compilation
        compiled = bundle.extra.setdefault("compiled_extractors", {})
        # frozen weights are constants of the compiled code: a model changed since (fine-tuned) is compiled anew
        key = (tuple(wanted), str(fmt), tuple((q.data_ptr(), q._version) for q in bundle.model.parameters()))
        if key not in compiled:
            compiled[key] = CompiledExtractor(make_extractor(bundle.model, wanted))
        extractor = compiled[key]
    else:
        extractor = make_extractor(bundle.model, wanted)
    chunks = _chunks(len(dataset), batch_size)

    def run_chunk(start: int, end: int, bar) -> tuple[dict[str, np.ndarray], np.ndarray, list]:
        sub = dataset.subset(range(start, end))
        sub.skipped = []  # only what this chunk finds
        feats: dict[str, list[np.ndarray]] = {name: [] for name in nodes}
        ys = []
        for images, labels in sub.batches(batch_size, num_workers=num_workers):
            bar.update(1)
            if len(images) == 0:
                continue
            if input_transform is not None:
                images = input_transform(images)
            x = bundle.preprocess(images.to(bundle.device, non_blocking=True))
            if tta == "flip":
                x = torch.cat([x, x.flip(-1)])
            with autocast(bundle.device, bf16):
                outs = extractor(x.contiguous(memory_format=fmt) if x.dim() == 4 else x)
            for name, node in nodes.items():
                out = outs[node].float()
                if tta == "flip" and out.dim() == 4:  # mirror the mirror image's map back, so cells line up
                    out = torch.cat([out[:len(images)], out[len(images):].flip(-1)])
                feat = pool_features(out, spatial, normalize=False)
                if tta == "flip":  # mean of the image's and its mirror's features
                    feat = 0.5 * (feat[:len(images)] + feat[len(images):])
                feats[name].append(feat.float().cpu().numpy())
            ys.append(labels.numpy())
        cat = {n: np.concatenate(f) if f else np.zeros((0, 0), np.float32) for n, f in feats.items()}
        return cat, (np.concatenate(ys) if ys else np.zeros(0, np.int64)), [(s.path, s.reason) for s in sub.skipped]

    def batches_of(todo) -> int:
        return sum(-(-(e - s) // batch_size) for s, e in todo)

    if out_files is None:  # no cache: every rank extracts everything in memory
        parts = []
        with progress_bar(total=batches_of(chunks), desc=progress, disable=progress is None) as bar:
            for s, e in chunks:
                feats, ys, skipped = run_chunk(s, e, bar)
                dataset.skipped.extend(Skipped(p, r) for p, r in skipped)
                parts.append((feats, ys))
        return _concat(parts, nodes), np.concatenate([ys for _, ys in parts]) if parts else np.zeros(0, np.int64)

    folder = next(iter(out_files.values())).parent
    folder.mkdir(parents=True, exist_ok=True)
    keys = {name: out_files[name].name[:-len(".npy")] for name in nodes}
    parts_dir = folder / ("parts-" + hashlib.sha1(",".join(sorted(keys.values())).encode()).hexdigest()[:16])
    parts_dir.mkdir(exist_ok=True)
    if distributed.is_main():  # a merge killed mid-write (SIGKILL) left its temporaries: they are redone below
        for key in keys.values():
            for stale in list(folder.glob(f"{key}*.tmp.npy")) + list(folder.glob(f".{key}*.tmp")):
                stale.unlink(missing_ok=True)
    mine = chunks[distributed.rank()::distributed.world_size()]
    todo = [(s, e) for s, e in mine if not (parts_dir / f"{s:09d}.json").exists()]
    if len(todo) < len(mine):
        log.info("resuming extraction: %d of %d chunks already done", len(mine) - len(todo), len(mine))
    with progress_bar(total=batches_of(todo), desc=progress, disable=progress is None) as bar:
        for s, e in todo:
            feats, ys, skipped = run_chunk(s, e, bar)
            for name in nodes:
                _save_atomic(parts_dir / f"{s:09d}-{keys[name]}.npy", feats[name])
            _save_atomic(parts_dir / f"{s:09d}.labels.npy", ys)
            # the chunk's record comes last: its presence means the chunk is complete
            atomic_write_text(parts_dir / f"{s:09d}.json", json.dumps({"rows": int(len(ys)), "skipped": skipped}))
    distributed.barrier()
    if distributed.is_main():
        _merge(parts_dir, chunks, keys, out_files, labels_files)
    distributed.barrier()
    _read_skipped(out_files, dataset)
    return {n: np.load(out_files[n], mmap_mode="r") for n in nodes}, np.load(next(iter(labels_files.values())))


def _concat(parts, nodes) -> dict[str, np.ndarray]:
    out = {}
    for name in nodes:
        arrays = [f[name] for f, _ in parts if len(f[name])]
        out[name] = np.concatenate(arrays) if arrays else np.zeros((0, 0), np.float32)
    return out


def _merge(parts_dir: Path, chunks, keys: dict[str, str], out_files, labels_files) -> None:
    """Parts → one ``.npy`` per layer, copied chunk by chunk (bounded memory), written then renamed."""
    metas = [json.loads((parts_dir / f"{s:09d}.json").read_text()) for s, _ in chunks]
    rows = sum(m["rows"] for m in metas)
    labels = np.concatenate([np.load(parts_dir / f"{s:09d}.labels.npy") for s, _ in chunks]) if chunks else \
        np.zeros(0, np.int64)
    skipped = [item for m in metas for item in m["skipped"]]
    for name, key in keys.items():
        first = next((np.load(parts_dir / f"{s:09d}-{key}.npy", mmap_mode="r") for (s, _), m in zip(chunks, metas)
                      if m["rows"]), None)
        dim = first.shape[1] if first is not None else 0
        tmp = out_files[name].with_suffix(".merge.tmp.npy")
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(rows, dim))
        row = 0
        for (s, _), m in zip(chunks, metas):
            if m["rows"]:
                out[row:row + m["rows"]] = np.load(parts_dir / f"{s:09d}-{key}.npy", mmap_mode="r")
                row += m["rows"]
        out.flush()
        del out
        _save_atomic(labels_files[name], labels)
        atomic_write_text(out_files[name].with_suffix(".skipped.json"), json.dumps(skipped))
        os.replace(tmp, out_files[name])  # features last: their presence means "complete"
    shutil.rmtree(parts_dir, ignore_errors=True)


def _read_skipped(out_files, dataset) -> None:
    """Files that failed to decode during an extraction (this run's, another rank's or an earlier run's)."""
    known = {s.path for s in dataset.skipped}
    f = next(iter(out_files.values())).with_suffix(".skipped.json")
    if f.exists():
        for path, reason in json.loads(f.read_text()):
            if path not in known:
                dataset.skipped.append(Skipped(path, reason))
                known.add(path)


def feature_info(feats: Features) -> dict:
    return {name: {"dim": int(a.shape[1]), "n": int(a.shape[0])} for name, a in feats.arrays.items()}


def describe_cache(folder: str | os.PathLike | None = None) -> str:
    folder = Path(folder) if folder else cache_dir("features")
    files = list(folder.glob("*.npy"))
    size = sum(f.stat().st_size for f in files)
    text = f"{len([f for f in files if not f.name.endswith('.labels.npy')])} cached feature arrays, {size / 1e6:.1f} MB in {folder}"
    atomic_write_text(folder / "README.txt", "cnnlab feature cache; safe to delete.\n")
    return text
