"""Where a run's resident memory peaks: runs a command and prefixes each line it writes to stderr with the
seconds since start, the command's resident memory then and its peak so far (Linux /proc). Dev-only:

    python tests/rss_timeline.py python ade_distill.py --out_dir=runs/x > runs/x.rss.log 2>&1

Progress lines rewritten with a carriage return arrive when the line ends; the memory is read when it does.
"""
import subprocess
import sys
import threading
import time


def rss_mb(pid):
    """(resident, peak resident) in MB of a live process, from /proc/PID/status."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def main(argv):
    t0 = time.time()
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, bufsize=1)
    last = [0.0, 0.0]

    def sample():  # the peak between lines, for the summary
        while proc.poll() is None:
            try:
                last[:] = rss_mb(proc.pid)
            except (FileNotFoundError, ProcessLookupError):
                return
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()
    for line in proc.stderr:
        try:
            last[:] = rss_mb(proc.pid)
        except (FileNotFoundError, ProcessLookupError):
            pass
        print(f"[{time.time() - t0:7.1f} s | RSS {last[0]:6.0f} MB | peak {last[1]:6.0f} MB] {line}", end="",
              file=sys.stderr, flush=True)
    proc.wait()
    print(f"[{time.time() - t0:7.1f} s] exit {proc.returncode}; peak RSS {last[1]:.0f} MB (last reading)",
          file=sys.stderr)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
