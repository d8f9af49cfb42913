"""``quantsuite pick``: the best evaluated GGUF variant that fits a RAM budget.

Memory model (bytes needed to serve with context ``n_ctx``)::

    need = size_bytes                       # weights, as the manifest measured them
         + kv_cache(n_ctx)                  # n_layer * n_ctx * n_head_kv * (k_dim + v_dim) * 2 (f16)
         + compute_buffer(n_ctx)            # llama.cpp scratch: logits + attention scores
         + FIXED_OVERHEAD_BYTES             # Python, FastAPI/uvicorn, llama.cpp runtime

The KV term is exact for llama.cpp's default f16 cache (checked against its own log line).
The compute buffer is an upper-bound estimate, n_vocab * n_batch * 4 bytes (the logits of
one batch) + n_ctx * n_batch * n_head * 4 bytes (attention scores): it is what makes large-
vocabulary models (Gemma: 256k tokens) cost far more than their weights suggest, so a fixed
number could not cover it. ``FIXED_OVERHEAD_BYTES`` (256 MiB) covers the process itself:
Python with FastAPI, uvicorn and llama_cpp imported is ~65 MiB RSS on x86-64/Python 3.11,
the rest is headroom for allocator slack, thread stacks and HTTP buffers. Check: serving
SmolLM2-135M Q4_1 with a 4096 context peaked at 322 MiB RSS after 1.5k-token prompts; the
formula says 352 MiB before the fixed overhead, 608 MiB with it (safe side by design).

Ranking: the mean of the accuracy metric over the tasks every fitting candidate was
evaluated on (so variants are compared on the same tasks), or the accuracy on ``task``;
ties go to the smaller variant. With several strategies per task, the best one counts
unless ``strategy`` is given; the serve command runs plain prompting, so pass
``strategy=`` to rank by the strategy you will actually use.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from quantsuite.errors import UserError

FIXED_OVERHEAD_BYTES = 256 * 1024 ** 2
DEFAULT_PICK_CTX = 4096
SCORE_METRICS = ("acc", "exact_match", "acc_norm")   # first one a run has is its score
_UNITS = {"": 1, "b": 1, "k": 10 ** 3, "kb": 10 ** 3, "m": 10 ** 6, "mb": 10 ** 6, "g": 10 ** 9, "gb": 10 ** 9,
          "t": 10 ** 12, "tb": 10 ** 12, "kib": 2 ** 10, "mib": 2 ** 20, "gib": 2 ** 30, "tib": 2 ** 40}


def parse_size(text: str | int) -> int:
    """'8GB' -> 8e9 bytes (decimal, the conservative reading), '8GiB' -> 8 * 2**30, '512MB', '1e9'."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise UserError(f"cannot read memory size '{text}' (examples: 8GB, 16GiB, 512MB)")
    value = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if value <= 0:
        raise UserError(f"memory size must be positive (got '{text}')")
    return int(value)


def human(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


@dataclass
class Candidate:
    model: str
    variant_id: str
    gguf: Path | None
    manifest_path: Path | None
    size_bytes: int
    scores: dict[str, float] = field(default_factory=dict)      # task -> accuracy
    strategies: dict[str, str] = field(default_factory=dict)    # task -> strategy that scored
    kv_bytes: int = 0
    compute_bytes: int = 0
    need_bytes: int = 0
    n_ctx: int = 0
    score: float = float("nan")
    reason: str = ""       # why it was not picked, if it was rejected

    @property
    def name(self) -> str:
        return f"{self.model}/{self.variant_id}"


@dataclass
class Pick:
    """The chosen variant, the numbers behind the choice, and the command to serve it."""

    chosen: Candidate
    ram_bytes: int
    task: str | None
    tasks: list[str]
    metric: str
    ranked: list[Candidate]        # fitting candidates, best first
    rejected: list[Candidate]      # with .reason
    overhead_bytes: int = FIXED_OVERHEAD_BYTES

    @property
    def command(self) -> str:
        target = self.chosen.manifest_path or self.chosen.gguf
        return f"quantsuite serve {shlex.quote(str(target))} --ctx {self.chosen.n_ctx}"

    def summary(self) -> str:
        c = self.chosen
        what = f"accuracy on {self.task}" if self.task else f"mean accuracy over {', '.join(self.tasks)}"
        return (f"{c.name}: {what} {c.score:.3f}; needs {human(c.need_bytes)} of {human(self.ram_bytes)} "
                f"(weights {human(c.size_bytes)} + KV cache {human(c.kv_bytes)} at {c.n_ctx} tokens + compute "
                f"{human(c.compute_bytes)} + overhead {human(self.overhead_bytes)})")


def memory_need(gguf: Path, size_bytes: int, n_ctx: int | None, n_batch: int = 512,
                overhead: int = FIXED_OVERHEAD_BYTES) -> tuple[int, int, int, int]:
    """(need, kv_bytes, compute_bytes, n_ctx used) for serving ``gguf`` as ``quantsuite serve`` would."""
    from quantsuite.ggufmeta import model_shape, read_metadata

    meta = read_metadata(gguf)
    shape = model_shape(meta, str(gguf))
    ctx = n_ctx or DEFAULT_PICK_CTX
    if shape.n_ctx_train:
        ctx = min(ctx, shape.n_ctx_train)
    n_vocab = meta.get(f"{shape.arch}.vocab_size") or getattr(meta.get("tokenizer.ggml.tokens"), "n", 0) or 0
    batch = min(n_batch, ctx)
    kv = shape.kv_cache_bytes(ctx)
    compute = int(n_vocab) * batch * 4 + ctx * batch * shape.n_head * 4
    return size_bytes + kv + compute + overhead, kv, compute, ctx


def _locate(manifest: dict, search: Sequence[Path]) -> tuple[Path | None, Path | None]:
    """(manifest path, gguf path) of a stored variant: from the stored paths, else by searching."""
    from quant.manifest import MANIFEST_NAME, VariantManifest

    for key in ("path", "manifest_path"):
        p = manifest.get(key)
        if p and Path(p).is_file():
            mp = Path(p)
            return mp, mp.parent / manifest["artifact"]
    ap = manifest.get("artifact_path")
    if ap and Path(ap).is_file():
        return None, Path(ap)
    for root in search:
        root = Path(root)
        if not root.is_dir():
            continue
        for mp in root.rglob(MANIFEST_NAME):
            if any(part.startswith(".tmp-") for part in mp.parts):
                continue
            try:
                m = VariantManifest.load(mp)
            except UserError:
                continue
            if m.variant_id == manifest.get("variant_id") and m.model == manifest.get("model") \
                    and m.files == manifest.get("files"):
                return mp, m.artifact_path
    return None, None


def pick_variant(store_path: str | Path, ram_bytes: int | str, task: str | None = None,
                 n_ctx: int = DEFAULT_PICK_CTX, *, strategy: str | None = None,
                 search: Sequence[str | Path] = (), overhead_bytes: int = FIXED_OVERHEAD_BYTES) -> Pick:
    """Choose the best finished, evaluated GGUF variant whose memory need fits ``ram_bytes``.

    ``search``: folders holding variants, for stores whose manifests do not record their own
    location (default: ``variants/`` beside the store and the store's folder).
    """
    from evalsuite.store import ResultsStore

    ram = parse_size(ram_bytes)
    sp = Path(store_path)
    if not sp.is_file():
        raise UserError(f"no results store at {sp} (run `quantsuite eval` first)")
    roots = [Path(s) for s in search] or [sp.parent / "variants", sp.parent]
    store = ResultsStore(sp)
    try:
        runs = [r for r in store.runs(status="done") if task is None or r["task"] == task]
        if strategy is not None:
            runs = [r for r in runs if r["strategy"] == strategy]
        cands: dict[tuple, Candidate] = {}
        metric_used = ""
        for r in runs:
            mt = store.metrics(r["run_key"])
            name = next((n for n in SCORE_METRICS if n in mt and mt[n]["value"] is not None), None)
            if name is None:
                continue   # perplexity-only runs have no accuracy
            metric_used = metric_used or name
            key = (r["model"], r["variant_id"], r["variant_sha"])
            c = cands.get(key)
            if c is None:
                c = cands[key] = Candidate(r["model"], r["variant_id"], None, None, int(r["size_bytes"] or 0))
                c.reason = _servable(r["manifest"])
                if not c.reason:
                    c.manifest_path, c.gguf = _locate(r["manifest"], roots)
                    if c.gguf is None or not c.gguf.is_file():
                        c.reason = "its GGUF file was not found (pass search= folders holding the variants)"
            v = float(mt[name]["value"])
            if v > c.scores.get(r["task"], float("-inf")):
                c.scores[r["task"]], c.strategies[r["task"]] = v, r["strategy"]
    finally:
        store.close()
    if not cands:
        what = f"task {task}" if task else "any task"
        raise UserError(f"{sp} has no finished accuracy results for {what}"
                        + (f" with strategy {strategy}" if strategy else ""))

    fitting, rejected = [], []
    for c in cands.values():
        if not c.reason:
            try:
                c.need_bytes, c.kv_bytes, c.compute_bytes, c.n_ctx = memory_need(c.gguf, c.size_bytes, n_ctx,
                                                                                 overhead=overhead_bytes)
            except UserError as e:
                c.reason = str(e)
        if not c.reason and c.need_bytes > ram:
            c.reason = f"needs {human(c.need_bytes)}, over the {human(ram)} budget"
        (rejected if c.reason else fitting).append(c)
    if not fitting:
        servable = [c for c in rejected if c.need_bytes]
        if servable:
            small = min(servable, key=lambda c: c.need_bytes)
            raise UserError(f"no evaluated GGUF variant fits in {human(ram)}: the smallest, {small.name}, needs "
                            f"{human(small.need_bytes)} at {small.n_ctx} tokens of context (try a smaller --ctx)")
        raise UserError(f"no evaluated variant can be served: {rejected[0].name} {rejected[0].reason}"
                        + (f" (and {len(rejected) - 1} more)" if len(rejected) > 1 else ""))

    if task:
        tasks = [task]
    else:
        common = set.intersection(*(set(c.scores) for c in fitting))
        tasks = sorted(common) or sorted({t for c in fitting for t in c.scores})
    for c in fitting:
        vals = [c.scores[t] for t in tasks if t in c.scores]
        c.score = sum(vals) / len(vals) if vals else float("-inf")
    fitting.sort(key=lambda c: (-c.score, c.need_bytes, c.name))
    return Pick(fitting[0], ram, task, tasks, metric_used or "acc", fitting, rejected, overhead_bytes)


def _servable(manifest: dict[str, Any]) -> str:
    runtimes = manifest.get("runtime") or []
    if "llamacpp" not in runtimes:
        return f"runs on {', '.join(runtimes) or 'no runtime'}, not llama.cpp (only GGUF variants can be served)"
    return ""
