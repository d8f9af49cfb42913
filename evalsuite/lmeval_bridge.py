"""Run lm-evaluation-harness tasks on quantsuite's runtimes (HF and GGUF alike), offline.

``quantsuite eval VARIANTS --harness lm-eval --tasks arc_easy,gsm8k`` lands here. Three
pieces:

* ``QuantsuiteLM`` is an ``lm_eval.api.model.LM`` over our ``InferenceClient``:
  ``loglikelihood`` -> ``client.loglikelihood`` (contexts shared across choices),
  ``generate_until`` -> ``client.generate`` (repeats of one request become one ``n``-sample
  request), ``loglikelihood_rolling`` -> ``client.token_logprobs`` over lm-eval's rolling
  windows. So any variant, GGUF included, runs lm-eval's own prompts and metrics.
* ``build_tasks`` resolves lm-eval task names and points each task's dataset at a local
  file (``LOCAL_DATASETS``, under ``quantsuite.paths.data_dir()``): lm-eval tasks read
  ``dataset_path: json`` + ``data_files`` instead of a hub download. Nothing here ever
  reaches a hub (``HF_DATASETS_OFFLINE=1``, ``HF_HUB_OFFLINE=1``).
* ``run_lmeval`` writes one results-store run per variant x lm-eval task (strategy
  ``lm-eval``), per-document sample rows with correctness and lm-eval's per-sample
  metrics, and run metrics aggregated as lm-eval does (mean, stderr -> 95% CI).

Resume: model responses are cached per variant in a small SQLite file (one row per
request, written as each chunk finishes), so a killed run recomputes at most one chunk;
lm-eval then rebuilds its prompts and metrics from the cache. Runs already stored in full
are skipped without loading the model.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import math
import os
import platform
import sqlite3
import time
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from evalsuite.store import ResultsStore, SampleRow, canonical, run_key
from evalsuite.types import GenRequest, LLRequest
from quantsuite.errors import BackendUnavailable, UserError

STRATEGY = "lm-eval"
Z95 = 1.959963984540054

# (dataset_path, dataset_name) of lm-eval task configs -> local files per split, relative to
# quantsuite.paths.data_dir(). Every lm-eval task reading one of these datasets (arc_easy;
# gsm8k, gsm8k_cot, gsm8k_cot_zeroshot, ...) runs on the local copy.
_ARC_EASY = {"train": "arc_easy/train.json", "validation": "arc_easy/validation.json"}
_GSM8K = {"train": "gsm8k/train.jsonl", "test": "gsm8k/test.jsonl"}
LOCAL_DATASETS: dict[tuple[str, str | None], dict[str, str]] = {
    ("allenai/ai2_arc", "ARC-Easy"): _ARC_EASY,
    ("ai2_arc", "ARC-Easy"): _ARC_EASY,
    ("openai/gsm8k", "main"): _GSM8K,
    ("gsm8k", "main"): _GSM8K,
}
_SPLIT_KEYS = ("training_split", "validation_split", "test_split", "fewshot_split")


# -- offline lm-eval ---------------------------------------------------------------------------
def go_offline() -> None:
    """Make every hub client in this process offline (also if already imported)."""
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    import sys

    if "datasets" in sys.modules:
        sys.modules["datasets"].config.HF_DATASETS_OFFLINE = True
        sys.modules["datasets"].config.HF_HUB_OFFLINE = True
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].constants.HF_HUB_OFFLINE = True


go_offline()
try:
    from lm_eval.api.model import LM as _LMBase

    HAVE_LMEVAL = True
except ImportError:          # the [lmeval] extra is not installed: the module still imports
    _LMBase = object         # type: ignore[assignment,misc]
    HAVE_LMEVAL = False


def _require_lmeval() -> None:
    if not HAVE_LMEVAL:
        raise BackendUnavailable("lm-evaluation-harness is not installed (pip install 'quantsuite[lmeval]')")


def _quiet() -> None:
    """lm-eval and datasets log a line per request batch; keep the CLI's progress bars readable.

    Targeted: lm-eval's request-building tqdm bar is switched off in its own module, and its
    ``git describe`` of the working directory (stderr noise outside a git checkout) is skipped.
    """
    import functools

    for name in ("lm_eval", "lm-eval", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import datasets
        import lm_eval.api.task as lm_task
        import lm_eval.evaluator as lm_evaluator
        from tqdm import tqdm

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
        lm_task.tqdm = functools.partial(tqdm, disable=True)
        lm_evaluator.get_git_commit_hash = lambda: None
    except Exception:  # pragma: no cover - cosmetic only
        pass


def lmeval_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("lm_eval")
    except metadata.PackageNotFoundError:
        return "not installed"


# -- the LM adapter -----------------------------------------------------------------------------
class ResponseCache:
    """Model responses by request hash, in SQLite, committed per chunk (resume after a kill)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self.db.commit()

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        keys = list(dict.fromkeys(keys))
        out: dict[str, Any] = {}
        for i in range(0, len(keys), 500):
            part = keys[i:i + 500]
            q = f"SELECT key, value FROM responses WHERE key IN ({','.join('?' * len(part))})"
            out.update({k: json.loads(v) for k, v in self.db.execute(q, part)})
        return out

    def put_many(self, items: dict[str, Any]) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)",
                                [(k, json.dumps(v)) for k, v in items.items()])

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        self.db.close()


def _prefix_token(client) -> int:
    """Token that conditions the first token of a rolling window: BOS, else EOS (as lm-eval's HFLM)."""
    pid = getattr(client, "prefix_id", None)
    if pid is not None:
        return int(pid)
    tok = getattr(client, "tok", None)
    if tok is not None:
        for t in (tok.bos_token_id, tok.eos_token_id):
            if t is not None:
                return int(t)
    llm = getattr(client, "llm", None)
    if llm is not None:
        for t in (llm.token_bos(), llm.token_eos()):
            if t is not None and t >= 0:
                return int(t)
    if client.bos_id is not None:
        return int(client.bos_id)
    raise BackendUnavailable(f"runtime {client.name} gives no BOS/EOS token for loglikelihood_rolling")


@dataclass
class DocStats:
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    seconds: float = 0.0
    contexts: set = field(default_factory=set)


class QuantsuiteLM(_LMBase):  # type: ignore[misc,valid-type]
    """lm-eval's ``LM`` over a quantsuite ``InferenceClient``.

    ``cache`` (optional) stores every deterministic response; ``progress`` gets one bar per
    request type; per-document compute (calls, tokens, seconds) is kept in ``stats`` keyed
    by (task name, lm-eval doc_id) for the results store.
    """

    def __init__(self, client, *, cache: ResponseCache | None = None, progress=None, label: str = "",
                 chunk_contexts: int = 16, chunk_generations: int = 8, max_gen_toks: int = 256,
                 max_length: int | None = None, seed: int = 0):
        _require_lmeval()
        super().__init__()
        self.client = client
        self.cache = cache
        self.progress = progress
        self.label = label
        self.chunk_contexts = max(1, int(chunk_contexts))
        self.chunk_generations = max(1, int(chunk_generations))
        self.max_gen_toks = int(max_gen_toks)
        cfg = getattr(client, "cfg", None)
        self.max_length = int(max_length or getattr(cfg, "n_ctx", 0) or 2048)
        self.seed = int(seed)
        self.salt = f"{client.name}|n_ctx={self.max_length}"
        self.stats: dict[tuple[str, int], DocStats] = defaultdict(DocStats)

    # -- helpers -----------------------------------------------------------------------
    def reset_stats(self) -> None:
        self.stats = defaultdict(DocStats)

    def _key(self, kind: str, args: Sequence[Any]) -> str:
        blob = json.dumps([self.salt, kind, list(args)], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _start(self, kind: str, total: int) -> None:
        if self.progress is not None and total:
            self.progress.start(f"{self.label} {kind}".strip(), total)

    def _advance(self, n: int) -> None:
        if self.progress is not None and n:
            self.progress.advance(n)

    def _doc(self, inst) -> DocStats:
        doc_id = getattr(inst, "doc_id", None)
        return self.stats[(getattr(inst, "task_name", None) or "", -1 if doc_id is None else int(doc_id))]

    # -- lm-eval API ------------------------------------------------------------------------
    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        keys = [self._key("loglikelihood", r.args) for r in requests]
        known = self.cache.get_many(keys) if self.cache is not None else {}
        self._start("loglikelihood", len(requests))
        values: dict[str, list] = dict(known)
        todo = [i for i, k in enumerate(keys) if k not in values]
        self._advance(len(requests) - len(todo))
        first: dict[str, int] = {}                                   # identical requests run once
        for i in todo:
            first.setdefault(keys[i], i)
        groups: OrderedDict[str, list[str]] = OrderedDict()          # choices of one context together
        for k, i in first.items():
            groups.setdefault(requests[i].args[0], []).append(k)
        ctxs = list(groups)
        for a in range(0, len(ctxs), self.chunk_contexts):
            chunk = [k for c in ctxs[a:a + self.chunk_contexts] for k in groups[c]]
            res = self.client.loglikelihood([LLRequest(*requests[first[k]].args[:2]) for k in chunk])
            new = {k: [float(r.logprob), bool(r.is_greedy), int(r.tokens_in), float(r.seconds)]
                   for k, r in zip(chunk, res)}
            values.update(new)
            if self.cache is not None:
                self.cache.put_many(new)
            self._advance(sum(1 for i in todo if keys[i] in new))
        out = []
        for r, k in zip(requests, keys):
            lp, greedy, tin, sec = values[k]
            st = self._doc(r)
            if r.args[0] not in st.contexts:
                st.contexts.add(r.args[0])
                st.calls += 1
            st.tokens_in += tin
            st.seconds += sec
            out.append((lp, greedy))
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        import numpy as np

        keys = [self._key("loglikelihood_rolling", r.args) for r in requests]
        values: dict[str, list] = self.cache.get_many(keys) if self.cache is not None else {}
        self._start("loglikelihood_rolling", len(requests))
        prefix = None
        out = []
        for r, k in zip(requests, keys):
            if k not in values:
                t0 = time.perf_counter()
                prefix = _prefix_token(self.client) if prefix is None else prefix
                tokens = self.client.tokenize(r.args[0])
                total = 0.0
                for ctx, pred in map(make_disjoint_window,
                                     get_rolling_token_windows(tokens, prefix, self.max_length, 1)):
                    seq = list(ctx) + list(pred)
                    lp = np.asarray(self.client.token_logprobs(seq[:-1]))
                    rows = lp[len(lp) - len(pred):]
                    total += float(rows[np.arange(len(pred)), np.asarray(pred)].sum())
                values[k] = [total, len(tokens), time.perf_counter() - t0]
                if self.cache is not None:
                    self.cache.put_many({k: values[k]})
            total, n_tok, sec = values[k]
            st = self._doc(r)
            st.calls += 1
            st.tokens_in += int(n_tok)
            st.seconds += float(sec)
            out.append(total)
            self._advance(1)
        return out

    def _gen_request(self, context: str, kw: dict, n: int) -> GenRequest:
        kw = dict(kw or {})
        until = kw.pop("until", None) or ()
        if isinstance(until, str):
            until = (until,)
        do_sample = bool(kw.get("do_sample", False))
        temp = float(kw.get("temperature", 1.0 if do_sample else 0.0) or 0.0)
        if not do_sample:
            temp = 0.0
        return GenRequest(prompt=context, max_tokens=int(kw.get("max_gen_toks", self.max_gen_toks)),
                          temperature=temp, top_p=float(kw.get("top_p", 1.0) or 1.0),
                          top_k=int(kw.get("top_k", 0) or 0), stop=tuple(s for s in until if s),
                          seed=self.seed, n=n)

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        # lm-eval repeats a request K times (self-consistency): consecutive clones -> one n=K request
        runs: list[tuple[int, int]] = []
        i = 0
        while i < len(requests):
            j = i
            while j + 1 < len(requests) and requests[j + 1] is requests[i]:
                j += 1
            runs.append((i, j - i + 1))
            i = j + 1
        greqs = [self._gen_request(requests[a].args[0], requests[a].args[1], n) for a, n in runs]
        keys = [self._key("generate_until", [requests[a].args[0], requests[a].args[1], n]) for a, n in runs]
        cacheable = [g.temperature == 0 for g in greqs]
        values: dict[str, list] = self.cache.get_many([k for k, c in zip(keys, cacheable) if c]) if self.cache is not None else {}
        self._start("generate_until", len(requests))
        todo = [r for r, (k, c) in enumerate(zip(keys, cacheable)) if not (c and k in values)]
        hit = [r for r in range(len(runs)) if r not in set(todo)]
        self._advance(sum(runs[r][1] for r in hit))
        results: dict[int, list] = {r: values[keys[r]] for r in hit}
        for a in range(0, len(todo), self.chunk_generations):
            part = todo[a:a + self.chunk_generations]
            gens = self.client.generate([greqs[r] for r in part])
            new = {}
            for r, g in zip(part, gens):
                results[r] = [list(g.texts), int(g.tokens_in), int(g.tokens_out), float(g.seconds)]
                if cacheable[r]:
                    new[keys[r]] = results[r]
            if self.cache is not None and new:
                self.cache.put_many(new)
            self._advance(sum(runs[r][1] for r in part))
        out: list[str] = []
        for r, (a, n) in enumerate(runs):
            texts, tin, tout, sec = results[r]
            st = self._doc(requests[a])
            st.calls += 1
            st.tokens_in += tin
            st.tokens_out += tout
            st.seconds += sec
            texts = list(texts) + [""] * (n - len(texts))
            out.extend(texts[:n])
        return out

    # optional LM surface lm-eval reads
    @property
    def tokenizer_name(self) -> str:
        return f"quantsuite-{self.client.name}"

    def get_model_info(self) -> dict:
        return {"runtime": self.client.name}


# -- tasks ------------------------------------------------------------------------------------
@dataclass
class LocalTask:
    """One resolved lm-eval task, its dataset pointed at local files."""

    name: str
    task: Any                        # lm_eval.api.task.Task
    manager: Any                     # the TaskManager that built it (simple_evaluate needs one)
    version_key: str
    data_files: dict[str, str]
    item_ids: list[str]

    @property
    def n_docs(self) -> int:
        return len(self.item_ids)

    @property
    def num_fewshot(self) -> int:
        return int(self.task.get_config("num_fewshot") or 0)

    @property
    def output_type(self) -> str:
        return str(self.task.get_config("output_type"))


def _tasks_root() -> Path:
    import lm_eval

    return Path(lm_eval.__file__).resolve().parent / "tasks"


_MANAGERS: dict[tuple, Any] = {}


def _manager(names: Sequence[str], full: bool = False):
    """A TaskManager whose index holds ``names``. Indexing all of lm-eval's ~15k YAML files
    takes 10-20 s on these machines, so first try only the folders whose name starts the
    task name (lm-eval's layout: tasks/arc/arc_easy.yaml, tasks/gsm8k/gsm8k_cot.yaml)."""
    from lm_eval.tasks import TaskManager

    if full:
        key: tuple = ("*",)
        if key not in _MANAGERS:
            _MANAGERS[key] = TaskManager()
        return _MANAGERS[key]
    root = _tasks_root()
    dirs = sorted({d for d in root.iterdir() if d.is_dir() and any(n == d.name or n.startswith(d.name) for n in names)})
    key = tuple(str(d) for d in dirs)
    if not dirs:
        return None
    if key not in _MANAGERS:
        _MANAGERS[key] = TaskManager(include_defaults=False, include_path=[str(d) for d in dirs])
    return _MANAGERS[key]


def resolve_names(names: Sequence[str]) -> tuple[Any, list[str]]:
    """(TaskManager, leaf task names): tags expand to their tasks; unknown names and groups
    are one-line UserErrors."""
    _require_lmeval()
    _quiet()
    from lm_eval.tasks._index import Kind

    names = [n.strip() for n in names if n and n.strip()]
    if not names:
        raise UserError("give lm-eval task names with --tasks (e.g. arc_easy)")
    tm = _manager(names)
    if tm is None or any(tm.task_index.get(n) is None or tm.task_index[n].kind not in (Kind.TASK, Kind.PY_TASK)
                         for n in names):
        tm = _manager(names, full=True)
    leaves: list[str] = []
    for n in names:
        e = tm.task_index.get(n)
        if e is None:
            close = difflib.get_close_matches(n, tm.all_tasks, n=3, cutoff=0.6)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise UserError(f"unknown lm-eval task '{n}'{hint}; `lm-eval ls tasks` lists them")
        if e.kind == Kind.TAG:
            leaves += sorted(e.tags)
        elif e.kind == Kind.GROUP:
            raise UserError(f"lm-eval '{n}' is a group of tasks: give its tasks by name")
        else:
            leaves.append(n)
    return tm, list(dict.fromkeys(leaves))


def local_overrides(cfg: dict, data_root: Path) -> tuple[dict, dict[str, str]] | None:
    """Config overrides that make a task read local files, or None when there is no local copy."""
    files = LOCAL_DATASETS.get((cfg.get("dataset_path"), cfg.get("dataset_name")))
    if files is None:
        return None
    paths = {split: str(data_root / rel) for split, rel in files.items()}
    missing = [p for p in paths.values() if not Path(p).exists()]
    if missing:
        raise UserError(f"lm-eval task {cfg.get('task')}: local data file missing: {missing[0]}")
    ov: dict[str, Any] = {"dataset_path": "json", "dataset_name": None, "dataset_kwargs": {"data_files": paths}}
    for k in _SPLIT_KEYS:                      # splits the local copy lacks (ARC's test) are dropped
        if cfg.get(k) is not None and cfg[k] not in paths:
            ov[k] = None
    return ov, paths


def _item_ids(docs) -> list[str]:
    """Stable per-document ids: the dataset's own ``id`` when unique (ARC), else the index."""
    n = len(docs)
    try:
        ids = [str(d["id"]) for d in docs] if n and "id" in docs[0] else []
    except (KeyError, TypeError):
        ids = []
    if ids and len(set(ids)) == n:
        return ids
    return [f"doc-{i:05d}" for i in range(n)]


def build_tasks(names: Sequence[str], data_root: str | Path | None = None) -> dict[str, LocalTask]:
    """lm-eval tasks by name, reading local data; the order of ``names`` is kept."""
    from evalsuite.tasks.base import fingerprint

    tm, leaves = resolve_names(names)
    if data_root is None:
        from quantsuite.paths import data_dir

        data_root = data_dir()
    data_root = Path(data_root)
    out: dict[str, LocalTask] = {}
    for n in leaves:
        entry = tm.task_index[n]
        cfg = dict(entry.cfg or {})
        cfg.setdefault("task", n)
        local = local_overrides(cfg, data_root)
        ov, files = local if local else ({}, {})
        try:
            task = tm._factory.build(entry, overrides=ov or None, registry=tm.task_index)
        except Exception as e:  # noqa: BLE001 - lm-eval/datasets raise many types; show one line
            if local is None:
                ds = f"{cfg.get('dataset_path')}" + (f" ({cfg['dataset_name']})" if cfg.get("dataset_name") else "")
                known = ", ".join(sorted({f"{p} ({d})" for p, d in LOCAL_DATASETS if "/" in p}))
                raise UserError(f"lm-eval task {n} reads dataset {ds}, which has no local copy and no hub "
                                f"is reachable (local copies: {known})") from None
            raise UserError(f"lm-eval task {n}: cannot load {files}: {str(e).splitlines()[0][:200]}") from None
        docs = task.eval_docs
        fp = hashlib.sha256("".join(f"{k}={fingerprint(Path(v), n)}" for k, v in sorted(files.items())).encode()).hexdigest()[:12] if files else "hub-cache"
        version = (task.get_config("metadata") or {}).get("version", "0")
        out[n] = LocalTask(name=n, task=task, manager=tm, version_key=f"lm-eval:{n}@{version}[data={fp}]",
                           data_files=files, item_ids=_item_ids(docs))
    return out


# -- results -> store rows and metrics ------------------------------------------------------------
def _metric_name(metric: str, filt: str) -> str:
    return metric if filt == "none" else f"{metric}:{filt}"


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "item"):
        return v.item()
    return json.loads(canonical(v))


def sample_rows(t: LocalTask, examples: list[dict], stats: dict[int, DocStats]) -> tuple[list[SampleRow], str]:
    """Our sample rows from lm-eval's logged samples (one per doc x filter), and the name of
    the metric that decides ``correct`` (the task's first metric under its first filter)."""
    if not examples:
        return [], ""
    primary = _metric_name(examples[0]["metrics"][0], examples[0]["filter"])
    by_doc: dict[int, dict[str, dict]] = defaultdict(dict)
    for ex in examples:
        by_doc[int(ex["doc_id"])][ex["filter"]] = ex
    rows = []
    for doc_id in sorted(by_doc):
        filters = by_doc[doc_id]
        ex0 = filters.get(examples[0]["filter"]) or next(iter(filters.values()))
        scores: dict[str, Any] = {}
        for f, ex in filters.items():
            for metric in ex["metrics"]:
                scores[_metric_name(metric, f)] = _jsonable(ex[metric])
        pv = scores.get(primary)
        correct = bool(pv) if isinstance(pv, (bool, int, float)) and float(pv) in (0.0, 1.0) else None
        raw, parsed = "", None
        if t.output_type == "multiple_choice":
            lls = [float(r[0]) for r in ex0["filtered_resps"]]
            parsed = max(range(len(lls)), key=lambda i: (lls[i], -i)) if lls else None
            scores["logprobs"] = [round(x, 4) for x in lls]
        elif t.output_type == "generate_until":
            first = ex0["resps"][0] if ex0["resps"] else []
            raw = str(first[0]) if first else ""
            parsed = _jsonable(ex0["filtered_resps"][0]) if ex0["filtered_resps"] else None
            for f, ex in filters.items():
                if ex is not ex0 and ex["filtered_resps"]:
                    scores[f"parsed:{f}"] = _jsonable(ex["filtered_resps"][0])
        doc = ex0.get("doc") or {}
        question = doc.get("question") if isinstance(doc, dict) else None
        scores["question"] = str(question if question else ex0["arguments"][0][0])[-400:]
        st = stats.get(doc_id, DocStats())
        rows.append(SampleRow(item_id=t.item_ids[doc_id], prompt_hash=str(ex0.get("prompt_hash", ""))[:16],
                              raw=raw, parsed=parsed, gold=_jsonable(ex0.get("target")), correct=correct,
                              scores=scores, calls=st.calls, tokens_in=st.tokens_in, tokens_out=st.tokens_out,
                              seconds=st.seconds))
    return rows, primary


def _tuples(v: Any) -> Any:
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


def run_metrics(t: LocalTask, samples: Sequence[dict]) -> dict[str, tuple]:
    """Run metrics from stored samples, aggregated with the task's own lm-eval aggregations.

    Mean-aggregated metrics (acc, acc_norm, exact_match) get lm-eval's stderr (sample
    standard deviation / sqrt(n)) and a 95% CI of value +- 1.96 stderr (clipped to [0, 1]
    for 0/1 metrics); ``<name>_stderr`` is stored too. Recomputed from the samples, so a
    resumed run gets the numbers a single run would."""
    from lm_eval.api.metrics import mean, mean_stderr

    out: dict[str, tuple] = {}
    if not samples:
        return out
    aggs = t.task.aggregation()
    names = sorted({k for s in samples for k in (s["scores"] or {})
                    if k.split(":", 1)[0] in aggs and not k.startswith("parsed:")})
    for name in names:
        metric = name.split(":", 1)[0]
        vals = [_tuples(s["scores"][name]) for s in samples if (s["scores"] or {}).get(name) is not None]
        if not vals:
            continue
        agg = aggs[metric]
        try:
            value = float(agg(vals))
        except Exception:  # noqa: BLE001 - an aggregation lm-eval cannot apply to stored values
            continue
        lo = hi = None
        if agg is mean and len(vals) > 1:
            se = float(mean_stderr([float(v) for v in vals]))
            lo, hi = value - Z95 * se, value + Z95 * se
            if all(float(v) in (0.0, 1.0) for v in vals):
                lo, hi = max(0.0, lo), min(1.0, hi)
            out[f"{name}_stderr"] = (se, None, None, len(vals))
        out[name] = (value, lo, hi, len(vals))
    n = len(samples)
    for f in ("calls", "tokens_in", "tokens_out", "seconds"):
        out[f"{f}_per_item"] = (float(sum(s[f] or 0 for s in samples) / n), None, None, n)
    return out


# -- the loop -------------------------------------------------------------------------------------
def _seeds(seed: int) -> dict[str, int]:
    """seed 0 = lm-eval's defaults; any other seed sets all four, like lm-eval's ``--seed N``."""
    if seed == 0:
        return dict(random_seed=0, numpy_random_seed=1234, torch_random_seed=1234, fewshot_random_seed=1234)
    return dict(random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed)


def evaluate_task(lm: "QuantsuiteLM", t: LocalTask, indices: list[int], seed: int = 0) -> list[dict]:
    """lm-eval's evaluation of ``t`` on documents ``indices`` (sorted); its logged samples,
    with doc_id the index in the task's documents."""
    import lm_eval

    lm.reset_stats()
    res = lm_eval.simple_evaluate(model=lm, tasks=[t.task], samples={t.name: sorted(indices)},
                                  task_manager=t.manager, bootstrap_iters=0, log_samples=True, **_seeds(seed))
    return list(res["samples"][t.name])


def run_lmeval(manifests, task_names: Sequence[str], store: ResultsStore, runtime_cfg=None,
               limit: int | None = None, progress=None, *, seed: int | None = None, cache_dir: Path | None = None,
               data_root: str | Path | None = None) -> list[str]:
    """Every variant x lm-eval task into ``store``; returns the run keys (in that order).

    ``seed`` (default: the runtime config's seed, i.e. the CLI's --seed) goes into run keys
    and lm-eval's seeds (see ``_seeds``); ``cache_dir`` holds the per-variant response
    caches (default: .quantsuite-cache beside the store, like the Evaluator's)."""
    from evalsuite.runner import Progress, variant_info
    from evalsuite.runtimes import RuntimeConfig, open_variant

    if not manifests:
        raise UserError("no variants to evaluate")
    progress = progress or Progress()
    runtime_cfg = runtime_cfg or RuntimeConfig()
    seed = int(runtime_cfg.seed if seed is None else seed)
    tasks = build_tasks(task_names, data_root)          # every name is checked before any model loads
    cache_dir = Path(cache_dir) if cache_dir else store.path.parent / ".quantsuite-cache"
    keys: list[str] = []
    for m in manifests:
        plan = []
        for t in tasks.values():
            n = min(limit, t.n_docs) if limit else t.n_docs
            params = {"num_fewshot": t.num_fewshot}
            key = run_key(m.sha, t.name, t.version_key, STRATEGY, params, seed)
            keys.append(key)
            done = store.done_items(key)
            todo = [i for i in range(n) if t.item_ids[i] not in done]
            runs = store.runs(run_key=key)
            if not todo and runs and runs[0]["status"] == "done" and (runs[0]["n_items"] or 0) >= n:
                continue
            plan.append((t, key, params, n, todo))
        if not plan:
            progress.note(f"{m.model}/{m.variant_id}: all lm-eval runs already stored")
            continue
        client = open_variant(m, runtime_cfg)
        cache = ResponseCache(cache_dir / "lmeval" / f"{m.sha[:16]}-{client.name}.sqlite")
        try:
            lm = QuantsuiteLM(client, cache=cache, progress=progress, seed=seed)
            for t, key, params, n, todo in plan:
                env = {"threads": runtime_cfg.n_threads, "runtime": client.name, "machine": platform.machine(),
                       "cpus": os.cpu_count(), "python": platform.python_version(), "lm_eval": lmeval_version()}
                store.ensure_run(key, variant=variant_info(m), task=t.name, task_version=t.version_key,
                                 strategy=STRATEGY, params=params, seed=seed, n_items=n, runtime=client.name, env=env)
                if todo:
                    lm.label = f"{m.model}/{m.variant_id} lm-eval {t.name}"
                    # zero-shot prompts do not depend on other documents: run only what is missing;
                    # k-shot draws its shots in document order, so rerun the range (cached, cheap)
                    idx = todo if t.num_fewshot == 0 else list(range(n))
                    examples = evaluate_task(lm, t, idx, seed)
                    stats = {idx_i: lm.stats.get((t.name, local), DocStats())
                             for local, idx_i in enumerate(sorted(idx))}
                    want = set(todo)
                    rows, _ = sample_rows(t, [e for e in examples if int(e["doc_id"]) in want], stats)
                    store.add_samples(key, rows)
                store.finish_run(key, run_metrics(t, store.samples(key)))
        finally:
            cache.close()
            client.close()
    return keys
