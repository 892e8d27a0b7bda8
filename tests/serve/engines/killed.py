"""Stand-in engine killed by a signal while loading: prints a loading line, then sends
itself KILLED_BY (default SIGKILL), as the kernel's OOM killer does to an engine that
asks for more host RAM than there is. A real engine cannot be made to meet the OOM killer
on a shared test machine without risking the machine.
"""

import os
import signal
import sys
import time

print("INFO loading weights from", sys.argv[2] if len(sys.argv) > 2 else "?", flush=True)
time.sleep(0.3)
os.kill(os.getpid(), getattr(signal, os.environ.get("KILLED_BY", "SIGKILL")))
time.sleep(30)
