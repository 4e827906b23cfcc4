"""What the harness watches from outside the worker: consumer lag, memory and CPU of each process
(and of each thread of the broker), the size of the state on disk, and the machine itself."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    import psutil
except ImportError:  # optional: /proc is read instead
    psutil = None


# -- processes -------------------------------------------------------------------------------
def _proc_status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError):
        pass
    return out


def rss_bytes(pid: int | None) -> int | None:
    if pid is None:
        return None
    return _proc_status(pid).get("VmRSS")


def peak_rss_bytes(pid: int | None) -> int | None:
    """The kernel's high-water mark of the process's resident set (VmHWM)."""
    if pid is None:
        return None
    return _proc_status(pid).get("VmHWM")


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process (all its threads), or None if it is gone."""
    if pid is None:
        return None
    if psutil is not None:
        try:
            t = psutil.Process(pid).cpu_times()
            return t.user + t.system
        except psutil.Error:
            return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def thread_ticks(pid: int) -> dict[int, tuple[str, int]]:
    """Each thread of a process: its name (``comm``: the kernel keeps 15 characters) and the CPU
    it has used (user + system, clock ticks). A thread that ends while being read is left out."""
    out: dict[int, tuple[str, int]] = {}
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            comm = (task / "comm").read_text().rstrip("\n")
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            out[int(task.name)] = (comm, int(fields[11]) + int(fields[12]))
        except (OSError, ValueError, IndexError):
            continue
    return out


def jvm_thread_dump(pid: int) -> str:
    """``jcmd PID Thread.print`` of a Java process: its threads' full names with their native
    ids; empty where the JDK's jcmd is missing (a JRE) or the dump fails."""
    jcmd = shutil.which("jcmd")
    if jcmd is None:
        return ""
    try:
        return subprocess.run([jcmd, str(pid), "Thread.print"], capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_cpu_seconds() -> float | None:
    """CPU time all processes of the machine used since boot (busy time of every core), so
    that what other processes took during a phase can be told apart from the bench's own."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    except (OSError, ValueError):
        return None
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


# -- consumer lag ----------------------------------------------------------------------------
class LagSampler(threading.Thread):
    """Once a second: the worker group's committed offsets on ``decision-requests`` against the
    high watermarks (the lag Kafka sees), the generator's requests in flight (the lag the caller
    sees), and the worker's RSS."""

    def __init__(self, bootstrap: str, group: str, topic: str, partitions: int,
                 worker_pid: Callable[[], int | None], outstanding: Callable[[], int],
                 phase: Callable[[], str], interval_s: float = 1.0) -> None:
        super().__init__(name="bench-lag", daemon=True)
        from confluent_kafka import Consumer, TopicPartition
        from confluent_kafka.admin import AdminClient

        from stream_app.kafka.security import client_config

        self.admin = AdminClient(client_config({"bootstrap.servers": bootstrap}))
        self.watermarks = Consumer(client_config({"bootstrap.servers": bootstrap,
                                                  "group.id": f"bench-lag-{time.time_ns()}"}))
        self.group = group
        self.tps = [TopicPartition(topic, p) for p in range(partitions)]
        self.worker_pid, self.outstanding, self.phase = worker_pid, outstanding, phase
        self.interval_s = interval_s
        self.samples: list[dict[str, Any]] = []
        self._halt = threading.Event()
        self.t0 = time.time()

    def committed_lag(self) -> int | None:
        from confluent_kafka import ConsumerGroupTopicPartitions

        try:
            fut = self.admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(self.group, self.tps)], request_timeout=5)[self.group]
            committed = {tp.partition: tp.offset for tp in fut.result(timeout=5).topic_partitions}
            lag = 0
            for tp in self.tps:
                high = self.watermarks.get_watermark_offsets(tp, timeout=5, cached=False)[1]
                done = committed.get(tp.partition, -1)
                lag += high - max(done, 0)
            return lag
        except Exception:  # noqa: BLE001 - a missed sample is recorded as None, not fatal
            return None

    def run(self) -> None:
        while not self._halt.wait(self.interval_s):
            self.samples.append({
                "t": round(time.time() - self.t0, 2), "phase": self.phase(),
                "committed_lag": self.committed_lag(), "in_flight": self.outstanding(),
                "worker_rss_mb": _mb(rss_bytes(self.worker_pid())),
            })

    def stop(self) -> None:
        self._halt.set()
        self.join(15)
        self.watermarks.close()


def _mb(n: int | None) -> float | None:
    return None if n is None else round(n / 2**20, 1)


# -- state on disk ---------------------------------------------------------------------------
def du_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` as allocated on disk (like ``du -s``)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


def table_sizes(data_dir: Path) -> dict[str, dict[str, int]]:
    """Per table: rows, logical bytes (key + value) and bytes on disk of its RocksDB stores, and
    of those the rows keyed by a customer (their key holds a bench customer id, ``c`` + 7
    digits). ``"_customers"`` counts the distinct customers with any row. Read with rocksdict in
    read-only mode, so only with the worker stopped."""
    from rocksdict import AccessType, Options, Rdict

    from stream_app.bench.load import CUSTOMER_KEY as customer
    seen: set[bytes] = set()
    out: dict[str, dict[str, int]] = {}
    for db in sorted(data_dir.rglob("*.db")):
        if not db.is_dir():
            continue
        table = db.name.rsplit("-", 1)[0]
        agg = out.setdefault(table, {"keys": 0, "logical_bytes": 0, "disk_bytes": 0,
                                     "customer_keys": 0, "customer_bytes": 0})
        agg["disk_bytes"] += du_bytes(db)
        try:
            store = Rdict(str(db), Options(raw_mode=True), access_type=AccessType.read_only())
        except Exception:  # noqa: BLE001 - an unreadable store is reported by its disk size only
            continue
        try:
            for k, v in store.items():
                agg["keys"] += 1
                agg["logical_bytes"] += len(k) + len(v)
                m = customer.search(k)
                if m is not None and table != "pending":  # pending: one row per open decision
                    agg["customer_keys"] += 1
                    agg["customer_bytes"] += len(k) + len(v)
                    seen.add(m.group())
        finally:
            store.close()
    out["_customers"] = {"keys": len(seen)}
    return out


# -- the machine -----------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    import confluent_kafka

    return {
        "cpu": cpu, "cores": os.cpu_count(), "ram_gib": mem,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "confluent_kafka": confluent_kafka.version()[0],
        "librdkafka": confluent_kafka.libversion()[0],
        "faust": _version("faust-streaming"), "rocksdict": _version("rocksdict"),
    }


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


# -- what the run put through the broker -----------------------------------------------------
def topic_traffic(bootstrap: str, prefixes: tuple[str, ...], log_dir: Path | None = None,
                  timeout_s: float = 15.0) -> dict[str, dict[str, int]]:
    """Per topic whose name starts with one of ``prefixes``: the records written to it (the
    partitions' offset ranges, high - low watermark: every record produced in a run that neither
    retention nor compaction has trimmed yet) and, with the broker's ``log_dir``, its bytes on
    the broker's disk (record batches, index files). What each request costs the broker."""
    from confluent_kafka import Consumer, TopicPartition

    from stream_app.kafka.security import client_config

    consumer = Consumer(client_config({"bootstrap.servers": bootstrap,
                                       "group.id": f"bench-traffic-{time.time_ns()}",
                                       "enable.auto.commit": False}))
    try:
        topics = consumer.list_topics(timeout=timeout_s).topics
        out: dict[str, dict[str, int]] = {}
        for name in sorted(t for t in topics if t.startswith(prefixes)):
            records = 0
            for p in topics[name].partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(name, p),
                                                           timeout=timeout_s)
                records += max(0, high - low)
            row = {"records": records}
            if log_dir is not None:
                row["disk_bytes"] = sum(du_bytes(d) for d in log_dir.glob(f"{name}-*")
                                        if d.is_dir() and d.name.rsplit("-", 1)[0] == name)
            out[name] = row
        return out
    finally:
        consumer.close()
