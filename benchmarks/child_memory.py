"""Memory probes for the benchmarks' child processes (each measured in a fresh ``python -c`` process).

``MEMORY_PRELUDE`` is source text, prepended to a child's code: ``rss_mb()`` (resident set now) and
``peak_mb()`` (``VmHWM``, this process image's peak resident set; ``ru_maxrss`` would carry over the forking
parent's peak across exec), both in MiB, Linux ``/proc``.
"""

MEMORY_PRELUDE = """
import os
def rss_mb():
    return int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20
def peak_mb():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) / 1024
    return 0.0
"""
