"""tools/system_packages.sh: the Debian packages `make example` / `make test` need, installed
with apt-get when it can, else the exact command printed.

No container: the script runs with a PATH holding only fakes of the programs it asks (``id``,
``sudo``, ``apt-get``, ``ldconfig``, ``dpkg-query``) and of the programs it probes, driven by a
state folder; the fakes write every call to a log.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.example_env import EXAMPLE_SITE_ENV

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "system_packages.sh"
BASH = shutil.which("bash")

WEASYPRINT = ["libpango-1.0-0", "libpangoft2-1.0-0", "libharfbuzz-subset0"]
TEST_EXTRA = [
    "poppler-utils",
    "chromium",
    "fonts-dejavu-core",
    "memcached",
    "iproute2",
    "varnish",
]
# What each package provides, as the fakes see it.
PROVIDES = {
    "libpango-1.0-0": "lib libpango-1.0.so.0",
    "libpangoft2-1.0-0": "lib libpangoft2-1.0.so.0",
    "libharfbuzz-subset0": "lib libharfbuzz-subset.so.0",
    "poppler-utils": "cmd pdftoppm",
    "chromium": "cmd chromium",
    "fonts-dejavu-core": "deb fonts-dejavu-core",
    "memcached": "cmd memcached",
    "iproute2": "cmd ip",
    "varnish": "cmd varnishd",
}

FAKES = {
    "id": '[ "$1" = -u ] && cat "$STATE/uid"',
    # `sudo -n true` answers from the state; any other command is logged and run.
    "sudo": """
echo "sudo $*" >> "$STATE/calls"
[ "$1" = -n ] && shift
if [ "$1" = true ]; then exit "$(cat "$STATE/sudo_status")"; fi
exec "$@"
""",
    "ldconfig": """
while read -r lib; do
    printf '\\t%s (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/%s\\n' "$lib" "$lib"
done < "$STATE/libs"
""",
    "dpkg-query": """
pkg="${@: -1}"
grep -qx "$pkg" "$STATE/debs" && printf 'install ok installed' && exit 0
exit 1
""",
    # apt-get install "installs": libraries into ldconfig's list, programs onto PATH, debs.
    "apt-get": """
while [ "$1" = -o ]; do echo "$2" >> "$STATE/apt_options"; shift 2; done
echo "apt-get $* DEBIAN_FRONTEND=${DEBIAN_FRONTEND:-}" >> "$STATE/calls"
if [ "$1" = install ]; then
    if [ -e "$STATE/fail_installs" ] && [ "$(cat "$STATE/fail_installs")" -gt 0 ]; then
        echo $(( $(cat "$STATE/fail_installs") - 1 )) > "$STATE/fail_installs"
        echo "E: Unable to locate package" >&2; exit 100
    fi
    shift; [ "$1" = -y ] && shift
    for pkg in "$@"; do
        grep -qx "$pkg" "$STATE/broken" 2>/dev/null && continue
        read -r kind name < <(grep "^$pkg " "$STATE/provides" | cut -d' ' -f2-)
        case $kind in
        lib) echo "$name" >> "$STATE/libs" ;;
        cmd) printf '#!/bin/sh\\n' > "$BIN/$name"; chmod +x "$BIN/$name" ;;
        deb) echo "$name" >> "$STATE/debs" ;;
        esac
    done
fi
exit 0
""",
}
REAL_TOOLS = ("cat", "grep", "cut", "env", "chmod")  # what the fakes themselves use


class FakeMachine:
    def __init__(self, tmp_path: Path) -> None:
        self.state = tmp_path / "state"
        self.bin = tmp_path / "bin"
        self.state.mkdir()
        self.bin.mkdir()
        for name in REAL_TOOLS:
            (self.bin / name).symlink_to(shutil.which(name))
        for name, body in FAKES.items():
            path = self.bin / name
            path.write_text(f"#!{BASH}\n{body}")
            path.chmod(0o755)
        (self.state / "provides").write_text(
            "".join(f"{pkg} {what}\n" for pkg, what in PROVIDES.items())
        )
        for name in ("libs", "debs", "calls"):
            (self.state / name).write_text("")
        self.user(0)
        self.sudo_works(False)

    def user(self, uid: int) -> None:
        (self.state / "uid").write_text(f"{uid}\n")

    def sudo_works(self, works: bool) -> None:
        (self.state / "sudo_status").write_text("0" if works else "1")

    def without(self, name: str) -> None:
        (self.bin / name).unlink()

    def has(self, *packages: str) -> None:
        for pkg in packages:
            kind, name = PROVIDES[pkg].split()
            if kind == "lib":
                with (self.state / "libs").open("a") as libs:
                    libs.write(name + "\n")
            elif kind == "cmd":
                (self.bin / name).write_text("#!/bin/sh\n")
                (self.bin / name).chmod(0o755)
            else:
                with (self.state / "debs").open("a") as debs:
                    debs.write(name + "\n")

    def calls(self) -> list[str]:
        return (self.state / "calls").read_text().splitlines()

    def run(self, *args: str) -> subprocess.CompletedProcess:
        env = {"PATH": str(self.bin), "STATE": str(self.state), "BIN": str(self.bin)}
        return subprocess.run(
            [BASH, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60
        )


@pytest.fixture
def machine(tmp_path) -> FakeMachine:
    return FakeMachine(tmp_path)


def _install(packages: list[str], sudo: bool = False) -> str:
    return f"{'sudo -n ' if sudo else ''}apt-get install -y {' '.join(packages)} " + (
        "DEBIAN_FRONTEND=noninteractive"
    )


def test_root_and_missing_installs_them_with_apt_get(machine):
    result = machine.run("test")
    assert result.returncode == 0, result.stderr
    wanted = WEASYPRINT + TEST_EXTRA
    assert machine.calls() == [_install(wanted)]
    assert f"installing them: apt-get install -y {' '.join(wanted)}" in result.stderr
    assert "installed; everything" in result.stderr
    # Installed now: a second run asks apt-get for nothing.
    assert machine.run("test").returncode == 0 and len(machine.calls()) == 1


def test_only_what_is_missing_is_installed(machine):
    machine.has(*WEASYPRINT, "chromium", "fonts-dejavu-core", "memcached", "iproute2", "varnish")
    assert machine.run("test").returncode == 0
    assert machine.calls() == [_install(["poppler-utils"])]


def test_make_example_needs_only_weasyprints_libraries(machine):
    assert machine.run("example").returncode == 0
    assert machine.calls() == [_install(WEASYPRINT)]


def test_a_failed_install_updates_the_package_lists_and_tries_again(machine):
    (machine.state / "fail_installs").write_text("1")
    result = machine.run("example")
    assert result.returncode == 0, result.stderr
    assert machine.calls() == [
        _install(WEASYPRINT),
        "apt-get update DEBIAN_FRONTEND=noninteractive",
        _install(WEASYPRINT),
    ]
    assert "apt-get install failed; updating the package lists" in result.stderr


def test_apt_get_waits_for_the_dpkg_lock_instead_of_failing_at_once(machine):
    """Attack (issue 14): on a fresh machine unattended-upgrades holds dpkg's lock for minutes
    after boot; apt-get then failed at once ("Could not get lock") and make gave up."""
    (machine.state / "fail_installs").write_text("1")
    assert machine.run("example").returncode == 0
    options = (machine.state / "apt_options").read_text().splitlines()
    assert options == ["DPkg::Lock::Timeout=300"] * 3  # install, update, install


def test_an_install_that_fails_twice_prints_the_command(machine):
    (machine.state / "fail_installs").write_text("2")
    result = machine.run("example")
    assert result.returncode == 1
    assert f"    apt-get install -y {' '.join(WEASYPRINT)}\n" in result.stderr


def test_a_package_still_missing_after_apt_get_fails(machine):
    (machine.state / "broken").write_text("libharfbuzz-subset0\n")
    result = machine.run("example")
    assert result.returncode == 1
    assert "still missing after apt-get: libharfbuzz-subset0" in result.stderr
    assert "    apt-get install -y libharfbuzz-subset0\n" in result.stderr


def test_non_root_with_passwordless_sudo_installs_through_sudo(machine):
    machine.user(1000)
    machine.sudo_works(True)
    result = machine.run("example")
    assert result.returncode == 0, result.stderr
    assert machine.calls() == [
        "sudo -n true",
        "sudo -n env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y "
        + " ".join(WEASYPRINT),
        _install(WEASYPRINT),
    ]
    assert "installing them: sudo -n apt-get install -y" in result.stderr


@pytest.mark.parametrize("sudo", ["needs a password", "missing"])
def test_non_root_without_sudo_prints_the_exact_command(machine, sudo):
    machine.user(1000)
    if sudo == "missing":
        machine.without("sudo")
    result = machine.run("test")
    assert result.returncode == 1
    assert not [call for call in machine.calls() if call.startswith("apt-get")]
    command = f"sudo apt-get install -y {' '.join(WEASYPRINT + TEST_EXTRA)}"
    assert result.stderr.splitlines()[-1] == f"    {command}"
    assert "not root, and sudo needs a password (or is missing)" in result.stderr


def test_check_only_prints_the_command_without_sudo_for_root(machine):
    result = machine.run("--check", "example")
    assert result.returncode == 1
    assert machine.calls() == []
    assert result.stderr.splitlines()[-1] == f"    apt-get install -y {' '.join(WEASYPRINT)}"


def test_nothing_missing_calls_no_apt_get(machine):
    machine.has(*WEASYPRINT, *TEST_EXTRA)
    machine.user(1000)  # not even sudo is asked
    for profile in ("example", "test"):
        result = machine.run(profile)
        assert result.returncode == 0, result.stderr
        assert "needs is installed" in result.stderr
    assert machine.calls() == []


def test_a_machine_without_apt_get_is_told_what_to_look_for(machine):
    machine.without("apt-get")
    result = machine.run("example")
    assert result.returncode == 1
    assert "no apt-get" in result.stderr and " ".join(WEASYPRINT) in result.stderr


@pytest.mark.machine
def test_this_machine_has_what_make_test_needs():
    """The real machine, checked only: the list matches what the tests here use."""
    result = subprocess.run(
        [BASH, str(SCRIPT), "--check", "test"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


# --- One list, used by the Makefile and .ci/run, before the Python install ------------------


def test_the_package_list_lives_only_in_the_script():
    makefile = (ROOT / "Makefile").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    for package in WEASYPRINT + TEST_EXTRA:
        assert package not in makefile and package not in ci, package
    assert "tools/system_packages.sh test" in ci


def _make_dry_run(*args: str) -> list[str]:
    python = sys.executable
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", *args, f"PYTHON={python}", "VENV=.venv-dry-run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


@pytest.mark.skipif(not shutil.which("make"), reason="make is not installed")
@pytest.mark.parametrize(("target", "profile"), [("example", "example"), ("test", "test")])
def test_make_checks_the_system_before_the_python_install(target, profile):
    lines = _make_dry_run(target)
    check = next(i for i, line in enumerate(lines) if "tools/system_packages.sh" in line)
    pip = next(i for i, line in enumerate(lines) if "pip install" in line)
    assert check < pip
    assert lines[check].endswith(f"tools/system_packages.sh  {profile}")
    assert "--check" in _make_dry_run(target, "APT=0")[check]


@pytest.mark.skipif(not shutil.which("make"), reason="make is not installed")
def test_make_example_serves_on_port_and_host():
    assert _make_dry_run("example")[-1].endswith("run.py serve --addr 127.0.0.1:8000")
    lines = _make_dry_run("example", "PORT=8001", "HOST=0.0.0.0")
    assert lines[-1].endswith("run.py serve --addr 0.0.0.0:8001")


def test_run_py_allows_the_host_it_serves():
    from example_project.run import allowed_hosts_for

    assert allowed_hosts_for("127.0.0.1", None) is None  # the settings' default
    assert allowed_hosts_for("0.0.0.0", None) == "*"
    assert allowed_hosts_for("192.0.2.7", None) == "127.0.0.1,localhost,[::1],192.0.2.7"
    assert allowed_hosts_for("0.0.0.0", "example.org") is None  # the environment wins


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_run_py_serves_on_every_interface(tmp_path):
    """`make example PORT=... HOST=0.0.0.0`'s command: the site answers on the port, for a
    name other than the loopback's, and prints a URL that works."""
    port = _free_port()
    ignored = {*EXAMPLE_SITE_ENV, "DJANGO_SETTINGS_MODULE"}
    env = {k: v for k, v in os.environ.items() if k not in ignored}
    env["EXAMPLE_VAR_DIR"] = str(tmp_path / "var")
    run = [sys.executable, str(ROOT / "example_project" / "run.py")]
    setup = subprocess.run([*run, "setup"], env=env, capture_output=True, text=True, timeout=180)
    assert setup.returncode == 0, setup.stderr
    server = subprocess.Popen(
        [*run, "serve", "--addr", f"0.0.0.0:{port}", "--no-beat"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = server.stdout.readline()
            output.append(line)
            if "Press Ctrl-C" in line or not line:
                break
        text = "".join(output)
        assert re.search(rf"Site +http://127\.0\.0\.1:{port}/\n", text), text
        assert "Listening on every interface" in text
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/", headers={"Host": f"reports.example.net:{port}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
            assert b"<form" in response.read()
    finally:
        os.killpg(server.pid, 2)
        try:
            server.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.communicate()
