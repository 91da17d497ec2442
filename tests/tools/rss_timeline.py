"""Where a run's resident memory peaks: runs a command and prefixes each line it writes to stderr with the
seconds since start, the command's resident memory then and its peak so far (Linux /proc). Dev-only:

    python tests/tools/rss_timeline.py python ade_distill.py --out_dir=runs/x > runs/x.rss.log 2>&1

Progress lines rewritten with a carriage return arrive when the line ends; the memory is read when it does.
"""
import subprocess
import sys
import threading
import time


def read_rss(pid, last):
    """Update `last` = [resident, peak resident] in MB from /proc/PID/status (an exited process has none)."""
    fields = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    fields[key] = int(value.split()[0]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return
    if "VmHWM" in fields:
        last[:] = fields["VmRSS"], max(last[1], fields["VmHWM"])


def main(argv):
    t0 = time.time()
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, bufsize=1)
    last = [0.0, 0.0]

    def sample():  # the peak between lines, for the summary
        while proc.poll() is None:
            read_rss(proc.pid, last)
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()
    for line in proc.stderr:
        read_rss(proc.pid, last)
        print(f"[{time.time() - t0:7.1f} s | RSS {last[0]:6.0f} MB | peak {last[1]:6.0f} MB] {line}", end="",
              file=sys.stderr, flush=True)
    proc.wait()
    print(f"[{time.time() - t0:7.1f} s] exit {proc.returncode}; peak RSS {last[1]:.0f} MB "
          "(at the last reading)", file=sys.stderr)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
