"""Xinference 4.1.0's built-in chat families by the architecture in a model's config.json.

Generated from the families xinference 4.1.0 ships (xinference/model/llm/models/*.json: each
family's `architectures`, kept where its `model_ability` has "chat"), read from a real
`llmctl engine install xinference --version 4.1.0` env. `llmctl init --backend xinference`
fills options.model_name from it (XinferenceBackend.starter_options).
"""

# For an architecture many families share, the one a model folder gets when its name matches
# none of them (the family the CPU end-to-end test serves the tiny Llama model with; the
# instruct family of each line otherwise).
DEFAULTS: dict[str, str] = {
    "LlamaForCausalLM": "llama-2-chat",
    "Qwen2ForCausalLM": "qwen2.5-instruct",
    "Qwen3ForCausalLM": "qwen3",
    "MistralForCausalLM": "mistral-instruct-v0.3",
    "Phi3ForCausalLM": "phi-3-mini-4k-instruct",
}

CHAT_FAMILIES: dict[str, tuple[str, ...]] = {
    "BaichuanForCausalLM": ("baichuan-2-chat",),
    "BailingMoeV3ForCausalLM": (
        "Ling-3.0-flash",
        "Ling-3.0-tiny",
    ),
    "ChatGLMForConditionalGeneration": ("cogagent",),
    "ChatGLMModel": (
        "codegeex4",
        "glm-4v",
    ),
    "DeepseekV2ForCausalLM": (
        "deepseek-v2-chat",
        "deepseek-v2-chat-0628",
        "deepseek-v2.5",
        "deepseek-vl2",
    ),
    "DeepseekV32ForCausalLM": (
        "DeepSeek-V3.2",
        "DeepSeek-V3.2-Exp",
    ),
    "DeepseekV3ForCausalLM": (
        "deepseek-prover-v2",
        "deepseek-r1",
        "deepseek-r1-0528",
        "deepseek-v3",
        "deepseek-v3-0324",
        "Deepseek-V3.1",
        "moonlight-16b-a3b-instruct",
    ),
    "DeepseekV41ForCausalLM": (
        "DeepSeek-V4.1-Flash",
        "DeepSeek-V4.1-Flash-1017",
    ),
    "DeepseekV4ForCausalLM": (
        "DeepSeek-V4-Flash",
        "DeepSeek-V4-Flash-0731",
        "DeepSeek-V4-Pro",
    ),
    "Ernie4_5ForCausalLM": ("Ernie4.5",),
    "Gemma3ForCausalLM": ("gemma-3-1b-it",),
    "Gemma3ForConditionalGeneration": ("gemma-3-it",),
    "Gemma4ForConditionalGeneration": ("gemma-4",),
    "Gemma4UnifiedForConditionalGeneration": ("gemma-4",),
    "Glm4ForCausalLM": ("glm4-0414",),
    "Glm4MoeForCausalLM": (
        "glm-4.5",
        "GLM-4.6",
        "GLM-4.7",
    ),
    "Glm4MoeLiteForCausalLM": ("GLM-4.7-Flash",),
    "Glm4vForConditionalGeneration": ("glm-4.1v-thinking",),
    "Glm4vMoeForConditionalGeneration": ("glm-4.5v",),
    "GlmForCausalLM": (
        "glm-edge-chat",
        "glm4-chat",
        "glm4-chat-1m",
    ),
    "GlmMoeDsaForCausalLM": (
        "glm-5",
        "glm-5.1",
        "glm-5.2",
        "glm-5.3",
    ),
    "GptOssForCausalLM": ("gpt-oss",),
    "HYV3ForCausalLM": ("Hy-MT2-30B-A3B",),
    "HunYuanDenseV1ForCausalLM": (
        "Hy-MT2-1.8B",
        "Hy-MT2-7B",
    ),
    "InternLM3ForCausalLM": ("internlm3-instruct",),
    "InternVLChatModel": ("InternVL3",),
    "KimiK25ForConditionalGeneration": ("Kimi-K2.5",),
    "KimiK3ForConditionalGeneration": ("Kimi-K3",),
    "LlamaForCausalLM": (
        "code-llama-instruct",
        "deepseek-chat",
        "deepseek-coder-instruct",
        "deepseek-r1-distill-llama",
        "HuatuoGPT-o1-LLaMA-3.1",
        "llama-2-chat",
        "llama-3-instruct",
        "llama-3.1-instruct",
        "llama-3.3-instruct",
        "minicpm5-1b",
        "minicpm5-2b",
        "Yi-1.5-chat",
        "Yi-1.5-chat-16k",
        "Yi-chat",
    ),
    "MiniCPM3ForCausalLM": ("minicpm3-4b",),
    "MiniCPMForCausalLM": (
        "minicpm-2b-dpo-bf16",
        "minicpm-2b-dpo-fp16",
        "minicpm-2b-dpo-fp32",
        "minicpm-2b-sft-bf16",
        "minicpm-2b-sft-fp32",
        "minicpm4",
    ),
    "MiniCPMV": (
        "MiniCPM-V-2.6",
        "MiniCPM-V-4.5",
    ),
    "MiniCPMV4_6ForConditionalGeneration": (
        "MiniCPM-V-4.6",
        "MiniCPM-V-4.6-Thinking",
    ),
    "MiniCPMV4_7ForConditionalGeneration": ("MiniCPM-V-4.7",),
    "MiniMaxM2ForCausalLM": (
        "MiniMax-M2",
        "MiniMax-M2.5",
        "MiniMax-M2.7",
    ),
    "MiniMaxM3SparseForConditionalGeneration": ("MiniMax-M3",),
    "MistralForCausalLM": (
        "mistral-instruct-v0.1",
        "mistral-instruct-v0.2",
        "mistral-instruct-v0.3",
        "mistral-large-instruct",
        "mistral-nemo-instruct",
        "openhermes-2.5",
    ),
    "MixtralForCausalLM": (
        "mixtral-8x22B-instruct-v0.1",
        "mixtral-instruct-v0.1",
    ),
    "MllamaForConditionalGeneration": ("llama-3.2-vision-instruct",),
    "OrionForCausalLM": ("orion-chat",),
    "Ovis": ("Ovis2",),
    "Phi3ForCausalLM": (
        "phi-3-mini-128k-instruct",
        "phi-3-mini-4k-instruct",
    ),
    "QWenLMHeadModel": ("qwen-chat",),
    "Qwen2AudioForConditionalGeneration": ("qwen2-audio-instruct",),
    "Qwen2ForCausalLM": (
        "Baichuan-M2",
        "codeqwen1.5-chat",
        "deepseek-r1-distill-qwen",
        "DianJin-R1",
        "fin-r1",
        "HuatuoGPT-o1-Qwen2.5",
        "KAT-V1",
        "marco-o1",
        "qwen1.5-chat",
        "qwen2-instruct",
        "qwen2.5-coder-instruct",
        "qwen2.5-instruct",
        "qwen2.5-instruct-1m",
        "qwenLong-l1",
        "QwQ-32B",
        "QwQ-32B-Preview",
        "seallms-v3",
        "skywork-or1",
        "skywork-or1-preview",
        "vibethinker",
        "XiYanSQL-QwenCoder-2504",
    ),
    "Qwen2MoeForCausalLM": (
        "qwen1.5-moe-chat",
        "qwen2-moe-instruct",
    ),
    "Qwen2VLForConditionalGeneration": (
        "MinerU2.5-2509-1.2B",
        "QvQ-72B-Preview",
        "qwen2-vl-instruct",
    ),
    "Qwen2_5OmniModel": ("qwen2.5-omni",),
    "Qwen2_5_VLForConditionalGeneration": ("qwen2.5-vl-instruct",),
    "Qwen3ForCausalLM": (
        "deepseek-r1-0528-qwen3",
        "qwen3",
    ),
    "Qwen3MoeForCausalLM": (
        "Qwen3-Coder",
        "Qwen3-Instruct",
        "Qwen3-Thinking",
    ),
    "Qwen3NextForCausalLM": (
        "Qwen3-Next-Instruct",
        "Qwen3-Next-Thinking",
    ),
    "Qwen3OmniMoeForConditionalGeneration": (
        "Qwen3-Omni-Instruct",
        "Qwen3-Omni-Thinking",
    ),
    "Qwen3VLMoeForConditionalGeneration": (
        "Qwen3-VL-Instruct",
        "Qwen3-VL-Thinking",
    ),
    "Qwen3_5ForConditionalGeneration": ("qwen3.8",),
    "Qwen3_5MoeForCausalLM": ("qwen3.8-max",),
    "Qwen3_5MoeForConditionalGeneration": (
        "Nex-N2",
        "Ornith-1.0-35B",
        "Ornith-1.5-35B-A3B",
        "Ornith-1.5-397B",
        "qwen3.5",
        "qwen3.6",
    ),
    "Qwen4ExpForConditionalGeneration": ("qwen3.8-Flash-Next",),
    "SeedOssForCausalLM": ("seed-oss",),
    "Spark2_5ForCausalLM": ("Spark-X2.5",),
    "TelechatForCausalLM": ("telechat",),
}

# The first pytorch spec's size of each family (what Xinference's match_llm takes first for
# model_format pytorch): options.model_size_in_billions for a local folder.
PYTORCH_SIZE: dict[str, int | str] = {
    "baichuan-2-chat": 7,
    "Baichuan-M2": 32,
    "code-llama-instruct": 7,
    "codegeex4": 9,
    "codeqwen1.5-chat": 7,
    "cogagent": "9",
    "deepseek-chat": 7,
    "deepseek-coder-instruct": "1_3",
    "deepseek-prover-v2": 671,
    "deepseek-r1": 671,
    "deepseek-r1-0528": 671,
    "deepseek-r1-0528-qwen3": 8,
    "deepseek-r1-distill-llama": 8,
    "deepseek-r1-distill-qwen": "1_5",
    "deepseek-v2-chat": 16,
    "deepseek-v2-chat-0628": 236,
    "deepseek-v2.5": 236,
    "deepseek-v3": 671,
    "deepseek-v3-0324": 671,
    "Deepseek-V3.1": 671,
    "DeepSeek-V3.2": 671,
    "DeepSeek-V3.2-Exp": 671,
    "DeepSeek-V4-Flash": 284,
    "DeepSeek-V4-Pro": 1600,
    "deepseek-vl2": 27,
    "DianJin-R1": 7,
    "Ernie4.5": "0_3",
    "fin-r1": 7,
    "gemma-3-1b-it": 1,
    "gemma-3-it": 4,
    "gemma-4": 2,
    "glm-4.1v-thinking": 9,
    "glm-4.5": 355,
    "glm-4.5v": 106,
    "GLM-4.6": 355,
    "GLM-4.7": 355,
    "GLM-4.7-Flash": 30,
    "glm-4v": 9,
    "glm-5": 744,
    "glm-5.1": 744,
    "glm-5.2": 753,
    "glm-5.3": 753,
    "glm-edge-chat": "1_5",
    "glm4-0414": 9,
    "glm4-chat": 9,
    "glm4-chat-1m": 9,
    "gpt-oss": 20,
    "HuatuoGPT-o1-LLaMA-3.1": 8,
    "HuatuoGPT-o1-Qwen2.5": 7,
    "Hy-MT2-1.8B": 2,
    "Hy-MT2-30B-A3B": 30,
    "Hy-MT2-7B": 7,
    "internlm3-instruct": 8,
    "InternVL3": 1,
    "KAT-V1": 40,
    "Kimi-K2.5": "1058_59",
    "Kimi-K3": "2779_93",
    "Ling-3.0-flash": 124,
    "Ling-3.0-tiny": "7_9",
    "llama-2-chat": 7,
    "llama-3-instruct": 8,
    "llama-3.1-instruct": 8,
    "llama-3.2-vision-instruct": 11,
    "llama-3.3-instruct": 70,
    "marco-o1": 7,
    "MinerU2.5-2509-1.2B": "1_2",
    "minicpm-2b-dpo-bf16": 2,
    "minicpm-2b-dpo-fp16": 2,
    "minicpm-2b-dpo-fp32": 2,
    "minicpm-2b-sft-bf16": 2,
    "minicpm-2b-sft-fp32": 2,
    "MiniCPM-V-2.6": 8,
    "MiniCPM-V-4.5": 8,
    "MiniCPM-V-4.6": 1,
    "MiniCPM-V-4.6-Thinking": 1,
    "MiniCPM-V-4.7": 1,
    "minicpm3-4b": 4,
    "minicpm4": "0_5",
    "minicpm5-1b": 1,
    "minicpm5-2b": 2,
    "MiniMax-M2": 230,
    "MiniMax-M2.5": 230,
    "MiniMax-M2.7": 230,
    "MiniMax-M3": 428,
    "mistral-instruct-v0.1": 7,
    "mistral-instruct-v0.2": 7,
    "mistral-instruct-v0.3": 7,
    "mistral-large-instruct": 123,
    "mistral-nemo-instruct": 12,
    "mixtral-8x22B-instruct-v0.1": "141",
    "mixtral-instruct-v0.1": "46_7",
    "moonlight-16b-a3b-instruct": 3,
    "Nex-N2": 35,
    "openhermes-2.5": 7,
    "orion-chat": 14,
    "Ornith-1.0-35B": 35,
    "Ornith-1.5-35B-A3B": 35,
    "Ornith-1.5-397B": 397,
    "Ovis2": 1,
    "phi-3-mini-128k-instruct": 4,
    "phi-3-mini-4k-instruct": 4,
    "QvQ-72B-Preview": 72,
    "qwen-chat": "1_8",
    "qwen1.5-chat": "0_5",
    "qwen1.5-moe-chat": "2_7",
    "qwen2-audio-instruct": 7,
    "qwen2-instruct": "0_5",
    "qwen2-moe-instruct": 14,
    "qwen2-vl-instruct": 2,
    "qwen2.5-coder-instruct": "0_5",
    "qwen2.5-instruct": "0_5",
    "qwen2.5-instruct-1m": 7,
    "qwen2.5-omni": 3,
    "qwen2.5-vl-instruct": 3,
    "qwen3": "0_6",
    "Qwen3-Coder": 480,
    "Qwen3-Instruct": 235,
    "Qwen3-Next-Instruct": 80,
    "Qwen3-Next-Thinking": 80,
    "Qwen3-Omni-Instruct": 30,
    "Qwen3-Omni-Thinking": 30,
    "Qwen3-Thinking": 235,
    "Qwen3-VL-Instruct": 235,
    "Qwen3-VL-Thinking": 235,
    "qwen3.5": 397,
    "qwen3.6": 27,
    "qwen3.8": 27,
    "qwen3.8-Flash-Next": 125,
    "qwen3.8-max": 2400,
    "qwenLong-l1": 32,
    "QwQ-32B": 32,
    "QwQ-32B-Preview": 32,
    "seallms-v3": "1_5",
    "seed-oss": 36,
    "skywork-or1": 32,
    "skywork-or1-preview": 32,
    "Spark-X2.5": "1_7",
    "telechat": 7,
    "vibethinker": "1_5",
    "XiYanSQL-QwenCoder-2504": 7,
    "Yi-1.5-chat": 6,
    "Yi-1.5-chat-16k": 9,
    "Yi-chat": 6,
}


def _tokens(text: str) -> set[str]:
    import re

    return {t for t in re.split(r"[-_/\s]+", text.lower()) if t}


def choose(architecture: str | None, folder_name: str) -> tuple[str | None, tuple[str, ...]]:
    """(the family for a model folder, the families its architecture has): the family every
    word of whose name is in the folder's name (the longest such), else the architecture's
    only family, else its default; None when the architecture has none or several."""
    cands = CHAT_FAMILIES.get(architecture or "", ())
    words = _tokens(folder_name)
    named = [f for f in cands if _tokens(f) <= words]
    if named:
        return max(named, key=lambda f: (len(_tokens(f)), len(f))), cands
    if len(cands) == 1:
        return cands[0], cands
    return DEFAULTS.get(architecture or ""), cands


def starter_options(model: str) -> tuple[dict, dict, list[str]]:
    """What `llmctl init` writes for a local model folder: (options, env, comment lines).
    options.model_name from the folder's architecture (config.json) and name; the family's
    pytorch spec; the virtualenv-per-launch switched off (it installs from the package
    index at every launch). A hub id: nothing (Xinference resolves the name itself)."""
    import json
    import os
    from pathlib import Path

    folder = Path(os.path.expanduser(model))
    if not folder.is_dir():
        return {}, {}, []
    try:
        archs = json.loads((folder / "config.json").read_text()).get("architectures") or []
    except (OSError, ValueError, AttributeError):
        archs = []
    arch = archs[0] if archs else None
    family, cands = choose(arch, folder.resolve().name)
    env = {"XINFERENCE_ENABLE_VIRTUAL_ENV": "0"}
    if family is None:
        where = (
            f"{arch}: one of {', '.join(cands)}"
            if cands
            else (
                f"no built-in chat family of Xinference 4.1 has {arch or 'an unknown architecture'}"
            )
        )
        return {}, env, [f"options.model_name: set the family ({where})"]
    options = {"model_name": family, "model_format": "pytorch"}
    if family in PYTORCH_SIZE:
        options["model_size_in_billions"] = PYTORCH_SIZE[family]
    note = f"{family}: Xinference's built-in family for {arch}"
    if len(cands) > 1:
        note += f" (others: {', '.join(f for f in cands if f != family)})"
    return options, env, [note]
