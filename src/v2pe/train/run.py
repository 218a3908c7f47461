"""`train(config)`: a recipe to a trained, natively saved model.

Launch: one process (`v2pe train --config debug`), or any standard launcher, which sets
WORLD_SIZE / RANK and is picked up by the HF Trainer (accelerate underneath):

    torchrun --nproc_per_node 8 -m v2pe train --config internvl2-2b-32k
    accelerate launch --num_processes 8 -m v2pe train --config internvl2-2b-32k
    deepspeed --num_gpus 8 --module v2pe train --config internvl2-2b-32k

DDP runs on NCCL with GPUs and gloo on CPU; `parallel.zero_stage` 1-3 hands the model to
DeepSpeed with the official ZeRO configs.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from v2pe.train.config import RuntimeEnv, TrainConfig

logger = logging.getLogger(__name__)

FINAL_MODEL = "final"


@dataclass
class TrainResult:
    output_dir: Path
    global_step: int
    final_model: Path | None
    resumed_from: Path | None
    metrics: dict = field(default_factory=dict)
    log_history: list = field(default_factory=list)


def training_arguments(config: TrainConfig, env: RuntimeEnv):
    """`transformers.TrainingArguments` for a recipe."""
    from transformers import TrainingArguments

    from v2pe.train.deepspeed_config import deepspeed_config

    train, parallel = config.train, config.parallel
    bf16 = train.precision == "bf16" or (train.precision == "auto" and env.cuda_bf16)
    report_to: list[str] = []
    if train.report_to == "tensorboard" or (train.report_to == "auto" and env.tensorboard):
        report_to = ["tensorboard"]
        os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(Path(train.output_dir) / "tensorboard"))
    return TrainingArguments(
        output_dir=train.output_dir,
        max_steps=train.max_steps,
        per_device_train_batch_size=train.per_device_batch_size,
        gradient_accumulation_steps=train.gradient_accumulation_steps,
        learning_rate=train.learning_rate,
        weight_decay=train.weight_decay,
        adam_beta1=train.adam_beta1,
        adam_beta2=train.adam_beta2,
        adam_epsilon=train.adam_epsilon,
        lr_scheduler_type=train.lr_scheduler,
        warmup_steps=train.warmup_ratio,  # a value below 1 is a ratio of max_steps
        max_grad_norm=train.max_grad_norm,
        optim="adamw_torch_fused" if env.cuda else "adamw_torch",
        bf16=bf16,
        fp16=train.precision == "fp16",
        seed=train.seed,
        data_seed=train.seed,
        save_strategy="steps",
        save_steps=train.save_steps,
        save_total_limit=train.save_total_limit,
        logging_strategy="steps",
        logging_steps=train.logging_steps,
        report_to=report_to,
        remove_unused_columns=False,
        dataloader_num_workers=config.data.num_workers,
        dataloader_drop_last=True,
        ddp_backend="gloo" if not env.cuda and env.world_size > 1 else None,
        ddp_find_unused_parameters=parallel.ddp_find_unused_parameters,
        use_cpu=not env.cuda,
        deepspeed=deepspeed_config(parallel.zero_stage, parallel.deepspeed_config, on_cpu=not env.cuda),
        disable_tqdm=True,
    )


def resolve_resume(config: TrainConfig) -> Path | None:
    from v2pe.train.checkpoint import last_checkpoint

    resume = config.train.resume
    if resume == "never":
        return None
    if resume == "auto":
        return last_checkpoint(config.train.output_dir)
    return Path(resume)


def train(config: TrainConfig, env: RuntimeEnv | None = None, callbacks: list | None = None) -> TrainResult:
    """Train a validated recipe; returns where things went and the log history."""
    import torch
    from transformers import set_seed
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from v2pe.train import checkpoint as atomic
    from v2pe.train.callbacks import JsonlLogger, ProgressBar
    from v2pe.train.data import TrainCollator, build_dataset
    from v2pe.train.model_setup import build_model, build_processor, parameter_counts
    from v2pe.train.trainer import V2PETrainer

    env = env or RuntimeEnv.detect()
    config.validate(env)
    if env.deepspeed and not env.cuda and not config.parallel.deepspeed_cpu_shm_comm:
        from v2pe.train.deepspeed_config import skip_cpu_shm_comm_build

        skip_cpu_shm_comm_build()
    set_seed(config.train.seed)
    _forget_previous_deepspeed_config()
    # The model is built before TrainingArguments so that every rank (and a one-process
    # reference run) initialises the same weights; DeepSpeed partitions it afterwards.
    model = build_model(config)
    args = training_arguments(config, env)
    _ = args.device  # initialises the process group under a launcher
    output_dir = Path(config.train.output_dir)
    if args.should_save:
        output_dir.mkdir(parents=True, exist_ok=True)
        atomic.clean_staging(output_dir)
        (output_dir / "recipe.yaml").write_text(config.to_yaml())
    sequence_parallel = None
    if config.parallel.sequence_parallel_size > 1:
        from v2pe.train.sequence_parallel import apply_sequence_parallel, new_sequence_groups

        sequence_parallel = new_sequence_groups(config.parallel.sequence_parallel_size, config.parallel.sequence_parallel_backend)
        apply_sequence_parallel(model, sequence_parallel)
    processor = build_processor(config, model)
    dataset = build_dataset(config, processor, args)
    collator = TrainCollator(processor.pad_token_id, config.data.loss_reduction, packed=config.data.packing)
    resume = resolve_resume(config)
    trainer = V2PETrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=collator,
        tokenizer=processor.tokenizer,
        v2pe_config=config,
        sequence_parallel=sequence_parallel,
        pad_token_id=processor.pad_token_id,
    )
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    if config.train.progress_bar:
        trainer.add_callback(ProgressBar())
    if config.train.report_to != "none":
        resume_step = _checkpoint_step(resume) if resume is not None else None
        trainer.add_callback(JsonlLogger(output_dir, resume_step))
    for callback in callbacks or ():
        trainer.add_callback(callback)
    if trainer.is_world_process_zero():
        counts = parameter_counts(model)
        logger.info("v2pe train: %s, %d parameters (%d trainable), %d training rows", config.name, counts["total"], counts["trainable"], len(dataset))
    output = trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    final = None
    if config.train.save_final_model:
        if sequence_parallel is not None:
            from v2pe.train.sequence_parallel import remove_sequence_parallel

            remove_sequence_parallel(trainer.accelerator.unwrap_model(trainer.model), sequence_parallel)
        final = trainer.save_final_model(output_dir / FINAL_MODEL)
    torch.set_grad_enabled(True)
    return TrainResult(
        output_dir=output_dir,
        global_step=trainer.state.global_step,
        final_model=final,
        resumed_from=resume,
        metrics=dict(output.metrics),
        log_history=list(trainer.state.log_history),
    )


def _forget_previous_deepspeed_config() -> None:
    """A ZeRO-3 TrainingArguments of an earlier run in this process would make transformers build
    the next model under deepspeed.zero.Init; each run starts from a clean slate."""
    try:
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config
    except ImportError:  # pragma: no cover
        return
    unset_hf_deepspeed_config()


def _checkpoint_step(folder: Path) -> int:
    import json

    state = folder / "trainer_state.json"
    if state.is_file():
        return int(json.loads(state.read_text()).get("global_step", 0))
    return int(folder.name.rsplit("-", 1)[-1]) if folder.name.rsplit("-", 1)[-1].isdigit() else 0
