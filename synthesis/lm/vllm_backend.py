"""The vLLM generation backend (GPU; install the `gpu` extra), with the TransformersBackend's
interface. vllm is imported inside the class, so this module imports on machines without it.

Prompts are rendered and tokenized by the shared functions in generation.py and passed to vLLM as
token ids, so both backends feed the model exactly the same tokens. The LoRA adapter is not merged:
vLLM applies it per request through a LoRARequest.
"""
import gc
import json
import math
from pathlib import Path
from typing import Callable

from synthesis.lm.requests import (Completion, Prompt, SamplingParams, adapter_dir_check, batch_seed,
    candidate_token_ids, prompt_token_ids, prompts_validate)
from synthesis.lm.loader import model_source

# vLLM allocates LoRA slots for one of these ranks; the adapter's rank is rounded up to the next.
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
# vLLM returns the top-k log-probabilities per position; candidates outside them count as 0.
JUDGE_TOP_LOGPROBS = 20
# Prompts per llm.generate call: on_completion fires after each chunk, so callers see progress.
CHUNK_SIZE = 256


class VLLMBackend:
    """Generation with vllm.LLM, optionally through one LoRA adapter."""

    def __init__(self, llm, *, lora_request=None):
        self.llm = llm
        self.lora_request = lora_request
        self.tokenizer = llm.get_tokenizer()

    @classmethod
    def load(cls, *, model_spec: str, adapter_path: Path | None, cache_dir: Path, dtype=None,
             seed: int = 0) -> "VLLMBackend":
        """Start a vLLM engine on `model_spec`, with LoRA enabled when an adapter is given."""
        from vllm import LLM  # vllm exists only on CUDA machines with the gpu extra
        from vllm.lora.request import LoRARequest  # (as above)

        options = dict(model=model_source(model_spec, cache_dir=cache_dir), dtype=dtype or "auto", seed=seed)
        lora_request = None
        if adapter_path is not None:
            adapter_path = adapter_dir_check(adapter_path)
            rank = json.loads((adapter_path / "adapter_config.json").read_text()).get("r", 8)
            options.update(enable_lora=True, max_lora_rank=next((r for r in VLLM_LORA_RANKS if r >= rank), rank))
            lora_request = LoRARequest("adapter", 1, str(adapter_path))
        return cls(LLM(**options), lora_request=lora_request)

    def generate(self, prompts: list[Prompt], sampling: SamplingParams, *,
                 on_completion: Callable[[int, Completion], None] | None = None) -> list[Completion]:
        """One Completion per prompt, in input order. Each prompt gets its own seed (from
        sampling.seed and its index), so identical prompts still give different samples."""
        from vllm import SamplingParams as VLLMSamplingParams  # (as above)

        prompts_validate(prompts)
        results: list[Completion] = []
        for start in range(0, len(prompts), CHUNK_SIZE):
            chunk = prompts[start:start + CHUNK_SIZE]
            params = [
                VLLMSamplingParams(temperature=sampling.temperature, top_p=sampling.top_p,
                                   max_tokens=sampling.max_new_tokens, seed=batch_seed(sampling.seed, start + offset))
                for offset in range(len(chunk))
            ]
            outputs = self.llm.generate(self._token_prompts(chunk), params, use_tqdm=False,
                                        lora_request=self.lora_request)
            for offset, output in enumerate(outputs):
                answer = output.outputs[0]
                completion = Completion(
                    text=answer.text, prompt_tokens=len(output.prompt_token_ids),
                    completion_tokens=len(answer.token_ids),
                    finish_reason="stop" if answer.finish_reason == "stop" else "length",
                )
                results.append(completion)
                if on_completion is not None:
                    on_completion(start + offset, completion)
        return results

    def next_token_probs(self, prompts: list[Prompt], candidates: list[str]) -> list[dict[str, float]]:
        """As TransformersBackend.next_token_probs, from vLLM's top-20 log-probabilities of the
        first reply token: a candidate token outside the top 20 counts as probability 0."""
        from vllm import SamplingParams as VLLMSamplingParams  # (as above)

        prompts_validate(prompts)
        token_ids = {word: candidate_token_ids(self.tokenizer, word) for word in candidates}
        params = VLLMSamplingParams(temperature=0.0, max_tokens=1, logprobs=JUDGE_TOP_LOGPROBS)
        outputs = self.llm.generate(self._token_prompts(prompts), params, use_tqdm=False,
                                    lora_request=self.lora_request)
        results = []
        for output in outputs:
            top = output.outputs[0].logprobs[0]  # {token_id: Logprob} at the first generated position
            results.append({
                word: sum(math.exp(top[i].logprob) for i in ids if i in top) for word, ids in token_ids.items()
            })
        return results

    def _token_prompts(self, prompts: list[Prompt]) -> list[dict]:
        return [{"prompt_token_ids": prompt_token_ids(self.tokenizer, messages)} for messages in prompts]

    def close(self) -> None:
        """Shut the engine down and free the GPU memory it held."""
        import torch  # deferred: this module imports without torch

        self.llm = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
