"""Helpers shared by the transformers-based backends (gptq, awq, bnb).

Kept in one place because every such backend must do the same four things the same way:
choose torch's thread count on purpose (on 2-core machines two threads next to another
busy process ran 40x slower than one), turn the calibration set into token rows, check
the group size against the model's matrix widths before any work, and prove that the
saved folder reloads and generates before a manifest calls it finished.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from quant.calibration import CalibrationSet
from quant.spec import QuantSpec
from quantsuite.errors import BackendUnavailable, UserError

PROBE_PROMPT = "The capital of France is"
# ~40 tokens of plain prose: enough positions for a meaningful top-1 agreement figure
PROBE_TEXT = ("The river flows through the old town, past the market square and the church, before it "
              "reaches the sea. In summer, children swim near the bridge while fishermen sell their catch.")


def set_threads(threads: int) -> int:
    """Set torch's intra-op threads and return the number used (recorded in the notes).

    0 means $QUANTSUITE_THREADS (the variable the HF runtime also reads), else min(2, cores):
    more threads than free cores is what made torch 40x slower on the shared 2-core boxes.
    """
    import torch

    n = threads or int(os.environ.get("QUANTSUITE_THREADS", 0) or 0) or min(2, os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n


# Precision the model is loaded and calibrated in (spec parameter ``dtype``). float32 is
# the default because CPU matmuls are exact and fast in it; bfloat16 halves the RAM the
# whole model needs (what makes an 8B model fit a 24 GiB machine; see quant/estimate.py).
DTYPES = ("float32", "bfloat16", "float16")


def work_dtype(name: str):
    import torch

    return getattr(torch, name)


def require(module: str, extra: str) -> Any:
    """Import an optional dependency or raise a one-line install hint."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise BackendUnavailable(f"{module} is not installed (pip install 'quantsuite[{extra}]')") from None


def has_accelerator() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def matrix_widths(config: dict[str, Any]) -> dict[str, int]:
    """Input widths of the quantized Linear layers, which a group size must divide.

    q/k/v/gate/up read hidden_size columns; o_proj reads heads*head_dim; down_proj reads
    intermediate_size. Quantizers group along the input (column) dimension.
    """
    hidden = int(config.get("hidden_size", 0))
    heads = int(config.get("num_attention_heads", 0) or 0)
    head_dim = int(config.get("head_dim") or (hidden // heads if heads else 0))
    widths = {"hidden_size": hidden, "intermediate_size": int(config.get("intermediate_size", 0))}
    if heads and head_dim and heads * head_dim != hidden:
        widths["num_attention_heads*head_dim"] = heads * head_dim
    return {k: v for k, v in widths.items() if v}


def group_problems(spec: QuantSpec, config: dict[str, Any], allowed: tuple[int, ...]) -> list[str]:
    """Group-size checks shared by GPTQ and AWQ: an allowed size that divides every width."""
    g = spec.group_size
    if g not in allowed:
        choices = ", ".join(map(str, allowed))
        return [f"{spec.variant_id}: group size {g} not supported (choose {choices}; -1 = per-channel)"]
    if g == -1:
        return []
    widths = matrix_widths(config)
    bad = [f"{k}={v}" for k, v in widths.items() if v % g]
    if bad:
        fits = [str(a) for a in allowed if a > 0 and all(v % a == 0 for v in widths.values())] + ["-1"]
        return [f"{spec.variant_id}: group size {g} does not divide {', '.join(bad)} (group sizes that fit this "
                f"model: {', '.join(fits)})"]
    return []


def calibration_rows(calib: CalibrationSet | None, tokenizer, n_samples: int, seqlen: int) -> list[list[int]]:
    """Token rows for calibration: each text truncated to ``seqlen`` tokens, first n_samples.

    Texts shorter than a quarter of seqlen are skipped: very short rows add little Hessian
    information and some quantizers (AutoRound) reject them outright.
    """
    if calib is None or not calib.texts:
        raise UserError("this method needs calibration text (calibration: in the plan)")
    rows: list[list[int]] = []
    for t in calib.texts:
        ids = tokenizer(t, add_special_tokens=False)["input_ids"][:seqlen]
        if len(ids) >= max(8, seqlen // 4):
            rows.append(ids)
        if len(rows) == n_samples:
            break
    if not rows:
        raise UserError(f"calibration set '{calib.name}' has no text of at least {max(8, seqlen // 4)} tokens")
    return rows


def folder_files(folder: Path) -> list[str]:
    """Every file under the variant folder (relative), so the manifest hashes all of them."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != "manifest.json")


def copy_tokenizer(base: Path, out: Path) -> None:
    """Copy tokenizer and chat template files so the variant folder stands alone."""
    import shutil

    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                 "tokenizer.model", "generation_config.json"):
        if (base / name).exists() and not (out / name).exists():
            shutil.copyfile(base / name, out / name)


def greedy_probe(model, tokenizer, n_new: int = 8) -> tuple[list[int], Any]:
    """Greedy tokens for a fixed prompt plus the logits at every position of a probe text."""
    import torch

    ids = torch.tensor([tokenizer(PROBE_PROMPT)["input_ids"]])
    text_ids = torch.tensor([tokenizer(PROBE_TEXT)["input_ids"]])
    with torch.inference_mode():
        logits = model(input_ids=text_ids).logits[0].float().clone()
        gen = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n_new, do_sample=False,
                             pad_token_id=tokenizer.eos_token_id)
    return gen[0, ids.shape[1]:].tolist(), logits


def compare_logits(logits, reference) -> dict[str, float]:
    """How far two [positions, vocab] logit tables are: max |diff| / max |ref|, top-1 agreement."""
    diff = float((logits - reference).abs().max())
    scale = float(reference.abs().max()) or 1.0
    top1 = float((logits.argmax(-1) == reference.argmax(-1)).float().mean())
    return {"max_diff": round(diff, 5), "rel_max_diff": round(diff / scale, 5), "top1_agreement": round(top1, 4)}


def save_compressed(model, tokenizer_src: Path, out: Path, storage_dtype: str = "float16"):
    """Save an llm-compressor model as compressed-tensors; return in-memory reference logits.

    The reference logits are taken first, from the quantized fp32 model in memory. The
    unquantized tensors (embeddings, norms) and the scales are then stored in fp16, the
    precision of GGUF's F16 and of published GPTQ checkpoints, not in the fp32 of our
    working copy: fp32 embeddings would double a tiny model's size and make size
    comparisons meaningless. fp16 rather than bf16 because it rounds 8x finer (measured
    on SmolLM2 AWQ: reload logit drift 6.5% of max with fp16 vs 15% with bf16); weights
    never come near fp16's range limit, and the HF runtime computes in fp32 anyway.
    """
    import torch
    from transformers import AutoTokenizer

    model.eval()
    _, ref = greedy_probe(model, AutoTokenizer.from_pretrained(tokenizer_src))
    model.to(getattr(torch, storage_dtype))
    model.save_pretrained(out, save_compressed=True)
    copy_tokenizer(tokenizer_src, out)
    return ref


def check_reload(folder: Path, reference_logits=None, what: str = "variant", max_rel_diff: float = 0.25,
                 min_top1: float = 0.75, load_kwargs: dict | None = None) -> dict[str, Any]:
    """Reload the saved folder the way the evaluator does and generate; fail loudly if broken.

    With ``reference_logits`` (from the quantized model in memory) the reloaded model must
    compute the same thing up to storage rounding: max logit drift under ``max_rel_diff`` of
    the largest logit and the same top-1 token at ``min_top1`` of the probe positions. A
    folder that loads but computes something else (bitsandbytes 4-bit on CPU did: ~100%
    drift, random top-1) is never recorded as a finished variant.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, use_safetensors=True,
                                                 **(load_kwargs or {}))
    model.eval()
    tokens, logits = greedy_probe(model, tok)
    text = tok.decode(tokens, skip_special_tokens=True)
    info: dict[str, Any] = {"probe_prompt": PROBE_PROMPT, "probe_output": text}
    if not torch.isfinite(logits).all():
        raise UserError(f"{what}: reloaded model produces non-finite logits")
    if reference_logits is not None:
        info.update(compare_logits(logits, reference_logits))
        if info["rel_max_diff"] > max_rel_diff or info["top1_agreement"] < min_top1:
            raise UserError(f"{what}: reloaded model differs from the quantized model in memory (max logit drift "
                            f"{info['rel_max_diff']:.1%}, top-1 agreement {info['top1_agreement']:.0%}); "
                            "refusing to record it")
    del model
    return info


def reload_note(probe: dict[str, Any]) -> str:
    drift = (f"; vs in-memory model: max logit drift {probe['rel_max_diff']:.2%}, top-1 agreement "
             f"{probe['top1_agreement']:.0%}") if "rel_max_diff" in probe else ""
    return f"reload check: greedy '{probe['probe_prompt']}' -> {probe['probe_output']!r}{drift}"
