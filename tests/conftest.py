"""Suite-wide settings: one thread per test process.

pytest-xdist runs one worker per core; torch's own thread pool on top of that would
oversubscribe the cores (tiny models then run many times slower while threads spin).
The environment variable reaches the CLI subprocesses the tests start.
"""
import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
