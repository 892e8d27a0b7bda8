"""Stand-in engine for a crash while loading: prints what a CUDA OOM looks like, exits 1.

A real engine cannot be made to run out of GPU memory on a machine without a GPU.
"""

import sys
import time

print("INFO loading weights from", sys.argv[2] if len(sys.argv) > 2 else "?", flush=True)
time.sleep(0.3)
print("Traceback (most recent call last):", flush=True)
print(
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a "
    "total capacity of 23.64 GiB of which 1.02 GiB is free.",
    file=sys.stderr,
    flush=True,
)
sys.exit(1)
