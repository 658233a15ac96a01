"""Pretrain the course base model; kept so the command recorded in checkpoints/course-llama still runs.

    python scripts/pretrain.py --threads 2       # the same as: python -m minimodels.training pretrain --threads 2

The code lives in minimodels/training/pretrain.py (also runs under torchrun).
"""

import sys

from minimodels.training.pretrain import main

if __name__ == "__main__":
    sys.exit(main())
