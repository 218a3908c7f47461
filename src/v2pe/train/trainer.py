"""`V2PETrainer`: the HF Trainer with the official V2PE loss, float32 positions, sequence
parallelism, atomic checkpoints and native checkpoints.

What it changes in `transformers.Trainer`:

* `compute_loss`: the weighted loss of `v2pe.train.loss` on pre-shifted targets; with sequence
  parallelism the row is padded and sharded first (`v2pe.train.sequence_parallel`);
* `_prepare_inputs`: DeepSpeed would cast every floating input to its dtype (bf16 turns a delta
  of 0.1 into 0.10009765625, and position 1000.25 into 1000.0): the per-image deltas, explicit
  positions and loss weights stay float32;
* `_save_checkpoint`: written to a staging folder, fsynced and renamed (`v2pe.train.checkpoint`);
  a write that fails (full disk, read-only folder) removes the staged copy and is one clear
  `CheckpointError`; the log is always written at a save step, so a checkpoint's log history
  covers every step before it;
* `_load_optimizer_and_scheduler`: with `resume_weights_only`, a fresh optimizer and the LR
  schedule fast-forwarded to the checkpoint's step;
* `_save`: `save_pretrained` of the V2PE model, so every checkpoint is a native HF checkpoint;
* `get_train_dataloader`: with sequence parallelism, the ranks of a group read the same batches
  (data-parallel rank = rank // group size);
* `log`: adds tokens/s (real tokens of the whole job, each counted once), skipped samples; after
  a resume, the summary `train_loss` covers the whole run, not only the steps since the resume.
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed as dist
from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from v2pe.errors import CheckpointError
from v2pe.train import checkpoint as atomic
from v2pe.train import sequence_parallel as spmod
from v2pe.train.loss import weighted_cross_entropy

FLOAT32_KEYS = ("delta", "position_ids", "shift_weights")


class V2PETrainer(Trainer):
    def __init__(
        self, *args, v2pe_config=None, sequence_parallel=None, pad_token_id: int = 0, tokenizer=None, resume_weights_only: bool = False, **kwargs
    ):
        # The tokenizer is saved with every checkpoint, but not given to the Trainer as
        # processing_class: that would rewrite the model's EOS / PAD ids to the tokenizer's.
        super().__init__(*args, **kwargs)
        self.tokenizer = tokenizer
        self.v2pe_config = v2pe_config
        self.sequence_parallel = sequence_parallel
        self.pad_token_id = pad_token_id
        self.resume_weights_only = resume_weights_only
        self.model_accepts_loss_kwargs = False  # the loss is ours: the Trainer averages it over accumulation steps
        self._staging = False
        self._tokens = 0.0
        self._skipped: dict[str, int] = {}
        self._last_log_time: float | None = None

    # ---- inputs and loss ----------------------------------------------------------------

    def _prepare_inputs(self, inputs):
        skipped = inputs.pop("skipped", None) or {}
        for reason, count in skipped.items():
            self._skipped[reason] = self._skipped.get(reason, 0) + int(count)
        keep = {key: inputs.pop(key) for key in FLOAT32_KEYS if key in inputs}
        inputs = super()._prepare_inputs(inputs)
        for key, value in keep.items():
            inputs[key] = value.to(device=self.args.device, dtype=torch.float32)
        return inputs

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        data = self.v2pe_config.data
        sp = self.sequence_parallel
        if sp is not None and sp.size > 1:
            if "sequence_ids" not in inputs:
                inputs["sequence_ids"] = torch.zeros_like(inputs["input_ids"])
            inputs = spmod.prepare_batch(sp, inputs, self.pad_token_id, self.accelerator.unwrap_model(model))
            self._tokens += float(inputs["attention_mask"].sum()) / sp.size
            labels, weights = inputs.pop("shift_labels"), inputs.pop("shift_weights")
            inputs.pop("sequence_ids")  # the language-model hook builds the attention layout
            try:
                outputs = model(**inputs)
            finally:
                spmod.finish_batch(sp)
            group, size = sp.group, sp.size
        else:
            self._tokens += float(inputs["attention_mask"].sum())
            labels, weights = inputs.pop("shift_labels"), inputs.pop("shift_weights")
            outputs = model(**inputs)
            group, size = None, 1
        loss = weighted_cross_entropy(
            outputs.logits,
            labels,
            weights,
            all_gather=data.loss_reduction_all_gather,
            sequence_group=group,
            sequence_parallel_size=size,
        )
        return (loss, outputs) if return_outputs else loss

    # ---- data ---------------------------------------------------------------------------

    def get_train_dataloader(self):
        sp = self.sequence_parallel
        if sp is None or sp.size == 1:
            return super().get_train_dataloader()
        from torch.utils.data import DistributedSampler

        sampler = DistributedSampler(
            self.train_dataset, num_replicas=sp.data_parallel_size, rank=sp.data_parallel_rank, shuffle=True, seed=self.args.seed
        )
        loader = _EpochDataLoader(
            self.train_dataset,
            batch_size=self.args.per_device_train_batch_size,
            sampler=sampler,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            drop_last=True,
        )
        return loader

    # ---- checkpoints --------------------------------------------------------------------

    def _get_output_dir(self, trial):
        run_dir = super()._get_output_dir(trial)
        return os.path.join(run_dir, atomic.STAGING) if self._staging else run_dir

    def _save_checkpoint(self, model, trial):
        run_dir = Path(super()._get_output_dir(trial))
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staged = run_dir / atomic.STAGING / name
        with self._no_half_save(staged, run_dir / name):
            self._staging = True
            try:
                super()._save_checkpoint(model, trial)
            finally:
                self._staging = False
            self._barrier()
            if self.args.should_save:
                atomic.commit(staged, run_dir / name)
        if self.args.should_save and self.args.save_total_limit is not None:
            from transformers.trainer_utils import rotate_checkpoints

            rotate_checkpoints(output_dir=str(run_dir), save_total_limit=self.args.save_total_limit, use_mtime=False)
        self._barrier()

    @contextmanager
    def _no_half_save(self, staged: Path, final: Path):
        """A save that fails for want of storage: the staged copy is removed and the error says
        so, with the checkpoint to resume from."""
        try:
            yield
        except Exception as error:  # noqa: BLE001 - torch.save and safetensors raise RuntimeError / SafetensorError on a full disk
            reason = atomic.storage_failure(error, final.parent)
            if reason is None:
                raise
            if self.args.should_save:
                shutil.rmtree(staged, ignore_errors=True)
                try:
                    staged.parent.rmdir()  # the staging root, when nothing else is staged there
                except OSError:
                    pass
            last = atomic.last_checkpoint(final.parent)
            if last is None:
                retry = "no checkpoint was saved yet"
            elif not final.name.startswith(PREFIX_CHECKPOINT_DIR):  # the final model, after the last checkpoint
                retry = f"free space (or fix the folder) and rerun the same command: it writes the final model from {last.name} without training"
            else:
                retry = f"{last.name} is the last complete checkpoint: free space (or fix the folder) and rerun the same command to resume from it"
            raise CheckpointError(f"{final}: cannot write it ({reason}); the partial copy was removed, nothing half-written is left; {retry}") from error

    def _load_optimizer_and_scheduler(self, checkpoint):
        if checkpoint is None or not self.resume_weights_only:
            return super()._load_optimizer_and_scheduler(checkpoint)
        # Weights only: the optimizer stays fresh; the LR schedule is advanced to where the
        # checkpoint left it (every schedule the Trainer builds is a function of the step).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "lr_scheduler.step() before optimizer.step()"
            for _ in range(self.state.global_step):
                self.lr_scheduler.step()

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        """Weights of a checkpoint folder, with transformers' on-disk key names mapped back.

        `save_pretrained` writes the native *on-disk* layout (for InternVL, e.g.
        `model.language_model.model.layers.*`); the stock Trainer loads that file with a
        non-strict `load_state_dict`, which for such models silently restores nothing but a
        warning. Here the names go through the model's own conversion mapping and the load is
        strict. (DeepSpeed restores its own module states and does not come here.)
        """
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        model = self.accelerator.unwrap_model(model if model is not None else self.model)
        state_dict = load_native_state_dict(Path(resume_from_checkpoint), model)
        model.load_state_dict(state_dict, strict=True)

    def _barrier(self) -> None:
        if dist.is_available() and dist.is_initialized():
            dist.barrier()

    def _save(self, output_dir=None, state_dict=None):
        if not self.args.should_save:  # the state dict is already gathered (ZeRO-3) by save_model
            return
        output_dir = output_dir or self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        model = self.accelerator.unwrap_model(self.model)
        if state_dict is None:
            state_dict = model.state_dict()
        model.save_pretrained(output_dir, state_dict=state_dict)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(output_dir)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def save_final_model(self, folder: str | os.PathLike) -> Path:
        """The trained model as a native HF checkpoint in `folder`, written atomically."""
        folder = Path(folder)
        staged = folder.parent / atomic.STAGING / folder.name
        with self._no_half_save(staged, folder):
            self.save_model(str(staged))
            self._barrier()
            if self.args.should_save:
                atomic.commit(staged, folder)
        self._barrier()
        return folder

    # ---- logging ------------------------------------------------------------------------

    def _maybe_log_save_evaluate(self, *args, **kwargs):
        if self.control.should_save:
            # Log the steps since the last log first: the checkpoint's log history then holds the
            # loss of every step before it, which a resumed run sums into its `train_loss`.
            self.control.should_log = True
        return super()._maybe_log_save_evaluate(*args, **kwargs)

    def log(self, logs, start_time=None):
        resumed_at = getattr(self, "_initial_global_step", 0)
        if "train_loss" in logs and resumed_at > 0:
            new_steps = self.state.global_step - resumed_at
            logs["train_loss"] = whole_run_loss(self.state.log_history, resumed_at, logs["train_loss"], new_steps)
        if "loss" in logs:
            now = time.perf_counter()
            tokens = torch.tensor([self._tokens], dtype=torch.float64, device=self.args.device)
            if dist.is_available() and dist.is_initialized():
                dist.all_reduce(tokens)
            elapsed = now - self._last_log_time if self._last_log_time is not None else None
            if elapsed:
                logs["tokens_per_s"] = float(tokens.item()) / elapsed
            logs["tokens"] = float(tokens.item())
            self._tokens = 0.0
            self._last_log_time = now
            if self._skipped:
                logs["skipped_samples"] = sum(self._skipped.values())
        super().log(logs, start_time)

    def _inner_training_loop(self, *args, **kwargs):
        self._last_log_time = time.perf_counter()
        return super()._inner_training_loop(*args, **kwargs)


class _EpochDataLoader(torch.utils.data.DataLoader):
    """A DataLoader whose DistributedSampler reshuffles per epoch (the Trainer calls set_epoch)."""

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)


def whole_run_loss(log_history: list[dict], resumed_at: int, new_mean: float, new_steps: int) -> float:
    """The mean loss of a whole run resumed at step `resumed_at`: the per-step losses logged
    before the resume (each log record averages the steps since the previous one) together with
    the `new_mean` of the `new_steps` trained since."""
    total, last = 0.0, 0
    for record in log_history:
        if "loss" in record and last < record["step"] <= resumed_at:
            total += record["loss"] * (record["step"] - last)
            last = record["step"]
    steps = last + new_steps
    return (total + new_mean * new_steps) / steps if steps else new_mean


def load_native_state_dict(folder: Path, model) -> dict[str, torch.Tensor]:
    """The weights of a `save_pretrained` folder, keyed as `model.state_dict()` is."""
    from safetensors.torch import load_file

    from v2pe.model.compat import key_renamer

    files = sorted(folder.glob("model*.safetensors"))
    if not files:
        raise CheckpointError(f"{folder}: no model*.safetensors to resume from")
    rename = key_renamer(model)
    expected = model.state_dict()
    state_dict = {}
    for file in files:
        for key, tensor in load_file(str(file), device="cpu").items():
            name, needs_conversion = rename(key)
            if needs_conversion:
                raise CheckpointError(f"{file}: weight {key} needs a tensor conversion on load; resume is only supported for renamed layouts")
            state_dict[name] = tensor
    missing, unexpected = sorted(set(expected) - set(state_dict)), sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{folder}: checkpoint does not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return state_dict
