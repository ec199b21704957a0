"""Run a bench script and write its own peak RSS to a file at exit:

    python bench/peak.py PEAK_FILE SCRIPT [ARGS...]

The peak is the process's own high-water mark (Linux `VmHWM`, MiB). `ru_maxrss`, which `os.wait4` gives
the parent, would also count what the parent held: Linux carries it over fork and exec, so a harness that
wrote a 10M-row table would lend every child after it its own peak.
"""

from __future__ import annotations

import atexit
import runpy
import sys
from pathlib import Path


def own_peak_mib() -> float | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def main() -> None:
    peak_file, script = Path(sys.argv[1]), sys.argv[2]
    sys.argv = sys.argv[2:]
    sys.path.insert(0, str(Path(script).resolve().parent))
    atexit.register(lambda: peak_file.write_text(str(own_peak_mib())))
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
