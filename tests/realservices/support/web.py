"""A small HTTP client (urllib + a cookie jar) that signs up like a browser without JavaScript:
its POSTs carry the Fetch Metadata and ``Origin`` a browser sends from the site's own page."""

from __future__ import annotations

import html
import ipaddress
import re
import secrets
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.cookiejar import CookieJar

ARTICLE_PATH = "/"  # the app's root shows the default article, with the form
SIGNUP_PATH = "/signup/"
SIGNUP_DONE_PATH = "/signup/done/"

_INPUT = re.compile(r"<input\b[^>]*>", re.IGNORECASE)
_ATTR = re.compile(r'([a-zA-Z_:-]+)\s*=\s*"([^"]*)"')


@dataclass(frozen=True)
class Response:
    status: int
    url: str
    headers: dict[str, str]
    body: str


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # show the 3xx to the caller


def reader_ip() -> str:
    """A random address in 10.0.0.0/8: one simulated reader (see ``wsgi.RealIP``)."""
    return str(ipaddress.IPv4Address(0x0A000000 + secrets.randbelow(1 << 24)))


class Client:
    """One visitor: its own cookies and IP, redirects returned rather than followed.

    The IP goes in ``X-Real-IP``, which the tier's front-end stand-in (``wsgi.RealIP``) turns
    into ``REMOTE_ADDR``, so each visitor counts on its own for the sign-up throttle.
    """

    def __init__(self, base_url: str, *, ip: str | None = None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.ip = ip or reader_ip()
        self.timeout = timeout
        self.cookies = CookieJar()
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirect
        )

    def request(self, path: str, data: dict[str, str] | None = None) -> Response:
        url = self.base_url + path
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(
            url, data=body, headers={"User-Agent": "backpain-rs-test", "X-Real-IP": self.ip}
        )
        if data is not None:
            req.add_header("Referer", url)
            parts = urllib.parse.urlsplit(url)
            req.add_header("Origin", f"{parts.scheme}://{parts.netloc}")
            req.add_header("Sec-Fetch-Site", "same-origin")
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                return Response(
                    resp.status,
                    resp.url,
                    dict(resp.headers),
                    resp.read().decode("utf-8", "replace"),
                )
        except urllib.error.HTTPError as exc:
            with exc:
                text = exc.read().decode("utf-8", "replace")
                return Response(exc.code, url, dict(exc.headers), text)

    def get(self, path: str) -> Response:
        return self.request(path)

    def post(self, path: str, data: dict[str, str]) -> Response:
        return self.request(path, data)


def form_inputs(page: str) -> dict[str, str]:
    """``name -> value`` of every ``<input>`` on the page (hidden ones included)."""
    found: dict[str, str] = {}
    for tag in _INPUT.findall(page):
        attrs = {k.lower(): html.unescape(v) for k, v in _ATTR.findall(tag)}
        if "name" in attrs:
            found.setdefault(attrs["name"], attrs.get("value", ""))
    return found


def signup_data(inputs: dict[str, str], *, name: str, email: str) -> dict[str, str]:
    """The sign-up form as a reader fills it in, from the page's ``inputs`` (the article, and
    ``followups`` when the consent shown named the follow-up emails; the honeypot left empty).
    The page carries no token: the same for every reader."""
    data = {
        "article": inputs.get("article", ""),
        "name": name,
        "email": email,
        "consent": "on",
        "website": "",
    }
    if inputs.get("followups"):
        data["followups"] = inputs["followups"]
    return data


def sign_up(base_url: str, *, name: str, email: str) -> Response:
    """GET the article, then POST the sign-up form; return the POST."""
    client = Client(base_url)
    page = client.get(ARTICLE_PATH)
    if page.status != 200:
        raise AssertionError(f"GET {ARTICLE_PATH} answered {page.status}: {page.body[:500]}")
    inputs = form_inputs(page.body)
    if "article" not in inputs:
        raise AssertionError(f"no sign-up form in the article page: {page.body[:500]}")
    return client.post(SIGNUP_PATH, signup_data(inputs, name=name, email=email))
