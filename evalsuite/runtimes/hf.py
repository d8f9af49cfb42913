"""Hugging Face transformers runtime: the unquantized base, GPTQ/AWQ (compressed-tensors
or GPTQModel formats, decompressed by transformers on CPU) and bitsandbytes variants.

Log-likelihood shares each context and batches across items: each context with all of its
continuations is one tree under a custom attention mask, and many trees share one forward
pass (``evalsuite.runtimes.packing``). Where a custom mask cannot be trusted (a sliding
window shorter than a tree) the context is run once with ``use_cache`` and its KV cache is
repeated for the choices instead.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np

from evalsuite.runtimes import RUNTIMES, RuntimeConfig
from evalsuite.runtimes.common import encode_pair, group_by_context, messages_of
from evalsuite.runtimes.packing import Tree, plan_batches
from evalsuite.types import Generation, GenRequest, LLRequest, LLResult
from quantsuite.errors import BackendUnavailable, UserError


@RUNTIMES.register("hf")
class HFClient:
    name = "hf"

    def __init__(self, model_dir: str | Path, cfg: RuntimeConfig | None = None, trust_remote_code: bool = False):
        self.cfg = cfg or RuntimeConfig()
        self.path = Path(model_dir)
        if not (self.path / "config.json").exists():
            raise UserError(f"{self.path} is not a Hugging Face model folder (no config.json)")
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError:
            raise BackendUnavailable("transformers/torch are not installed (pip install 'quantsuite[hf]')") from None
        torch.set_num_threads(self.cfg.n_threads)
        self.torch = torch
        try:
            self.tok = AutoTokenizer.from_pretrained(self.path, trust_remote_code=trust_remote_code)
            self.model = AutoModelForCausalLM.from_pretrained(
                self.path, dtype=self._dtype(), trust_remote_code=trust_remote_code, use_safetensors=True,
                **self.cfg.extra.get("load_kwargs", {}),
            )
        except (OSError, ValueError) as e:
            raise UserError(f"transformers cannot load {self.path}: {str(e).splitlines()[0][:300]}") from None
        self.model.eval()
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token

    def _dtype(self):
        return self.torch.float32

    @classmethod
    def from_manifest(cls, manifest, cfg: RuntimeConfig) -> "HFClient":
        return cls(manifest.artifact_path, cfg)

    # -- tokens ---------------------------------------------------------------------
    @property
    def bos_id(self) -> int | None:
        return self.tok.bos_token_id if getattr(self.tok, "add_bos_token", False) else None

    def tokenize(self, text: str, add_bos: bool = False) -> list[int]:
        # Plain text: control-token spellings in the data (WikiText's literal "<unk>") stay
        # text, as llama.cpp does with special=False, so both runtimes see the same ids.
        ids = self.tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        if add_bos and self.bos_id is not None:
            ids = [self.bos_id] + ids
        return ids

    @property
    def device(self):
        return next(self.model.parameters()).device

    # -- scoring -----------------------------------------------------------------------
    def token_logprobs(self, tokens: Sequence[int]) -> np.ndarray:
        with self.torch.inference_mode():
            ids = self.torch.tensor([list(tokens)], device=self.device)
            logits = self.model(input_ids=ids).logits[0].float()
            return self.torch.log_softmax(logits, dim=-1).cpu().numpy()

    def _trees(self, reqs: Sequence[LLRequest]) -> list[Tree]:
        tok = lambda s: self.tokenize(s)  # noqa: E731
        trees = []
        for ctx_text, idxs in group_by_context(reqs).items():
            pairs = [encode_pair(tok, ctx_text, reqs[i].continuation) for i in idxs]
            trees.append(Tree(pairs[0][0] or [self.tok.eos_token_id], [c for _, c in pairs], idxs))
        return trees

    def _packing_ok(self, trees: list[Tree]) -> bool:
        """A packed row relies on our mask alone; a sliding-window layer would apply its own
        window on top only if the tree were longer than it, so then take the cached path."""
        window = getattr(self.model.config, "sliding_window", None)
        return not (window and max(t.size for t in trees) > int(window)) and not self.cfg.extra.get("ll_no_packing")

    def loglikelihood(self, reqs: Sequence[LLRequest]) -> list[LLResult]:
        if not reqs:
            return []
        trees = self._trees(reqs)
        out: list[LLResult | None] = [None] * len(reqs)
        if not self._packing_ok(trees):
            for tree in trees:
                self._score_tree_cached(tree, out)
            return out  # type: ignore[return-value]
        torch = self.torch
        dtype = self.model.dtype if self.model.dtype.is_floating_point else torch.float32
        for b in plan_batches(trees, self.tok.pad_token_id, int(self.cfg.extra.get("ll_row_tokens", 256)),
                              int(self.cfg.extra.get("ll_batch_tokens", 1024))):
            t0 = time.perf_counter()
            # additive mask (0 = attend): read the same way by the eager and SDPA attention paths
            mask = torch.zeros(b.allowed.shape, dtype=dtype)
            mask.masked_fill_(torch.from_numpy(~b.allowed), torch.finfo(dtype).min)
            with torch.inference_mode():
                logits = self.model(input_ids=torch.from_numpy(b.ids).to(self.device),
                                    attention_mask=mask[:, None].to(self.device),
                                    position_ids=torch.from_numpy(b.positions).to(self.device), use_cache=False).logits
                for sp in b.spans:
                    if not sp.cont:                        # empty continuation: log 1
                        out[sp.req] = LLResult(0.0, True, 0, tokens_in=sp.n_ctx if sp.first_of_tree else 0)
                        continue
                    lp = torch.log_softmax(logits[sp.row, sp.at].float(), -1)
                    target = torch.tensor(sp.cont, device=lp.device)
                    picked = lp.gather(1, target[:, None])[:, 0]
                    out[sp.req] = LLResult(float(picked.sum()), bool((lp.argmax(-1) == target).all()), len(sp.cont),
                                           tokens_in=(sp.n_ctx if sp.first_of_tree else 0) + len(sp.cont) - 1)
            dt = (time.perf_counter() - t0) / len(b.spans)
            for sp in b.spans:
                out[sp.req].seconds = dt
        return out  # type: ignore[return-value]

    def _score_tree_cached(self, tree: Tree, out: list) -> None:
        """One context run once with its KV cache, repeated for the continuations."""
        torch = self.torch
        t0 = time.perf_counter()
        ctx, conts = tree.ctx, tree.conts
        with torch.inference_mode():
            o = self.model(input_ids=torch.tensor([ctx], device=self.device), use_cache=True)
            last = torch.log_softmax(o.logits[0, -1].float(), -1)      # predicts cont[0]
            n = len(conts)
            past = o.past_key_values
            past.batch_repeat_interleave(n)
            width = max(len(c) for c in conts)
            inp = torch.full((n, max(width - 1, 1)), self.tok.pad_token_id, device=self.device)
            att = torch.zeros((n, len(ctx) + inp.shape[1]), dtype=torch.long, device=self.device)
            att[:, : len(ctx)] = 1
            for j, c in enumerate(conts):
                if len(c) > 1:
                    inp[j, : len(c) - 1] = torch.tensor(c[:-1])
                    att[j, len(ctx): len(ctx) + len(c) - 1] = 1
            o2 = self.model(input_ids=inp, attention_mask=att, past_key_values=past, use_cache=False)
            lps = torch.log_softmax(o2.logits.float(), -1)
        dt = (time.perf_counter() - t0) / len(conts)
        for j, (i, c) in enumerate(zip(tree.req_idx, conts)):
            rows = [last] + [lps[j, t] for t in range(len(c) - 1)]
            picked = [float(rows[t][c[t]]) for t in range(len(c))]
            greedy = all(int(rows[t].argmax()) == c[t] for t in range(len(c)))
            out[i] = LLResult(sum(picked), greedy, len(c), tokens_in=(len(ctx) if j == 0 else 0) + max(len(c) - 1, 0),
                              seconds=dt)

    # -- generation ------------------------------------------------------------------------
    def _prompt_ids(self, r: GenRequest) -> list[int]:
        if r.messages:
            if not getattr(self.tok, "chat_template", None):
                text = "\n\n".join(c for _, c in r.messages) + "\n"
                return self.tokenize(text, add_bos=True)
            return list(self.tok.apply_chat_template(messages_of(r), add_generation_prompt=True, tokenize=True,
                                                     return_dict=True)["input_ids"])
        return self.tokenize(r.prompt, add_bos=True)

    def generate(self, reqs: Sequence[GenRequest]) -> list[Generation]:
        """Greedy single-sample requests run as left-padded batches of ``batch_size`` (one
        forward pass per new token for the whole batch, which is what makes CPU decoding of
        a small model efficient); sampled ones run one prompt at a time with their k samples
        sharing it, so each request's samples depend on its own seed only."""
        out: list[Generation | None] = [None] * len(reqs)
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(reqs):
            if r.temperature <= 0 and r.n == 1:
                groups.setdefault((r.max_tokens,), []).append(i)
            else:
                out[i] = self._generate_one(r)
        size = max(1, int(self.cfg.batch_size))
        for idxs in groups.values():
            for k in range(0, len(idxs), size):
                chunk = idxs[k:k + size]
                for i, g in zip(chunk, self._generate_greedy([reqs[i] for i in chunk])):
                    out[i] = g
        return out  # type: ignore[return-value]

    def _generate_one(self, r: GenRequest) -> Generation:
        torch = self.torch
        t0 = time.perf_counter()
        ids = self._prompt_ids(r)
        torch.manual_seed(r.seed)
        kw = dict(max_new_tokens=r.max_tokens, pad_token_id=self.tok.pad_token_id, num_return_sequences=r.n)
        if r.temperature > 0:
            kw.update(do_sample=True, temperature=r.temperature, top_p=r.top_p, top_k=r.top_k or 0)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            # one prompt, n continuations: the prompt is encoded once and its cache expanded
            gen = self.model.generate(torch.tensor([ids], device=self.device),
                                      attention_mask=torch.ones((1, len(ids)), dtype=torch.long, device=self.device), **kw)
        texts, reasons, n_out = self._decode_rows([row[len(ids):].tolist() for row in gen], r)
        return Generation(texts, len(ids), n_out, time.perf_counter() - t0, reasons)

    def _generate_greedy(self, reqs: Sequence[GenRequest]) -> list[Generation]:
        torch = self.torch
        t0 = time.perf_counter()
        prompts = [self._prompt_ids(r) for r in reqs]
        width = max(len(p) for p in prompts)
        inp = torch.full((len(prompts), width), self.tok.pad_token_id, dtype=torch.long)
        att = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):              # left padding: every prompt ends at column width-1
            inp[i, width - len(p):] = torch.tensor(p)
            att[i, width - len(p):] = 1
        with torch.inference_mode():
            gen = self.model.generate(inp.to(self.device), attention_mask=att.to(self.device),
                                      max_new_tokens=reqs[0].max_tokens, pad_token_id=self.tok.pad_token_id,
                                      do_sample=False, temperature=None, top_p=None, top_k=None)
        dt = (time.perf_counter() - t0) / len(reqs)
        results = []
        for r, p, row in zip(reqs, prompts, gen):
            texts, reasons, n_out = self._decode_rows([row[width:].tolist()], r)
            results.append(Generation(texts, len(p), n_out, dt, reasons))
        return results

    def _eos_ids(self) -> set[int]:
        """The tokenizer's end of sequence and every end token generate() stops at (chat
        models list their end-of-turn token there)."""
        ids = {self.tok.eos_token_id}
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids |= set(gen_eos) if isinstance(gen_eos, (list, tuple)) else {gen_eos}
        return {i for i in ids if i is not None}

    def _decode_rows(self, rows: list[list[int]], r: GenRequest) -> tuple[list[str], list[str], int]:
        """Generated ids -> texts cut at the end-of-sequence token and at ``r.stop``."""
        texts, reasons, n_out = [], [], 0
        eos = self._eos_ids()
        for new in rows:
            end = next((j for j, t in enumerate(new) if t in eos), None)
            if end is not None:
                new = new[:end]
                reasons.append("stop")
            else:
                reasons.append("length")
            text = self.tok.decode(new, skip_special_tokens=True)
            for s in r.stop:
                if s in text:
                    text = text[: text.index(s)]
                    reasons[-1] = "stop"
            texts.append(text)
            n_out += len(new)
        return texts, reasons, n_out

    def close(self) -> None:
        self.model = None
