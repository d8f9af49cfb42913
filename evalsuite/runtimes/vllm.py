"""vLLM: listed in the runtimes of GPTQ/AWQ/unquantized manifests because vLLM loads their
compressed-tensors folders, but driven through its OpenAI-compatible server, not in-process.

Why no in-process client: vLLM needs a CUDA (or ROCm/TPU) device, which no machine of this
project has, so in-process code could not be tested here; its server already batches,
shares prefixes and samples n completions per prompt, which is what the ``openai`` runtime
uses. Asking for ``--runtime vllm`` therefore fails with the command that works:
``vllm serve <variant folder>``, then ``quantsuite eval --endpoint openai:http://HOST:8000/v1#<name>``.
"""

from __future__ import annotations

from evalsuite.runtimes import RUNTIMES, RuntimeConfig
from quantsuite.errors import BackendUnavailable


def _why_not() -> str:
    try:
        import torch

        gpu = torch.cuda.is_available()
    except ImportError:
        gpu = False
    return "this machine has no CUDA GPU, which vLLM needs" if not gpu else "quantsuite drives vLLM through its server"


@RUNTIMES.register("vllm")
class VLLMClient:
    name = "vllm"

    def __init__(self, model_dir, cfg: RuntimeConfig | None = None):
        raise BackendUnavailable(
            f"runtime vllm is not run in-process ({_why_not()}): start `vllm serve {model_dir}` on a GPU machine and "
            f"evaluate it with --endpoint openai:http://HOST:8000/v1#{model_dir} (generation strategies), "
            "or use --runtime hf here")

    @classmethod
    def from_manifest(cls, manifest, cfg: RuntimeConfig) -> "VLLMClient":
        return cls(manifest.artifact_path if manifest.path else manifest.variant_id, cfg)
