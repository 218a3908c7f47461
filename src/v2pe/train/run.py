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
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from v2pe.errors import CheckpointError, ConfigError
from v2pe.train import checkpoint as atomic
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
    already_finished: bool = False  # the output folder held a finished run: nothing was trained


@dataclass
class Resume:
    """The checkpoint a run continues from, and what the log should say about the choice."""

    folder: Path
    step: int
    weights_only: bool = False
    notes: list[str] = field(default_factory=list)


def training_arguments(config: TrainConfig, env: RuntimeEnv):
    """`transformers.TrainingArguments` for a recipe."""
    from transformers import TrainingArguments

    from v2pe.train.deepspeed_config import deepspeed_config

    train, parallel = config.train, config.parallel
    bf16 = train.precision == "bf16" or (train.precision == "auto" and env.cuda_bf16)
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
        report_to=[],  # TensorBoard is v2pe's own callback (callbacks.TensorBoardLogger)
        remove_unused_columns=False,
        dataloader_num_workers=config.data.num_workers,
        dataloader_drop_last=True,
        ddp_backend="gloo" if not env.cuda and env.world_size > 1 else None,
        ddp_find_unused_parameters=parallel.ddp_find_unused_parameters,
        use_cpu=not env.cuda,
        deepspeed=deepspeed_config(parallel.zero_stage, parallel.deepspeed_config, on_cpu=not env.cuda),
        disable_tqdm=True,
    )


def uses_tensorboard(config: TrainConfig, env: RuntimeEnv) -> bool:
    return config.train.report_to == "tensorboard" or (config.train.report_to == "auto" and env.tensorboard)


def resolve_resume(config: TrainConfig, weights_only: bool = False) -> Resume | None:
    """The checkpoint to continue from: the `train.resume` folder, or (auto) the newest whole
    checkpoint in the output folder, skipping damaged ones with a warning."""
    resume = config.train.resume
    if resume == "never":
        return None
    notes: list[str] = []
    if resume == "auto":
        folder = _newest_whole_checkpoint(Path(config.train.output_dir), weights_only, notes)
        if folder is None:
            return None
    else:
        folder = Path(resume)
        problem = _damage(folder, weights_only)
        if problem:
            raise CheckpointError(f"train.resume = {resume}: cannot resume from it, {problem}")
    step = atomic.checkpoint_step(folder)
    if step < config.train.max_steps:  # a finished run is left alone, whatever its optimizer state
        _check_optimizer_state(folder, weights_only, notes)
    return Resume(folder, step, weights_only, notes)


def _damage(folder: Path, weights_only: bool) -> str | None:
    # A missing optimizer state is not damage but a choice to make (_check_optimizer_state).
    need_optimizer = not weights_only and atomic.missing_optimizer_state(folder) is None
    return atomic.checkpoint_damage(folder, need_optimizer=need_optimizer)


def _newest_whole_checkpoint(output_dir: Path, weights_only: bool, notes: list[str]) -> Path | None:
    damaged = []
    for folder in atomic.checkpoints(output_dir):
        problem = _damage(folder, weights_only)
        if problem is None:
            for reason in damaged:
                _note(notes, f"{reason}: skipped that damaged checkpoint; resuming from {folder.name}, the newest whole one")
            return folder
        damaged.append(problem)
    if damaged:
        more = f" (and {len(damaged) - 1} older damaged checkpoints)" if len(damaged) > 1 else ""
        raise CheckpointError(
            f"{damaged[0]}{more}: no whole checkpoint in {output_dir} to resume from; "
            "delete the damaged checkpoint-N folders or set train.resume never to train from scratch"
        )
    return None


def _check_optimizer_state(folder: Path, weights_only: bool, notes: list[str]) -> None:
    """A checkpoint without its optimizer state resumes only on purpose (the HF Trainer would
    silently start a fresh optimizer)."""
    missing = atomic.missing_optimizer_state(folder)
    if weights_only:
        why = f"{missing} is missing" if missing is not None else "as asked"
        _note(notes, f"resuming {folder} with its weights only ({why}): a fresh optimizer, the LR schedule continues at step {atomic.checkpoint_step(folder)}")
    elif missing is not None:
        raise CheckpointError(
            f"{missing}: missing, so resuming from {folder.name} would restart the optimizer from scratch; "
            "to continue from its weights with a fresh optimizer on purpose, rerun with --resume-weights-only, "
            "or resume from an older complete checkpoint with --train.resume PATH"
        )


def _note(notes: list[str], message: str) -> None:
    """A resume decision: on stderr (main process) and, later, in the run's JSONL log."""
    notes.append(message)
    if _is_main_process():
        warnings.warn(message, stacklevel=3)


def _is_main_process() -> bool:
    # Read before TrainingArguments exist; launchers set RANK (0 on the process that saves).
    return int(os.environ.get("RANK", "0")) == 0


def _finished_run(config: TrainConfig, resume: Resume | None) -> TrainResult | None:
    """The result of a run that already reached train.max_steps, or None if there is work left.

    Left to the HF Trainer, a finished run would train one step past max_steps and rewrite
    final/; here nothing is trained. A final model lost to a crash while it was written is
    restored from the last checkpoint (same weights).
    """
    output_dir = Path(config.train.output_dir)
    final = output_dir / FINAL_MODEL
    if resume is None:
        if config.train.resume == "auto" and final.is_dir():
            raise ConfigError(
                f"{final}: {output_dir} holds a final model but no checkpoint to resume from, and training would replace it; "
                "choose a new train.output_dir, or set train.resume never to train from scratch over it"
            )
        return None
    if resume.step < config.train.max_steps:
        return None
    if config.train.save_final_model and not final.is_dir() and _is_main_process():
        with output_errors(final, "write the final model"):
            atomic.export_final(resume.folder, final)
    return TrainResult(output_dir, resume.step, final if final.is_dir() else None, resume.folder, already_finished=True)


@contextmanager
def output_errors(path: Path, action: str):
    """An OSError (read-only folder, full disk) as one line naming the path and what failed."""
    try:
        yield
    except OSError as error:
        raise ConfigError(f"{path}: cannot {action} ({atomic.describe_os_error(error)}); choose a writable train.output_dir or free space") from error


def prepare_output_dir(config: TrainConfig) -> Path:
    """Create the output folder and write the resolved recipe there; an unwritable folder is
    one clear error before any model is built."""
    output_dir = Path(config.train.output_dir)
    with output_errors(output_dir, "create or write the output folder train.output_dir"):
        output_dir.mkdir(parents=True, exist_ok=True)
        if _is_main_process():
            atomic.clean_staging(output_dir)
            (output_dir / "recipe.yaml").write_text(config.to_yaml())
    return output_dir


def train(
    config: TrainConfig, env: RuntimeEnv | None = None, callbacks: list | None = None, resume_weights_only: bool = False
) -> TrainResult:
    """Train a validated recipe; returns where things went and the log history.

    resume_weights_only: resume the checkpoint's weights, trainer state and data position with
        a fresh optimizer (for a checkpoint whose optimizer state is missing); recorded in the log.
    """
    import torch
    from transformers import set_seed
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from v2pe.train.callbacks import JsonlLogger, ProgressBar, TensorBoardLogger
    from v2pe.train.data import TrainCollator, build_dataset
    from v2pe.train.model_setup import build_model, build_processor, parameter_counts
    from v2pe.train.trainer import V2PETrainer

    env = env or RuntimeEnv.detect()
    config.validate(env)
    if resume_weights_only and (config.parallel.zero_stage > 0 or config.parallel.deepspeed_config is not None):
        raise ConfigError("--resume-weights-only is not supported with DeepSpeed (DeepSpeed always loads its optimizer state): set parallel.zero_stage 0")
    resume = resolve_resume(config, resume_weights_only)
    finished = _finished_run(config, resume)
    if finished is not None:
        return finished
    output_dir = prepare_output_dir(config)
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
    sequence_parallel = None
    if config.parallel.sequence_parallel_size > 1:
        from v2pe.train.sequence_parallel import apply_sequence_parallel, new_sequence_groups

        sequence_parallel = new_sequence_groups(config.parallel.sequence_parallel_size, config.parallel.sequence_parallel_backend)
        apply_sequence_parallel(model, sequence_parallel)
    processor = build_processor(config, model)
    dataset = build_dataset(config, processor, args)
    collator = TrainCollator(processor.pad_token_id, config.data.loss_reduction)
    trainer = V2PETrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=collator,
        tokenizer=processor.tokenizer,
        v2pe_config=config,
        sequence_parallel=sequence_parallel,
        pad_token_id=processor.pad_token_id,
        resume_weights_only=resume is not None and resume.weights_only,
    )
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    if config.train.progress_bar:
        trainer.add_callback(ProgressBar())
    resume_step = resume.step if resume is not None else None
    if config.train.report_to != "none":
        trainer.add_callback(JsonlLogger(output_dir, resume_step, notes=resume.notes if resume is not None else ()))
    if uses_tensorboard(config, env):
        trainer.add_callback(TensorBoardLogger(output_dir / "tensorboard", resume_step))
    for callback in callbacks or ():
        trainer.add_callback(callback)
    if trainer.is_world_process_zero():
        counts = parameter_counts(model)
        logger.info("v2pe train: %s, %d parameters (%d trainable), %d training rows", config.name, counts["total"], counts["trainable"], len(dataset))
    output = trainer.train(resume_from_checkpoint=str(resume.folder) if resume is not None else None)
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
        resumed_from=resume.folder if resume is not None else None,
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
