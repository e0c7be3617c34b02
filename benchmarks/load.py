"""Load: wrk for the web rows, a few Python clients for the end-to-end sign-ups.

Every request carries a browser's ``User-Agent``: the app does not count a page view for an
empty or bot-like one, and a reader's browser always sends one.
"""

from __future__ import annotations

import subprocess
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from tests.realservices.support.web import Client, form_inputs

from .harness import WrkResult, parse_wrk

HERE = Path(__file__).resolve().parent
SIGNUP_SCRIPT = HERE / "signup.lua"
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) backpain-bench"


@dataclass(frozen=True)
class WrkOptions:
    seconds: float = 10.0
    connections: int = 16
    threads: int = 2


@dataclass(frozen=True)
class FormSession:
    """What a browser holds after loading a form: the CSRF cookie and the form's fields (our
    article page has neither cookie nor token: the same page for every reader)."""

    cookie: str  # the Cookie header to send ("" for none)
    fields: dict[str, str]  # name -> value of every input (a masked CSRF token, if any)

    @property
    def token(self) -> str:
        return self.fields.get("csrfmiddlewaretoken", "")


def form_session(base_url: str, path: str, *, csrf: bool) -> FormSession:
    """GET ``path`` once: the form's inputs and, with ``csrf``, the ``csrftoken`` cookie and
    token (the baseline's plain Django form); without, the page must carry no token."""
    client = Client(base_url, timeout=30)
    page = client.get(path)
    if page.status != 200:
        raise RuntimeError(f"GET {base_url}{path} answered {page.status}: {page.body[:300]}")
    fields = form_inputs(page.body)
    cookies = "; ".join(f"{c.name}={c.value}" for c in client.cookies)
    has_token = "csrfmiddlewaretoken" in fields and "csrftoken=" in cookies
    if has_token != csrf:
        raise RuntimeError(
            f"the form at {base_url}{path} {'lacks' if csrf else 'carries'} a CSRF token"
        )
    return FormSession(cookie=cookies, fields=fields)


def run_wrk(url: str, options: WrkOptions, *, script_args: list[str] | None = None) -> WrkResult:
    """Run wrk against ``url`` (with ``signup.lua`` when ``script_args`` are given)."""
    argv = [
        "wrk", "-t", str(options.threads), "-c", str(options.connections),
        "-d", f"{options.seconds:g}s", "--latency", "--timeout", "10s",
        "-H", f"User-Agent: {USER_AGENT}",
    ]  # fmt: skip
    if script_args is not None:
        argv += ["-s", str(SIGNUP_SCRIPT), url, "--", *script_args]
    else:
        argv.append(url)
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=options.seconds + 60, check=False
    )
    if done.returncode:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return parse_wrk(done.stdout)


def signup_script_args(session: FormSession, path: str, prefix: str, *, ours: bool) -> list[str]:
    """``signup.lua``'s arguments; our form also posts the article slug and the honeypot."""
    extra = ""
    if ours:
        extra = "&" + urllib.parse.urlencode(
            {"article": session.fields.get("article", ""), "website": ""}
        )
    return [path, session.cookie, session.token, prefix, extra]


def post_signups(
    base_url: str, path: str, emails: list[str], *, clients: int = 4
) -> tuple[int, list[str]]:
    """POST the sign-up form once per address from ``clients`` browsers in parallel.

    Each browser loads the form first (cookie, token). Returns (how many got the 303, the
    first few problems).
    """
    shares = [emails[i::clients] for i in range(clients)]
    accepted = [0] * clients
    problems: list[str] = []
    lock = threading.Lock()

    def browse(index: int) -> None:
        client = Client(base_url, timeout=60)
        try:
            page = client.get(path)
            fields = form_inputs(page.body)
            for email in shares[index]:
                data = {**fields, "name": "Reader", "email": email, "consent": "on", "website": ""}
                response = client.post(path, data)
                if response.status == 303:
                    accepted[index] += 1
                elif len(problems) < 5:
                    with lock:
                        problems.append(f"{email}: {response.status} {response.body[:200]}")
        except Exception as exc:  # noqa: BLE001 - reported, the caller decides
            with lock:
                problems.append(f"client {index}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=browse, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(accepted), problems
