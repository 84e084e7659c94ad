"""STAND-IN for NVIDIA Model-Optimizer 0.46.0's EAGLE-3 recipe (tests only; trains nothing).

* ``main.py`` (examples/speculative_decoding/main.py, _parse_cli + train): ``--config`` and ``--dry_run`` by
  parse_known_args, every other argument an OmegaConf dotlist override (modelopt/recipe/loader.py _apply_dotlist
  refuses one without ``=``; values are yaml-typed), the recipe validated as its pydantic sections do
  (plugins/hf_training_args.py: ``model`` and ``data`` forbid unknown keys, ``training`` lets HF
  TrainingArguments fields through; speculative/config.py EagleConfig forbids unknown keys), a missing
  model.model_name_or_path refused, online data read as main.py's collator reads it (jsonl, one
  {"messages": [{"role", "content"}, ...]} a line). Writes training.output_dir as the HF Trainer and
  ModelOpt do: checkpoint-N every save_steps (resumed from, like get_last_checkpoint), then the final ModelOpt HF
  checkpoint (config.json, model.safetensors, modelopt_state.pth, trainer_state.json, the tokenizer).
* ``scripts/export_hf_checkpoint.py``: its argparse; refuses a model without ModelOpt's speculative state
  (export_speculative_decoding: "Model is not optimized for speculative decoding."); writes the head as
  EagleExporter does: config.json from the llama template (hf_spec_configs.py llama_eagle_template_config:
  architectures LlamaForCausalLMEagle3, draft_vocab_size, eagle_config, the export rope_scaling) and
  model.safetensors with the deployment keys (fc, layers.N.*, norm, lm_head; no `eagle_module.` prefix).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from pathlib import Path

import yaml

from .common import StandinError, check_hf_model_dir, log, read_json, run_main, simulate_work, write_safetensors

TOOL = "modelopt_eagle3"
BUILTIN_RECIPE = "general/speculative_decoding/eagle3"  # modelopt_recipes/ in the wheel, suffix optional
# modelopt_recipes/general/speculative_decoding/eagle3.yaml at 0.46.0 (the keys; its defaults where read here).
RECIPE = {
    "metadata": {"recipe_type": "speculative_eagle", "description": "EAGLE3 training recipe"},
    "model": {"model_name_or_path": None, "trust_remote_code": False, "use_fake_base_for_offline": False},
    "data": {"mode": None, "data_path": "input_conversations/train.jsonl", "offline_data_path": None,
             "draft_vocab_cache": None, "vlm_img_dir": None, "vlm_processor": None},
    "training": {"output_dir": None, "num_train_epochs": 1, "per_device_train_batch_size": 1, "learning_rate": 1e-4,
                 "warmup_steps": 1000, "training_seq_len": 2048, "logging_steps": 100, "save_steps": 8192,
                 "cp_size": 1, "disable_tqdm": False, "estimate_ar": False, "ar_validate_steps": -1,
                 "answer_only_loss": False, "do_eval": False, "lr_scheduler_type": "linear",
                 "save_strategy": "steps", "weight_decay": 0.0, "dataloader_drop_last": True, "bf16": True,
                 "tf32": True, "remove_unused_columns": False},
    "eagle": {"eagle_decoder_type": "llama", "eagle_ttt_steps": 3, "eagle_mix_hidden_states": False,
              "eagle_use_torch_compile": True, "eagle_self_logit_distillation": True,
              "eagle_freeze_base_model": True, "eagle_loss_decay_factor": 0.9,
              "eagle_hidden_state_distillation": False, "eagle_reuse_base_decoder": False,
              "eagle_report_acc": True, "eagle_enable_nvtx": False,
              "eagle_export_rope_scaling": {"rope_type": "yarn", "factor": 32.0,
                                            "original_max_position_embeddings": 2048},
              "eagle_architecture_config": {}},
}
MODEL_KEYS = ("model_name_or_path", "use_fake_base_for_offline", "trust_remote_code")
DATA_KEYS = ("mode", "data_path", "offline_data_path", "lazy_preprocess", "draft_vocab_cache", "chat_template",
             "vlm_img_dir", "vlm_processor", "sample_size", "streaming_server_url", "streaming_model_name")
EAGLE_KEYS = ("eagle_offline", "eagle_hidden_state_distillation", "eagle_self_logit_distillation",
              "eagle_freeze_base_model", "eagle_report_acc", "eagle_reuse_base_decoder", "eagle_loss_decay_factor",
              "eagle_architecture_config", "eagle_decoder_type", "eagle_ttt_steps", "eagle_mix_hidden_states",
              "eagle_use_torch_compile", "eagle_enable_nvtx", "eagle_export_rope_scaling", "eagle_base_lora",
              "eagle_base_lora_rank", "eagle_base_lora_alpha", "eagle_base_lora_target_modules",
              "eagle_base_lora_preservation_loss_weight", "eagle_base_lora_warmup_steps",
              "eagle_base_lora_start_layer")
# The training section: SpecTrainingArgs' own fields, and the HF TrainingArguments fields a recipe sets (the
# dataclass of main.py refuses any other: "__init__() got an unexpected keyword argument").
TRAINING_KEYS = ("training_seq_len", "estimate_ar", "ar_validate_steps", "answer_only_loss", "cp_size",
                 "dp_shard_size", "output_dir", "num_train_epochs", "per_device_train_batch_size", "learning_rate",
                 "warmup_steps", "warmup_ratio", "logging_steps", "save_steps", "save_total_limit", "save_strategy",
                 "disable_tqdm", "do_eval", "lr_scheduler_type", "weight_decay", "dataloader_drop_last", "bf16",
                 "tf32", "remove_unused_columns", "gradient_accumulation_steps", "max_steps", "seed", "report_to",
                 "resume_from_checkpoint", "logging_dir", "run_name")
SECTIONS = {"model": MODEL_KEYS, "data": DATA_KEYS, "training": TRAINING_KEYS, "eagle": EAGLE_KEYS}
# modelopt/torch/speculative/eagle/default_config.py: the head's shape unless eagle_architecture_config says.
HEAD_DEFAULTS = {"num_hidden_layers": 1, "intermediate_size": 14336, "num_attention_heads": 32,
                 "num_key_value_heads": 8, "head_dim": 128}
MODELOPT_STATE = "modelopt_state.pth"
TOKENIZER_PREFIXES = ("tokenizer", "special_tokens", "vocab", "merges", "chat_template")


# ------------------------------------------------------------------ main.py
def _set(tree: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        node = tree.get(p)
        if node is None:
            node = tree[p] = {}
        if not isinstance(node, dict):
            raise StandinError(f"omegaconf.errors.ConfigKeyError: cannot set {dotted}: {p} is not a node")
        tree = node
    tree[leaf] = value


def load_recipe(config: str, overrides: list[str]) -> dict:
    """modelopt.recipe.load_recipe: the built-in recipe (or a YAML file), dotlist overrides, section checks."""
    name = config[:-5] if config.endswith(".yaml") else config[:-4] if config.endswith(".yml") else config
    if name == BUILTIN_RECIPE:
        recipe = json.loads(json.dumps(RECIPE))
    elif Path(config).is_file():
        recipe = yaml.safe_load(Path(config).read_text())
    else:
        raise StandinError(f"ValueError: Recipe path {config!r} is not a valid YAML file or directory.")
    for entry in overrides:
        if "=" not in entry:
            raise StandinError(f"ValueError: Invalid override (missing '='): {entry!r}")
        key, raw = entry.split("=", 1)
        _set(recipe, key, yaml.safe_load(raw) if raw else None)
    for section, allowed in SECTIONS.items():
        unknown = sorted(set(recipe.get(section) or {}) - set(allowed))
        if unknown:
            raise StandinError(f"pydantic_core.ValidationError: {section}.{unknown[0]}: Extra inputs are not "
                               "permitted" if section != "training" else
                               f"TypeError: HfTrainingArguments.__init__() got an unexpected keyword argument "
                               f"'{unknown[0]}'")
    if recipe["metadata"].get("recipe_type") != "speculative_eagle":
        raise StandinError("ValueError: main.py expects a speculative-decoding recipe (stand-in: eagle only)")
    data = recipe["data"]
    sample_size = data.get("sample_size", -1)
    if sample_size == 0 or sample_size < -1:
        raise StandinError("pydantic_core.ValidationError: data.sample_size: sample_size must be -1 (use all "
                           "samples) or a positive integer")
    data["mode"] = "offline" if data.get("offline_data_path") else (
        "streaming" if data.get("streaming_server_url") else "online")
    if recipe["training"].get("cp_size", 1) < 1:
        raise StandinError(f"ValueError: cp_size must be >= 1, got {recipe['training']['cp_size']}.")
    return recipe


def read_conversations(path: str) -> list:
    """What the online collator reads: {"messages": [{"role": ..., "content": ...}, ...]} a line."""
    p = Path(path)
    if not p.is_file():
        raise StandinError(f"FileNotFoundError: Unable to find '{path}' (data.data_path)")
    rows = []
    for n, line in enumerate(p.read_text().splitlines(), 1):
        try:
            messages = json.loads(line)["messages"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise StandinError(f"{path}:{n}: not a {{\"messages\": [...]}} conversation ({type(e).__name__}: {e})")
        if not messages or any(set(m) < {"role", "content"} for m in messages):
            raise StandinError(f"{path}:{n}: every message needs role and content")
        rows.append(messages)
    if not rows:
        raise StandinError(f"IndexError: {path} holds no conversations")
    return rows


def _last_checkpoint(out: Path):
    steps = [int(p.name.split("-")[1]) for p in out.glob("checkpoint-*") if p.name.split("-")[1].isdigit()]
    return out / f"checkpoint-{max(steps)}" if steps else None


def _save(out: Path, model_dir: Path, base: dict, recipe: dict, step: int, history: list) -> None:
    out.mkdir(parents=True, exist_ok=True)
    # mto.enable_huggingface_checkpointing: the base model's config and weights with the head, and the state
    # that restores the conversion (which export_hf_checkpoint.py needs).
    (out / "config.json").write_text(json.dumps(base, indent=2))
    write_safetensors(out / "model.safetensors", {"model.embed_tokens.weight": ("BF16", (2, 2)),
                                                  "eagle_module.fc.weight": ("BF16", (2, 2))})
    (out / MODELOPT_STATE).write_text(json.dumps({"modes": [["eagle", recipe["eagle"]]], "standin": True}))
    (out / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": history}, indent=2))
    for f in model_dir.iterdir():
        if f.name.startswith(TOKENIZER_PREFIXES):
            shutil.copy(f, out / f.name)


def train(argv: list[str]) -> int:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--config", required=True)
    p.add_argument("--dry_run", action="store_true")
    args, overrides = p.parse_known_args(argv)
    recipe = load_recipe(args.config, overrides)
    t, data = recipe["training"], recipe["data"]
    if not recipe["model"].get("model_name_or_path"):
        raise StandinError("ValueError: model.model_name_or_path must be set in the recipe YAML or via a dotlist "
                           "override.")
    if not t.get("output_dir"):
        raise StandinError("TypeError: TrainingArguments.__init__() missing output_dir")
    model_dir = Path(recipe["model"]["model_name_or_path"])
    base = check_hf_model_dir(str(model_dir), TOOL)
    if data["mode"] != "online":
        raise StandinError(f"data.mode={data['mode']!r}: the stand-in models online training only")
    conversations = read_conversations(data["data_path"])
    world = int(os.environ.get("WORLD_SIZE", "1"))
    out = Path(t["output_dir"])
    resumed = _last_checkpoint(out) if out.is_dir() else None
    if resumed:
        log(TOOL, f"Last checkpoint detected: {resumed}")
    simulate_work(TOOL)
    # dataloader_drop_last: whole batches only, over every process.
    per_epoch = len(conversations) // (t["per_device_train_batch_size"] * world)
    if per_epoch < 1:
        raise StandinError(f"ValueError: {len(conversations)} conversations make no batch of "
                           f"{t['per_device_train_batch_size']} x {world} processes")
    total = per_epoch * t["num_train_epochs"]
    start = int(resumed.name.split("-")[1]) if resumed else 0
    history = json.loads((resumed / "trainer_state.json").read_text())["log_history"] if resumed else []
    for step in range(start + 1, total + 1):
        if step % t["logging_steps"] == 0:
            history.append({"step": step, "loss": round(17.6 - math.log1p(step) / 10, 4),
                            "train_acc/parallel_0_step_0": round(min(0.6, step / total), 4)})
        if step % t["save_steps"] == 0:
            _save(out / f"checkpoint-{step}", model_dir, base, recipe, step, history)
            kept = sorted(out.glob("checkpoint-*"), key=lambda c: int(c.name.split("-")[1]))
            for old in kept[:-t["save_total_limit"]] if t.get("save_total_limit") else []:
                shutil.rmtree(old)
    _save(out, model_dir, base, recipe, total, history)
    log(TOOL, f"trained {total - start} steps ({len(conversations)} conversations, {world} processes, "
              f"{'resumed from ' + resumed.name if resumed else 'from scratch'}); saved {out}")
    return 0


# ------------------------------------------------------------------ scripts/export_hf_checkpoint.py
def export(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description="Export a HF checkpoint (with ModelOpt state) for deployment.")
    p.add_argument("--model_path", type=str, default="Path of the trained checkpoint.")
    p.add_argument("--trust_remote_code", action="store_true")
    p.add_argument("--export_path", type=str, default="Destination directory for exported files.")
    args = p.parse_args(argv)
    base = check_hf_model_dir(args.model_path, TOOL, need_tokenizer=False)
    state = Path(args.model_path) / MODELOPT_STATE
    if not state.is_file():
        raise StandinError("AssertionError: Model is not optimized for speculative decoding.")
    eagle = json.loads(state.read_text())["modes"][0][1]
    if eagle["eagle_decoder_type"] not in ("llama", "kimik2"):
        raise StandinError(f"KeyError: '{eagle['eagle_decoder_type']}'")
    simulate_work(TOOL)
    head = {**HEAD_DEFAULTS, **eagle["eagle_architecture_config"]}
    hidden, vocab, layers = base["hidden_size"], base["vocab_size"], head["num_hidden_layers"]
    base_layers = base.get("num_hidden_layers", 3)
    # plugins/hf_eagle.py: the base layers whose hidden states the head reads (a 2-layer model: [0, 1]).
    aux = sorted({1, max(0, base_layers // 2 - 1), max(0, base_layers - 4)})
    q, kv = head["num_attention_heads"] * head["head_dim"], head["num_key_value_heads"] * head["head_dim"]
    # Shapes scaled down (the stand-in's files stay tiny); names as EagleExporter._check_valid_sd wants them.
    tensors = {"fc.weight": ("BF16", (2, 2 * len(aux))), "norm.weight": ("BF16", (2,)),
               "lm_head.weight": ("BF16", (2, 2))}
    for i in range(layers):
        for name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                     "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "post_attention_layernorm"):
            tensors[f"layers.{i}.{name}.weight"] = ("BF16", (2, 2))
    tensors["layers.0.hidden_norm.weight"] = ("BF16", (2,))
    tensors["layers.0.input_layernorm.weight"] = ("BF16", (2,))
    out = Path(args.export_path)
    out.mkdir(parents=True, exist_ok=True)
    write_safetensors(out / "model.safetensors", tensors, {"shapes_of_the_real_head": json.dumps(
        {"hidden_size": hidden, "q_proj_out": q, "kv_proj_out": kv, "vocab_size": vocab})})
    config = {"architectures": ["LlamaForCausalLMEagle3"], "model_type": "llama",
              "bos_token_id": base.get("bos_token_id"), "eos_token_id": base.get("eos_token_id"),
              "hidden_act": "silu", "hidden_size": hidden, "intermediate_size": head["intermediate_size"],
              "max_position_embeddings": base.get("max_position_embeddings"),
              "num_attention_heads": head["num_attention_heads"], "num_key_value_heads": head["num_key_value_heads"],
              "num_hidden_layers": layers, "pad_token_id": base.get("pad_token_id"), "rms_norm_eps": 1e-05,
              "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_cache": True, "vocab_size": vocab,
              "draft_vocab_size": vocab, "rope_scaling": eagle["eagle_export_rope_scaling"],
              "head_dim": head["head_dim"], "rope_theta": 10000,
              "eagle_config": {"eagle_aux_hidden_state_layer_ids": aux, "use_aux_hidden_state": True,
                               "use_input_layernorm_in_first_layer": True, "use_last_layernorm": True,
                               "use_mtp_layernorm": False, "next_layer_regular": True, "parallel_draft_step": 1,
                               "parallel_draft_heads_num_layers": 1}}
    (out / "config.json").write_text(json.dumps(config, indent=4))
    print(f"Exported checkpoint to {args.export_path}")
    return 0


def main_train() -> None:
    run_main(TOOL, lambda: train(sys.argv[1:]))


def main_export() -> None:
    run_main(TOOL, lambda: export(sys.argv[1:]))
