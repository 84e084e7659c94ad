"""STAND-IN for ``nemo_skills.training.train_redrafter`` (tests only; no model, no GPU).

Parses the command line like the real script (transformers.HfArgumentParser over
ModelArguments + NeMo-Skills' TrainingArguments subclass, transformers 4.57), checks
the base model dir and the local dataset split, prints Trainer-style log lines,
writes checkpoint-N dirs when --save_strategy steps/epoch, resumes from them, and
saves the drafter (config.json + model.safetensors) to
``{output_dir}_redrafter_{basename(llm)}_n_{n}_lr_{lr}_layers_{L}``.
Knobs: STANDIN_REDRAFTER_TOP1, STANDIN_FAIL, STANDIN_SLEEP_S (see README.md).
"""

from standin_tools.redrafter_train import main

if __name__ == "__main__":
    main()
