"""Memory readings of a process from Linux's ``/proc`` (standard library only, cheap to import).

Every figure is in bytes: ``/proc`` reports kB (KiB), which are multiplied by 1024 here and
nowhere else. ``pid`` is a process id or ``"self"``. Used by ``check``'s worker process and by the
benchmarks (``benchmarks/harness.py``); importing this module loads nothing else, so a child
process that reads its own memory after its imports measures its imports, not this module's.
"""

from __future__ import annotations

#: The keys of ``/proc/PID/status`` that :func:`memory_status` reads.
STATUS_KEYS = ("VmHWM", "RssAnon", "RssFile")
#: The keys of ``/proc/PID/smaps_rollup`` that :func:`proportional_set_size` reads.
PSS_KEYS = ("Pss", "Pss_Anon", "Pss_File")


def proc_bytes(path: str, keys: tuple[str, ...]) -> dict[str, int]:
    """Reads the ``key: N kB`` lines named by ``keys`` from a /proc file, in bytes."""
    out = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in keys:
                out[key] = int(value.split()[0]) * 1024
    return out


def memory_status(pid: int | str = "self", keys: tuple[str, ...] = STATUS_KEYS) -> dict[str, int]:
    """Returns peak, private and file-backed resident bytes of a process, in bytes.

    Keys ``VmHWM`` (peak RSS), ``RssAnon`` and ``RssFile`` (now), from ``/proc/PID/status``, or
    the ``keys`` given.
    """
    return proc_bytes(f"/proc/{pid}/status", keys)


def peak_rss(pid: int | str = "self") -> int:
    """Returns a process's peak resident set size (VmHWM) in bytes."""
    return memory_status(pid, ("VmHWM",))["VmHWM"]


def proportional_set_size(pid: int | str = "self") -> dict[str, int]:
    """Returns a process's PSS (``Pss``, ``Pss_Anon``, ``Pss_File``) in bytes.

    Shared pages count divided by the number of processes mapping them, so the PSS of every
    process serving a model adds up to what they cost together.
    """
    return proc_bytes(f"/proc/{pid}/smaps_rollup", PSS_KEYS)
