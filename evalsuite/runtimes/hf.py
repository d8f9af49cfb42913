"""Hugging Face transformers runtime: the unquantized base, GPTQ/AWQ (compressed-tensors
or GPTQModel formats, decompressed by transformers on CPU) and bitsandbytes variants.

Log-likelihood shares each context: the context is run once with ``use_cache``, its KV
cache is repeated for the choices, and all continuations run as one right-padded batch.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np

from evalsuite.runtimes import RUNTIMES, RuntimeConfig
from evalsuite.runtimes.common import encode_pair, group_by_context, messages_of
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

    def loglikelihood(self, reqs: Sequence[LLRequest]) -> list[LLResult]:
        torch = self.torch
        out: list[LLResult | None] = [None] * len(reqs)
        tok = lambda s: self.tokenize(s)  # noqa: E731
        for ctx_text, idxs in group_by_context(reqs).items():
            t0 = time.perf_counter()
            pairs = [encode_pair(tok, ctx_text, reqs[i].continuation) for i in idxs]
            ctx = pairs[0][0] or [self.tok.eos_token_id]
            conts = [c for _, c in pairs]
            with torch.inference_mode():
                ctx_ids = torch.tensor([ctx], device=self.device)
                o = self.model(input_ids=ctx_ids, use_cache=True)
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
            for j, (i, c) in enumerate(zip(idxs, conts)):
                rows = [last] + [lps[j, t] for t in range(len(c) - 1)]
                picked = [float(rows[t][c[t]]) for t in range(len(c))]
                greedy = all(int(rows[t].argmax()) == c[t] for t in range(len(c)))
                out[i] = LLResult(sum(picked), greedy, len(c), tokens_in=(len(ctx) if j == 0 else 0) + len(c) - 1)
            dt = (time.perf_counter() - t0) / len(idxs)
            for i in idxs:
                out[i].seconds = dt
        return out  # type: ignore[return-value]

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
        torch = self.torch
        results = []
        for r in reqs:
            t0 = time.perf_counter()
            ids = self._prompt_ids(r)
            torch.manual_seed(r.seed)
            kw = dict(max_new_tokens=r.max_tokens, pad_token_id=self.tok.pad_token_id,
                      num_return_sequences=r.n)
            if r.temperature > 0:
                kw.update(do_sample=True, temperature=r.temperature, top_p=r.top_p, top_k=r.top_k or 0)
            else:
                kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            with torch.inference_mode():
                # one prompt, n continuations: the prompt is encoded once and its cache expanded
                gen = self.model.generate(torch.tensor([ids], device=self.device),
                                          attention_mask=torch.ones((1, len(ids)), dtype=torch.long, device=self.device), **kw)
            texts, n_out, reasons = [], 0, []
            for row in gen:
                new = row[len(ids):].tolist()
                if self.tok.eos_token_id in new:
                    new = new[: new.index(self.tok.eos_token_id)]
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
            results.append(Generation(texts, len(ids), n_out, time.perf_counter() - t0, reasons))
        return results

    def close(self) -> None:
        self.model = None
