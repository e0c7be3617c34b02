"""Hosts on one machine: Linux network namespaces joined by a bridge (Debian's ``iproute2``).

:class:`Lan` makes a namespace for the switch (a bridge, ``br0``) and one per host, each host
joined to the switch by a veth pair (``eth0`` in the host, ``p-<host>`` on the switch) with an
address in :data:`SUBNET`. Every name starts with a prefix of this run's own, so two runs never
meet, and :meth:`Lan.destroy` removes every namespace the run made (deleting a namespace removes
its links). Processes still inside a namespace when it is deleted would live on, unseen, in a
namespace without a name: :meth:`Lan.destroy` kills them first and says which they were.

A host's link is cut at the switch (:meth:`Lan.cut`): the host is not told, its packets go
nowhere and its TCP connections hang, as when a cable is pulled or a machine vanishes; the other
hosts see silence, not a reset.

Traffic stays inside these namespaces: nothing here touches the machine's own interfaces,
routes or firewall. The test process reaches the hosts from a thread that joined a namespace
(:func:`enter`), and the services on the db host through their Unix sockets.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SUBNET = "10.231.0"  # /24; namespaces are private, so it cannot clash with the machine's own


def problem() -> str | None:
    """None when this machine can make namespaces (root, ``ip``, ``os.setns``), else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the ip command is missing (apt-get install iproute2)"
    if not hasattr(os, "setns"):
        return "os.setns needs Python 3.12 or newer"
    return None


def ip(*argv: str, check: bool = True) -> str:
    """Run ``ip argv``; raise with its error output when it fails (``check``)."""
    done = subprocess.run(
        ["ip", *argv], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30
    )
    if check and done.returncode:
        raise RuntimeError(f"ip {' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


@dataclass
class Host:
    name: str
    namespace: str
    address: str
    port_name: str  # its veth end on the switch

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` run inside this host (``ip netns exec``; the program keeps its PID)."""
        return ["ip", "netns", "exec", self.namespace, *argv]


@dataclass
class Lan:
    """A switch and its hosts; see the module docstring."""

    prefix: str
    hosts: dict[str, Host] = field(default_factory=dict)
    _made: list[str] = field(default_factory=list)

    @property
    def switch(self) -> str:
        return f"{self.prefix}lan"

    def create(self) -> None:
        self._namespace(self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")

    def _namespace(self, name: str) -> None:
        ip("netns", "add", name)
        self._made.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    def add(self, name: str, number: int) -> Host:
        """Host ``name`` at ``SUBNET.number``, its link up."""
        host = Host(name, f"{self.prefix}{name}", f"{SUBNET}.{number}", f"p-{name}")
        self._namespace(host.namespace)
        ip("-n", self.switch, "link", "add", host.port_name, "type", "veth",
           "peer", "name", "eth0", "netns", host.namespace)  # fmt: skip
        ip("-n", self.switch, "link", "set", host.port_name, "master", "br0", "up")
        ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
        ip("-n", host.namespace, "link", "set", "eth0", "up")
        self.hosts[name] = host
        return host

    def cut(self, name: str) -> None:
        """Pull host ``name``'s cable: its switch port goes down, the host is not told."""
        ip("-n", self.switch, "link", "set", self.hosts[name].port_name, "down")

    def restore(self, name: str) -> None:
        ip("-n", self.switch, "link", "set", self.hosts[name].port_name, "up")

    def destroy(self) -> dict[str, list[str]]:
        """Delete every namespace this LAN made (their links go with them).

        A process still inside one (its owner failed to stop it, or it left its process group)
        is killed first, since deleting the name would not end it; returns those found, per
        namespace (``pid command``), for the caller to report: none is the expected answer.
        """
        # A process stopped a moment ago may still be exiting: give it a few seconds first.
        deadline = time.monotonic() + 3
        while any(pids(name) for name in self._made) and time.monotonic() < deadline:
            time.sleep(0.1)
        stragglers = {}
        for name in self._made:
            found = [_describe(pid) for pid in pids(name)]
            if found:
                stragglers[name] = found
        for _attempt in range(50):
            alive = [pid for name in self._made for pid in pids(name)]
            if not alive:
                break
            for pid in alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        for name in reversed(self._made):
            ip("netns", "del", name, check=False)
        self._made.clear()
        return stragglers


def pids(namespace: str) -> list[int]:
    """The processes inside ``namespace`` (``ip netns pids``)."""
    return [int(pid) for pid in ip("netns", "pids", namespace, check=False).split()]


def _describe(pid: int) -> str:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        command = "(gone)"
    return f"{pid} {command.strip()[:200]}"


def leftovers(prefix: str) -> list[str]:
    """Namespaces whose name starts with ``prefix`` (what a crashed run may have left)."""
    listed = ip("netns", "list", check=False).splitlines()
    return [line.split()[0] for line in listed if line.startswith(prefix)]


def enter(namespace: str) -> None:
    """Move the calling thread into ``namespace``; sockets it opens from now on live there.

    Network namespaces are per thread, so this suits a thread pool's initializer.
    """
    with open(f"/run/netns/{namespace}", "rb") as handle:
        os.setns(handle.fileno(), os.CLONE_NEWNET)


@contextlib.contextmanager
def inside(namespace: str) -> Iterator[None]:
    """Run the body in ``namespace``, then return the thread to the namespace it came from."""
    with open("/proc/thread-self/ns/net", "rb") as home:
        enter(namespace)
        try:
            yield
        finally:
            os.setns(home.fileno(), os.CLONE_NEWNET)


class CpuShare:
    """A CPU quota for a host: a cgroup whose processes together get ``cpus`` CPUs' worth of
    time (``0.5``: half of one), as a smaller machine would. cgroup v1's ``cpu`` controller or
    cgroup v2's; :meth:`wrap` starts a program inside it (race-free: the group is joined before
    the program runs, so every child it forks is in it too).
    """

    PERIOD_US = 100_000

    def __init__(self, name: str, cpus: float) -> None:
        self.cpus = cpus
        self.path = _cgroup_root() / name
        self.path.mkdir(exist_ok=True)
        quota = int(cpus * self.PERIOD_US)
        if (self.path / "cpu.max").exists():
            (self.path / "cpu.max").write_text(f"{quota} {self.PERIOD_US}")
        else:
            (self.path / "cpu.cfs_period_us").write_text(str(self.PERIOD_US))
            (self.path / "cpu.cfs_quota_us").write_text(str(quota))

    def wrap(self, argv: list[str]) -> list[str]:
        procs = self.path / "cgroup.procs"
        return ["sh", "-c", f'echo $$ > {procs} && exec "$@"', "sh", *argv]

    def remove(self) -> None:
        """Remove the group (its processes must have exited: one killed a moment ago may take
        a little while to leave it, so this tries for a few seconds)."""
        deadline = time.monotonic() + 5
        while self.path.exists():
            try:
                self.path.rmdir()
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def _cgroup_root() -> Path:
    v1 = Path("/sys/fs/cgroup/cpu")
    if (v1 / "cpu.cfs_quota_us").exists():
        return v1
    v2 = Path("/sys/fs/cgroup")
    if "cpu" in (v2 / "cgroup.controllers").read_text().split():
        control = v2 / "cgroup.subtree_control"
        if "cpu" not in control.read_text().split():
            control.write_text("+cpu")
        return v2
    raise RuntimeError("no cgroup cpu controller to give a host a CPU quota")


def cpu_share_problem() -> str | None:
    """None when :class:`CpuShare` works here, else why not."""
    try:
        _cgroup_root()
    except (OSError, RuntimeError) as exc:
        return str(exc)
    return None
