"""V2PE fine-tuning: recipes, the HF-Trainer loop, DDP / DeepSpeed ZeRO, sequence parallelism.

    from v2pe.train import load_recipe, train
    result = train(load_recipe("debug", {"train.max_steps": 10}))

Heavy modules (transformers' Trainer, DeepSpeed) load only when `train` runs.
"""

from v2pe.train.config import RuntimeEnv, TrainConfig, list_recipes, load_recipe


def train(config: TrainConfig, env: RuntimeEnv | None = None, callbacks: list | None = None, resume_weights_only: bool = False):
    """Train a recipe (see `v2pe.train.run.train`)."""
    from v2pe.train.run import train as _train

    return _train(config, env=env, callbacks=callbacks, resume_weights_only=resume_weights_only)


__all__ = ["RuntimeEnv", "TrainConfig", "list_recipes", "load_recipe", "train"]
