import atexit
import os
import sys

from avdd.cli import main
from avdd.distributed import launched

status = main()
if launched():
    # a process of a torchrun job ends without the interpreter's teardown, where gloo objects that
    # outlive destroy_process_group can abort it ("terminate called without an active exception",
    # SIGABRT) after its work is done and written: 1 in 65 test runs here. Python's exit
    # handlers still run; only the teardown is skipped.
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    os._exit(status)
sys.exit(status)
