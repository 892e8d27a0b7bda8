"""Stand-in engine that never opens its port: it starts a worker process (same process
group, like vLLM's workers) and then waits forever, printing nothing more.

A real engine cannot be made to hang on purpose; this one shows that a deadline fires,
that stop works while loading, and that the whole group (the worker too) goes away.
"""

import os
import subprocess
import sys
import time

worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
print(f"hang engine pid {os.getpid()} worker {worker.pid}", flush=True)
if os.environ.get("HANG_PROGRESS"):
    while True:
        print("Loading safetensors checkpoint shards: still going", flush=True)
        time.sleep(0.2)
time.sleep(3600)
