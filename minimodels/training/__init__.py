"""Training: the loop, batches, checkpoints and toy tasks."""

from minimodels.training.checkpoint import load_checkpoint, save_checkpoint
from minimodels.training.data import BatchSampler, CharDataset, train_val_split
from minimodels.training.loop import History, TrainConfig, estimate_loss, train

__all__ = ["BatchSampler", "CharDataset", "History", "TrainConfig", "estimate_loss", "load_checkpoint",
           "save_checkpoint", "train", "train_val_split"]
