"""The ``quantsuite`` command: quantize | eval | report | serve, plus ls, verify, pick, chat, demo.

Every command imports its stage inside the function, so ``quantsuite --help`` stays
instant; every user error is one line on stderr and exit code 2 (see ``main``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from quantsuite.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Which model, quantization and prompting strategy give the best answers per GB?")

DEFAULT_STORE = Path("results.sqlite")


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _split_top(value: str) -> list[str]:
    """Split a --tasks/--strategies list on commas that are not inside 'name:opt=..,opt=..'."""
    out: list[str] = []
    for part in (value or "").split(","):
        part = part.strip()
        if not part:
            continue
        if out and "=" in part and ":" not in part.split("=", 1)[0] and ":" in out[-1]:
            out[-1] += "," + part          # an option of the previous entry
        else:
            out.append(part)
    return out


@app.command()
def quantize(
    model: Optional[str] = typer.Argument(None, help="bundled model name, HF folder or .gguf (omit with --plan)"),
    plan: Optional[Path] = typer.Option(None, "--plan", help="plan YAML: models x methods x bits"),
    method: Optional[str] = typer.Option(None, help="gguf | gptq | awq | bnb | autoround"),
    bits: Optional[int] = typer.Option(None, help="weight bits"),
    scheme: Optional[str] = typer.Option(None, help="gguf type (q4_k_m...) or bnb type (nf4, fp4, int8)"),
    group_size: Optional[int] = typer.Option(None, "--group-size", help="group size, -1 = per channel"),
    out: Path = typer.Option(Path("variants"), "--out", help="variants folder"),
    models_dir: Path = typer.Option(Path("models"), "--models-dir", help="where dequantized bases are kept"),
    calibration: str = typer.Option("wikitext2-valid", help="calibration set name or file"),
    threads: int = typer.Option(0, help="CPU threads (0 = all cores)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="only predict sizes and memory from config.json"),
):
    """Make quantized variants (each a folder with manifest.json)."""
    from quant.plan import Plan, load_plan
    from quant.spec import QuantSpec

    if plan:
        p = load_plan(plan)
        if out != Path("variants"):
            p.output = out
    elif model:
        if not method:
            raise UserError("give --method (or a --plan)")
        p = Plan(models=[model], specs={model: [QuantSpec.make(method, bits=bits, scheme=scheme, group_size=group_size)]},
                 output=out, calibration={"name": calibration, "n_samples": 64})
    else:
        raise UserError("give a MODEL with --method, or --plan PLAN.yaml")
    if dry_run:
        return _dry_run(p, models_dir)
    from quant.run import quantize_model
    from quantsuite.progress import console

    total = 0
    for m in p.models:
        manifests = quantize_model(m, p.specs[m], p.output, models_dir, calibration=p.calibration, threads=threads,
                                   include_base=p.include_base,
                                   on_event=lambda kind, msg: console.print(f"[{'dim' if kind == 'skip' else 'bold'}]{kind}[/] {msg}"))
        total += len(manifests)
    console.print(f"{total} variant(s) ready under {p.output}")


def _dry_run(p, models_dir: Path) -> None:
    import json

    from quant.base_model import BUNDLED

    try:
        from quant.estimate import estimate_plan, format_estimates
    except ImportError:
        raise UserError("the dry-run planner is not available in this build") from None
    for m in p.models:
        cfg_path = Path(m) / "config.json" if Path(m).is_dir() else Path(m)
        if m in BUNDLED:
            cfg_path = models_dir / m / "config.json"
        if not cfg_path.exists() or cfg_path.suffix != ".json":
            raise UserError(f"--dry-run needs a config.json for {m} (give a model folder or a config.json path)")
        try:
            config = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as e:
            raise UserError(f"{cfg_path}: not valid JSON ({e.msg})") from None
        typer.echo(format_estimates(m, estimate_plan(config, p.specs[m])))


@app.command("eval")
def eval_(
    variants: List[Path] = typer.Argument(None, help="manifest.json files, variant folders or a variants tree"),
    endpoint: Optional[List[str]] = typer.Option(None, "--endpoint", help="OpenAI-compatible server, openai:http://HOST:PORT/v1#model-id (generation strategies only)"),
    tasks: Optional[str] = typer.Option(None, help="comma list; options as task:key=value [default: arc_easy,wikitext2; "
                                        "with --harness lm-eval: arc_easy]"),
    strategies: str = typer.Option("ll", help="ll, direct, cot, sc@8, rag, rag+sc@8, lot, anytime"),
    store: Path = typer.Option(DEFAULT_STORE, help="results SQLite file"),
    limit: Optional[int] = typer.Option(None, help="first N items of each task"),
    chunks: int = typer.Option(20, help="perplexity chunks (0 = whole text)"),
    ctx: int = typer.Option(512, help="perplexity chunk size in tokens"),
    reference: str = typer.Option("base", help="variant id used as the KLD reference in each family"),
    threads: int = typer.Option(0, help="CPU threads (0 = all cores)"),
    seed: int = typer.Option(0),
    harness: Optional[str] = typer.Option(None, help="'lm-eval' to run lm-evaluation-harness task names"),
    runtime: Optional[str] = typer.Option(None, help="hf | llamacpp | vllm: used for the variants that support it "
                                          "(default: each variant's first runtime)"),
):
    """Evaluate variants on tasks x strategies into the results store (resumable)."""
    from evalsuite.quality import PplConfig
    from evalsuite.runtimes import RuntimeConfig
    from evalsuite.store import ResultsStore
    from quant.manifest import find_manifests
    from quantsuite.progress import RichProgress, console

    from evalsuite.runtimes import endpoint_manifest

    if harness and harness != "lm-eval":
        raise UserError(f"unknown harness '{harness}' (only lm-eval)")
    tasks = tasks or ("arc_easy" if harness else "arc_easy,wikitext2")
    if runtime:
        from evalsuite.runtimes import RUNTIMES

        RUNTIMES.get(runtime)
    rt = RuntimeConfig(threads=threads, seed=seed)
    cfg = None
    if not harness:   # refuse unknown tasks, strategies and pairings before touching variants or the store
        from evalsuite.runner import EvalConfig, build_plan

        cfg = EvalConfig(tasks=_split_top(tasks), strategies=_split_top(strategies), limit=limit, seed=seed,
                         ppl=PplConfig(n_ctx=ctx, chunks=chunks), runtime=rt, reference=reference,
                         runtime_name=runtime)
        build_plan(cfg)
    manifests = find_manifests(variants or []) + [endpoint_manifest(u) for u in endpoint or []]
    if not manifests:
        raise UserError(f"no manifest.json found under {', '.join(map(str, variants or [])) or '(nothing given)'}")
    fresh = not store.exists()
    st = ResultsStore(store)
    try:
        if harness:
            from evalsuite.lmeval_bridge import run_lmeval

            with RichProgress() as prog:
                run_lmeval(manifests, _csv(tasks), st, rt, limit=limit, progress=prog)
        else:
            from evalsuite.runner import Evaluator

            with RichProgress() as prog:
                Evaluator(st, cfg, prog).run(manifests)
    except UserError:
        if fresh and not st.runs():        # refused before any run began: leave no empty store behind
            st.close()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{store}{suffix}").unlink(missing_ok=True)
        raise
    console.print(f"results in {store}")


@app.command()
def report(
    store: Path = typer.Argument(DEFAULT_STORE, help="results SQLite file"),
    out: Path = typer.Option(Path("report.html"), "-o", "--out"),
    fmt: Optional[str] = typer.Option(None, "--format", help="html | md | csv | json (default: from the suffix)"),
    budgets: Optional[str] = typer.Option(None, help="memory budgets in GB, e.g. 1,2,4,8"),
    task: Optional[str] = typer.Option(None, help="only this task"),
):
    """Write the size-vs-accuracy report (self-contained HTML, or md/csv/json)."""
    from reports.build import build_report

    path = build_report(store, out, fmt=fmt, budgets=budgets, task=task)
    typer.echo(str(Path(path).resolve()))


@app.command("ls")
def ls(
    paths: List[Path] = typer.Argument(None, help="variants folders (default: variants)"),
    store: Optional[Path] = typer.Option(None, help="also show eval progress from this store"),
):
    """List variants (size, bits per weight, times, RAM) and, with --store, eval progress."""
    from rich.table import Table

    from quant.manifest import find_manifests
    from quantsuite.progress import console

    roots = paths or [Path("variants")]
    if all(Path(r).exists() for r in roots):
        t = Table("model", "variant", "method", "size MB", "bpw", "runtime", "quantize s", "peak RAM MB", "calibration")
        for m in find_manifests(roots):
            t.add_row(m.model, m.variant_id, m.method, f"{m.size_bytes / 1e6:.1f}", f"{m.bits_per_weight:.2f}",
                      ",".join(m.runtime), f"{m.wall_seconds:.1f}", f"{m.peak_rss_bytes / 1e6:.0f}",
                      (m.calibration or {}).get("name", "-"))
        console.print(t)
    if store:
        from evalsuite.store import ResultsStore

        if not store.exists():
            raise UserError(f"no results store at {store}")
        t = Table("model", "variant", "task", "strategy", "done", "status")
        for r in ResultsStore(store).progress():
            t.add_row(r["model"], r["variant_id"], r["task"], r["strategy"], f"{r['done']}/{r['n_items']}", r["status"])
        console.print(t)


@app.command()
def verify(paths: List[Path] = typer.Argument(None, help="variants folders or manifests")):
    """Re-hash every variant file against its manifest."""
    from quant.manifest import find_manifests

    problems, n = [], 0
    for m in find_manifests(paths or [Path("variants")]):
        n += 1
        problems += m.verify()
    for p in problems:
        typer.echo(p, err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{n} variant(s) verified")


@app.command()
def serve(
    model: str = typer.Argument(..., help="variant manifest.json, variant folder, or .gguf file"),
    host: str = typer.Option("127.0.0.1", help="address to bind (default: this machine only)"),
    port: int = typer.Option(8000),
    api_key: Optional[str] = typer.Option(None, "--api-key", help="require 'Authorization: Bearer KEY' (default $QUANTSUITE_API_KEY)"),
    ctx: Optional[int] = typer.Option(None, help="context size (default: the model's, at most 4096)"),
    threads: Optional[int] = typer.Option(None, help="generation threads (default: physical cores)"),
    batch: Optional[int] = typer.Option(None, help="prompt batch size (default 512)"),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="per-request cap"),
    max_body: int = typer.Option(1_000_000, "--max-body", help="request body limit in bytes"),
    chat_template: Optional[Path] = typer.Option(None, "--chat-template", help="Jinja file replacing the GGUF's template"),
):
    """Serve a GGUF variant behind an OpenAI-compatible API (/v1/chat/completions, /v1/completions, /v1/models)."""
    from quantsuite.serve.app import run_server
    from quantsuite.serve.config import ServeConfig

    run_server(ServeConfig(model=model, host=host, port=port, api_key=api_key, n_ctx=ctx, n_threads=threads,
                           n_batch=batch, max_tokens_limit=max_tokens, max_body_bytes=max_body,
                           chat_template=str(chat_template) if chat_template else None))


@app.command()
def pick(
    ram: str = typer.Option(..., help="memory budget, e.g. 8GB or 6GiB"),
    store: Path = typer.Option(DEFAULT_STORE, help="results SQLite file"),
    task: Optional[str] = typer.Option(None, help="rank by this task (default: mean over tasks)"),
    ctx: int = typer.Option(4096, help="context the server will use (sizes the KV cache)"),
):
    """The best evaluated GGUF variant that fits in RAM, and the command to serve it."""
    from quantsuite.serve.pick import pick_variant

    p = pick_variant(store, ram, task=task, n_ctx=ctx)
    typer.echo(p.summary())


@app.command()
def chat(
    model: str = typer.Argument(..., help="variant manifest.json, variant folder, or .gguf file"),
    system: Optional[str] = typer.Option(None, help="system prompt"),
    max_tokens: int = typer.Option(512, "--max-tokens"),
    temperature: float = typer.Option(0.7),
):
    """A terminal chat with a GGUF variant (/exit quits, /reset clears the history)."""
    from quantsuite.serve.chat import chat_loop

    raise typer.Exit(chat_loop(model, system=system, max_tokens=max_tokens, temperature=temperature))


@app.command("export-ollama")
def export_ollama(model: str = typer.Argument(..., help="variant manifest.json, variant folder, or .gguf file")):
    """Write an Ollama Modelfile (chat template, stop tokens, parameters) next to the GGUF."""
    from quantsuite.serve.modelfile import write_modelfile

    typer.echo(str(write_modelfile(model)))


@app.command()
def demo(
    workdir: Path = typer.Option(Path("."), help="where variants/, models/, results.sqlite and report.html go"),
    plan: Path = typer.Option(Path(__file__).resolve().parent.parent / "examples" / "demo-plan.yaml", help="plan YAML"),
    limit: int = typer.Option(200, help="ARC-Easy items"),
    chunks: int = typer.Option(20, help="WikiText-2 chunks of 512 tokens"),
):
    """The bundled default: quantize SmolLM2-135M-Instruct, evaluate, report."""
    import time

    from quant.plan import load_plan
    from quantsuite.progress import console

    t0 = time.time()
    workdir.mkdir(parents=True, exist_ok=True)
    p = load_plan(plan)
    out = workdir / p.output
    ctx_plan = Path(plan)
    os.chdir(workdir)
    quantize(model=None, plan=ctx_plan, method=None, bits=None, scheme=None, group_size=None, out=p.output,
             models_dir=Path("models"), calibration="wikitext2-valid", threads=0, dry_run=False)
    eval_(variants=[p.output], endpoint=None, tasks="arc_easy,wikitext2", strategies="ll", store=DEFAULT_STORE, limit=limit,
          chunks=chunks, ctx=512, reference="base", threads=0, seed=0, harness=None, runtime=None)
    path = build = None
    from reports.build import build_report

    path = build_report(DEFAULT_STORE, Path("report.html"))
    console.print(f"demo finished in {time.time() - t0:.0f}s; variants in {out}")
    typer.echo(str(Path(path).resolve()))


INTERRUPTED = "quantsuite: interrupted; finished work is saved, rerun the same command to resume"


def main() -> None:
    try:
        rv = app(standalone_mode=False)
    except (typer.Abort, KeyboardInterrupt):
        rv = 130
    except typer.TyperException as e:      # unknown option or command, bad value...: one line too
        ctx = getattr(e, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        msg = e.format_message() if hasattr(e, "format_message") else str(e)
        if msg:
            print(f"quantsuite: error: {msg}{hint}", file=sys.stderr)
        sys.exit(getattr(e, "exit_code", 2))
    except UserError as e:
        for line in str(e).splitlines() or [""]:
            print(f"quantsuite: error: {line}", file=sys.stderr)
        sys.exit(e.exit_code)
    except Exception as e:                 # a bug, not bad input: short by default, full on request
        if os.environ.get("QUANTSUITE_DEBUG"):
            raise
        first = (str(e).splitlines() or [""])[0][:300]
        print(f"quantsuite: internal error: {type(e).__name__}: {first} (finished work is saved; "
              "QUANTSUITE_DEBUG=1 shows the traceback, please report it)", file=sys.stderr)
        sys.exit(1)
    if rv == 130:            # typer returns ^C as exit code 130, silently
        print(INTERRUPTED, file=sys.stderr)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
