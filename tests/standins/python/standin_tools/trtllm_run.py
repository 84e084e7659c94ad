"""STAND-IN for TensorRT-LLM's ``examples/run.py`` (1.1.0rc0; tests only, runs no model).

Flags: ``examples/run.py`` ``parse_arguments()`` (stored @ 640403b6) + ``examples/utils.py``
``add_common_args()`` (stored @ 1b17f9d1): argparse with the real names, types, choices and defaults, so an
unknown flag exits 2 and ``--max_output_len`` is required. Behaviour:

* reads ``--engine_dir``/config.json (``read_model_name``) and loads ``--tokenizer_dir`` with AutoTokenizer;
* the C++ runtime checks the MPI world size (``OMPI_COMM_WORLD_SIZE``, 1 without mpirun) against the engine's
  tp*pp*cp: ``RuntimeError: [TensorRT-LLM][ERROR] Assertion failed: MPI size 1 != TP size 2 * PP size 1 * CP
  Size 1`` (cpp/tensorrt_llm/runtime/worldConfig.cpp), exit 1;
* prompts are encoded with ``truncation=True, max_length=--max_input_length`` (``parse_input``);
* rank 0 prints, per prompt, ``Input [Text i]: "<decoded prompt ids>"`` and per beam
  ``Output [Text i Beam b]: "<generated text>"`` (``print_output``); the text is ``--max_output_len`` scripted
  tokens decoded with the tokenizer (no model runs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from standin_tools.common import StandinError, log, run_main, simulate_work

TOOL = "run"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="[STAND-IN] TensorRT-LLM examples/run.py")
    p.add_argument("--max_input_length", type=int, default=923)
    p.add_argument("--max_output_len", type=int, required=True)
    p.add_argument("--draft_engine_dir", type=str, default=None)
    p.add_argument("--input_text", type=str, nargs="+", default=["Born in north-east France, Soyer trained as a"])
    p.add_argument("--input_file", type=str, default=None)
    p.add_argument("--multimodal_input_file", type=str)
    p.add_argument("--input_token_extra_ids", type=int, nargs="+", default=None)
    p.add_argument("--input_token_extra_ids_file", type=str, default=None)
    p.add_argument("--output_csv", type=str, default=None)
    p.add_argument("--output_npy", type=str, default=None)
    p.add_argument("--output_generation_logits", default=False, action="store_true")
    p.add_argument("--output_logits_npy", type=str, default=None)
    p.add_argument("--output_log_probs_npy", type=str, default=None)
    p.add_argument("--output_cum_log_probs_npy", type=str, default=None)
    p.add_argument("--run_profiling", default=False, action="store_true")
    p.add_argument("--fail_fast_on_attention_window_too_large", action="store_true", default=False)
    # add_common_args: sampling
    p.add_argument("--num_beams", type=int, default=1)
    p.add_argument("--num_return_sequences", type=int, default=None)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top_k", type=int, default=1)
    p.add_argument("--top_p", type=float, default=0.0)
    p.add_argument("--length_penalty", type=float, default=1.0)
    p.add_argument("--repetition_penalty", type=float, default=1.0)
    p.add_argument("--presence_penalty", type=float, default=0.0)
    p.add_argument("--frequency_penalty", type=float, default=0.0)
    p.add_argument("--min_p", type=float, default=0.0)
    p.add_argument("--beam_search_diversity_rate", type=float, default=0.0)
    p.add_argument("--random_seed", type=int, default=0)
    p.add_argument("--early_stopping", type=int, default=1)
    p.add_argument("--beam_width_array", type=str, default=None)
    p.add_argument("--end_id", default=None, type=int)
    p.add_argument("--stop_words", default=None, type=str, nargs="+", action="append")
    p.add_argument("--bad_words", default=None, type=str, nargs="+", action="append")
    p.add_argument("--no_repeat_ngram_size", type=int, default=None)
    # runtime
    p.add_argument("--sink_token_length", type=int, default=None)
    p.add_argument("--max_attention_window_size", type=int, default=None, nargs="+")
    p.add_argument("--multi_block_mode", type=lambda s: s.lower() in ("yes", "true", "t", "1"), default=True)
    p.add_argument("--enable_context_fmha_fp32_acc", action="store_true")
    p.add_argument("--cuda_graph_mode", action="store_true")
    p.add_argument("--log_level", type=str, choices=["verbose", "info", "warning", "error", "internal_error"],
                   default="info")
    p.add_argument("--no_prompt_template", dest="use_prompt_template", default=True, action="store_false")
    p.add_argument("--use_py_session", default=False, action="store_true")
    p.add_argument("--debug_mode", default=False, action="store_true")
    p.add_argument("--streaming", default=False, action="store_true")
    p.add_argument("--streaming_interval", type=int, default=5)
    p.add_argument("--prompt_table_path", type=str)
    p.add_argument("--prompt_tasks")
    p.add_argument("--lora_dir", type=str, default=None, nargs="+")
    p.add_argument("--lora_ckpt_source", type=str, default="hf", choices=["hf", "nemo"])
    p.add_argument("--lora_task_uids", type=str, default=None, nargs="+")
    p.add_argument("--num_prepend_vtokens", nargs="+", type=int)
    p.add_argument("--draft_target_model_config", type=str, default=None)
    p.add_argument("--ngram_config", type=str, default=None)
    p.add_argument("--medusa_choices", type=str, default=None)
    p.add_argument("--eagle_choices", type=str, default=None)
    p.add_argument("--eagle_posterior_threshold", type=float, default=None)
    p.add_argument("--eagle_use_dynamic_tree", action="store_true")
    p.add_argument("--eagle_dynamic_tree_max_top_k", default=None, type=int)
    p.add_argument("--lookahead_config", type=str, default=None)
    # model
    p.add_argument("--engine_dir", type=str, default="engine_outputs")
    p.add_argument("--tokenizer_type")
    p.add_argument("--vocab_file")
    p.add_argument("--no_add_special_tokens", dest="add_special_tokens", default=True, action="store_false")
    p.add_argument("--hf_model_dir", "--model_dir", type=str, default=None)
    p.add_argument("--tokenizer_dir", default=None)
    # memory
    p.add_argument("--gpu_weights_percent", default=1, type=float)
    p.add_argument("--max_tokens_in_paged_kv_cache", default=None, type=int)
    p.add_argument("--kv_cache_enable_block_reuse", default=True, action=argparse.BooleanOptionalAction)
    p.add_argument("--kv_cache_free_gpu_memory_fraction", default=0.9, type=float)
    p.add_argument("--cross_kv_cache_fraction", default=0.5, type=float)
    p.add_argument("--enable_chunked_context", action="store_true")
    p.add_argument("--hf_data_type", "--data_type", type=str,
                   choices=["fp32", "fp16", "bf16", "float32", "float16", "bfloat16"], default="fp16")
    p.add_argument("--hf_device_map_auto", action="store_true")
    p.add_argument("--return_all_generated_tokens", default=False, action="store_true")
    p.add_argument("--language_task_uids", type=int, nargs="+", default=None)
    p.add_argument("--backend", type=str, default=None)
    return p


def _run(args) -> int:
    config_path = Path(args.engine_dir) / "config.json"
    if not config_path.is_file():
        raise StandinError(f"FileNotFoundError: [Errno 2] No such file or directory: '{config_path}'")
    config = json.loads(config_path.read_text())
    mapping = config.get("pretrained_config", {}).get("mapping", {})
    tp, pp, cp = (int(mapping.get(k, 1)) for k in ("tp_size", "pp_size", "cp_size"))
    mpi_size = int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1"))
    if mpi_size != tp * pp * cp:
        raise StandinError(f"RuntimeError: [TensorRT-LLM][ERROR] Assertion failed: MPI size {mpi_size} != TP size "
                           f"{tp} * PP size {pp} * CP Size {cp} (cpp/tensorrt_llm/runtime/worldConfig.cpp)")
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer_dir or args.hf_model_dir)
    except (OSError, ValueError, TypeError) as exc:
        raise StandinError(f"{type(exc).__name__}: {exc}")
    simulate_work(TOOL)
    print("[TensorRT-LLM] TensorRT-LLM version: 1.1.0rc0 (STAND-IN)", flush=True)
    if int(os.environ.get("OMPI_COMM_WORLD_RANK", "0")) != 0:
        return 0
    vocab = max(tokenizer.vocab_size, 1)
    for index, text in enumerate(args.input_text):
        ids = tokenizer.encode(text, add_special_tokens=args.add_special_tokens, truncation=True,
                               max_length=args.max_input_length)
        print(f'Input [Text {index}]: "{tokenizer.decode(ids)}"', flush=True)
        for beam in range(args.num_beams):
            generated = [(sum(ids) + 7 * i + beam) % vocab for i in range(args.max_output_len)]
            print(f'Output [Text {index} Beam {beam}]: "{tokenizer.decode(generated)}"', flush=True)
    log(TOOL, f"engine {args.engine_dir}: {len(args.input_text)} prompt(s), no model ran")
    return 0


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    run_main(TOOL, lambda: _run(args))
