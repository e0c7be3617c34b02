#!/usr/bin/env python
"""Run the example site: Django's dev server and a real Celery worker (with beat), together.

    python example_project/run.py setup   # migrate, create the "admin" user, seed the article
    python example_project/run.py         # serve: dev server + worker until Ctrl-C

Both children run in their own process groups; Ctrl-C or SIGTERM stops both (the worker with a
warm shutdown, a second Ctrl-C a cold one) and this script exits 0 when both exited cleanly; when
either dies on its own the other is stopped and this script exits non-zero.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STOP_TIMEOUT = 30.0  # seconds a warm shutdown may take before the children are killed

# This file's folder must not be on sys.path: its celery.py would shadow the celery package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")


def _django() -> None:
    import django

    django.setup()


# --- setup ----------------------------------------------------------------------------------


def ensure_admin(var_dir: Path) -> None:
    """Create the superuser "admin" once; print its password (kept in var/admin_password)."""
    from django.contrib.auth import get_user_model

    password_file = var_dir / "admin_password"
    user_model = get_user_model()
    if user_model.objects.filter(username="admin").exists():
        if password_file.exists():
            print(f"Admin login: admin / {password_file.read_text().strip()}")
        else:
            print(
                "Admin user 'admin' exists (password unknown: "
                "python example_project/manage.py changepassword admin)"
            )
        return
    password = secrets.token_urlsafe(12)
    user_model.objects.create_superuser("admin", "admin@example.com", password)
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    print(f"Created admin login: admin / {password}  (saved in {password_file})")


def setup() -> int:
    _django()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=1)
    call_command("createcachetable")  # the throttles' shared cache, when it is the database
    ensure_admin(Path(settings.VAR_DIR))
    call_command("backpain_seed")
    return 0


# --- serve ----------------------------------------------------------------------------------


def _urls(base: str) -> list[tuple[str, str]]:
    from django.conf import settings
    from django.urls import NoReverseMatch, reverse

    urls = [("Site", base + "/")]
    try:
        from backpain_report.conf import app_settings

        slug = app_settings.DEFAULT_ARTICLE
        urls.append(
            ("Article", base + reverse("backpain_report:article_detail", kwargs={"slug": slug}))
        )
    except (ImportError, NoReverseMatch):
        pass
    urls.append(("Admin", base + "/admin/"))
    if settings.DEBUG or settings.EXAMPLE_MAIL_CAPTURED:
        urls.append(("Outbox", base + "/outbox/"))
    return urls


def _wait_for_port(
    host: str, port: int, proc: subprocess.Popen, timeout: float, stopping: list[int]
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None and not stopping:
        try:  # "[::1]" is written with brackets, resolved without
            with socket.create_connection((host.strip("[]"), port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def signal_forwarded(name: str, received: int, *, first: bool) -> int:
    """The signal the child ``name`` gets when this script receives ``received``.

    The dev server gets what was received. The worker's first is SIGTERM, Celery's warm
    shutdown, which exits 0 (its SIGINT handler ends a warm shutdown with exit code 1); any
    later one is SIGQUIT, the cold shutdown a second Ctrl-C asks for.
    """
    if name != "worker":
        return received
    return signal.SIGTERM if first else signal.SIGQUIT


def stopped_exit_code(returncodes: list[int]) -> int:
    """This script's exit code after a Ctrl-C or SIGTERM: 0 when every child exited cleanly."""
    return 0 if all(code == 0 for code in returncodes) else 1


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group has already gone
        os.killpg(proc.pid, sig)


EVERY_INTERFACE = ("", "0.0.0.0", "::", "[::]")
LOOPBACK_HOSTS = "127.0.0.1,localhost,[::1]"  # the example settings' default ALLOWED_HOSTS


def site_url_for(host: str, port: str) -> str:
    """The origin links in emails point at when the server listens on ``host:port``."""
    if host in EVERY_INTERFACE:  # every interface: this machine's loopback
        host = "127.0.0.1"
    return f"http://{host}:{port}"


def allowed_hosts_for(host: str, given: str | None) -> str | None:
    """The ``ALLOWED_HOSTS`` the site needs to answer on ``host``; None to leave it as it is.

    Unset, the example allows only the loopback names: listening on every interface
    (``HOST=0.0.0.0``) then allows any name this machine is reached by, and another address
    is added to the loopback names. An ``ALLOWED_HOSTS`` given in the environment always wins.
    """
    if given:
        return None
    if host in EVERY_INTERFACE:
        return "*"
    if host in LOOPBACK_HOSTS.split(","):
        return None
    return f"{LOOPBACK_HOSTS},{host}"


def addr_parse(addr: str) -> tuple[str, str]:
    """``HOST:PORT`` (``make example HOST=... PORT=...``) as ``(host, port)``: an IPv6 address
    bracketed as runserver and URLs write it (``::1`` -> ``[::1]``); SystemExit naming the bad
    part otherwise, before anything is started."""
    host, _, port = addr.rpartition(":")
    host = host or "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise SystemExit(f"[run] PORT must be a number from 1 to 65535, not {port!r}.")
    if not host.strip("[]") or any(char.isspace() or char in "/@?#" for char in host):
        raise SystemExit(f"[run] HOST must be a host name or an IP address, not {host!r}.")
    return host, str(int(port))


def serve(addr: str, *, beat: bool) -> int:
    host, port = addr_parse(addr)
    # Links in emails point at the server started here unless SITE_URL says otherwise (the web
    # server and the worker inherit it).
    if not os.environ.get("SITE_URL"):
        os.environ["SITE_URL"] = site_url_for(host, port)
    allowed = allowed_hosts_for(host, os.environ.get("ALLOWED_HOSTS"))
    if allowed is not None:
        os.environ["ALLOWED_HOSTS"] = allowed
    _django()
    from django.conf import settings

    var_dir = Path(settings.VAR_DIR)
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    commands = {
        "web": [sys.executable, str(HERE / "manage.py"), "runserver", f"{host}:{port}"],
        "worker": [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "example_project",
            "worker",
            "-l",
            "info",
            "--concurrency",
            "2",
            "-Q",
            "celery,backpain_webhooks",  # the default queue and the webhook events' own
        ]
        + (["-B", "-s", str(var_dir / "celerybeat-schedule")] if beat else []),
    }

    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    procs: dict[str, subprocess.Popen] = {}
    for name, command in commands.items():
        # Own process group: a terminal's Ctrl-C reaches only us, and we forward it once.
        procs[name] = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
        print(f"[run] started {name} (pid {procs[name].pid}): {' '.join(command[1:])}")

    if _wait_for_port(host, int(port), procs["web"], 30, received):
        base = site_url_for(host, port)
        if host in EVERY_INTERFACE:
            print(
                f"\n[run] Listening on every interface, port {port}: other machines reach the "
                "site (with DEBUG on) at this machine's address."
            )
        width = max(len(label) for label, _ in _urls(base))
        print("\n[run] The example site is up:")
        for label, url in _urls(base):
            print(f"[run]   {label:<{width}}  {url}")
        password_file = var_dir / "admin_password"
        if password_file.exists():
            print(f"[run]   Admin login: admin / {password_file.read_text().strip()}")
        print("[run] Press Ctrl-C to stop the server and the worker.\n", flush=True)

    exit_code = 0
    forwarded = 0
    deadline: float | None = None
    while any(proc.poll() is None for proc in procs.values()):
        if len(received) > forwarded:  # forward every signal, so a second Ctrl-C is cold
            sig = received[forwarded]
            first = forwarded == 0
            forwarded = len(received)
            print(f"\n[run] {signal.Signals(sig).name}: stopping web and worker...", flush=True)
            for name, proc in procs.items():
                if name == "worker":  # its main process, which stops its pool and beat
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(signal_forwarded(name, sig, first=first))
                else:
                    _signal_group(proc, signal_forwarded(name, sig, first=first))
            deadline = deadline or time.monotonic() + STOP_TIMEOUT
        elif deadline is None:
            for name, proc in procs.items():
                if proc.poll() is not None:  # one died on its own: stop the other
                    print(f"[run] {name} exited with code {proc.returncode}; stopping.")
                    exit_code = proc.returncode if proc.returncode > 0 else 1
                    for other in procs.values():
                        _signal_group(other, signal.SIGTERM)
                    deadline = time.monotonic() + STOP_TIMEOUT
                    break
        if deadline is not None and time.monotonic() > deadline:
            print("[run] Still running after the timeout: killing.", flush=True)
            for proc in procs.values():
                _signal_group(proc, signal.SIGKILL)
            deadline = time.monotonic() + 5
        time.sleep(0.2)
    for proc in procs.values():  # reap any grandchildren left in the groups
        _signal_group(proc, signal.SIGKILL)
    print(f"[run] Stopped ({', '.join(f'{n}: {p.returncode}' for n, p in procs.items())}).")
    if received and not exit_code:  # stopped by us: clean only if both children were
        exit_code = stopped_exit_code([proc.returncode for proc in procs.values()])
    return exit_code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", choices=["serve", "setup"], default="serve")
    parser.add_argument("--addr", default="127.0.0.1:8000", help="host:port for the web server")
    parser.add_argument("--no-beat", action="store_true", help="run the worker without beat")
    args = parser.parse_args(argv)
    if args.command == "setup":
        return setup()
    return serve(args.addr, beat=not args.no_beat)


if __name__ == "__main__":
    sys.exit(main())
