"""The example site boots, its settings follow the environment, and its outbox page works.

Anything that imports ``example_project.settings`` runs in a subprocess (it is a different
settings module); the outbox views are tested here under ``tests.settings``.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import django
import pytest
from celery import _state as celery_state
from django.conf import settings
from django.core import mail
from django.core.mail import EmailMultiAlternatives
from django.test import override_settings
from django.urls import include, path

from tests.example_env import EXAMPLE_SITE_ENV

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_ENV = EXAMPLE_SITE_ENV

# Seconds a test: the example site's manage.py in subprocesses; `make test-fast` skips it.
pytestmark = pytest.mark.heavy

# Prints what the example settings resolved to (run with example_project.settings).
DUMP_SETTINGS = """
import json, django
django.setup()
from django.conf import settings
from django.urls import get_resolver
from example_project.celery import app
db = settings.DATABASES["default"]
out = {
    "debug": settings.DEBUG,
    "allowed_hosts": settings.ALLOWED_HOSTS,
    "secret_key": settings.SECRET_KEY,
    "db_engine": db["ENGINE"], "db_name": str(db["NAME"]), "db_host": db.get("HOST"),
    "broker_url": app.conf.broker_url,
    "transport_options": app.conf.broker_transport_options,
    "acks_late": app.conf.task_acks_late,
    "reject_on_worker_lost": app.conf.task_reject_on_worker_lost,
    "prefetch": app.conf.worker_prefetch_multiplier,
    "max_tasks_per_child": app.conf.worker_max_tasks_per_child,
    "ignore_result": app.conf.task_ignore_result,
    "retry_on_startup": app.conf.broker_connection_retry_on_startup,
    "beat_schedule": {k: [v["task"], v["schedule"]] for k, v in app.conf.beat_schedule.items()},
    "app_settings": settings.BACKPAIN_REPORT,
    "template_dirs": [str(d) for d in settings.TEMPLATES[0]["DIRS"]],
    "installed_apps": settings.INSTALLED_APPS,
    "routes": [str(p.pattern) for p in get_resolver().url_patterns],
    "captured": settings.EXAMPLE_MAIL_CAPTURED,
}
if django.VERSION >= (6, 1):
    out["mailer"] = settings.MAILERS["default"]
    from django.core.mail import mailers
    backend = mailers.default
else:
    out["mailer"] = {"BACKEND": settings.EMAIL_BACKEND}
    from django.core.mail import get_connection
    backend = get_connection()
out["backend"] = {
    key: getattr(backend, key, None) for key in ("file_path", "host", "port", "timeout")
}
print(json.dumps(out, default=str))
"""


def run_example(code: str, var_dir: Path, **env: str) -> subprocess.CompletedProcess:
    """Run ``code`` with the example settings, a private var dir and only the given env vars."""
    environ = {k: v for k, v in os.environ.items() if k not in EXAMPLE_ENV}
    environ.update(
        DJANGO_SETTINGS_MODULE="example_project.settings",
        EXAMPLE_VAR_DIR=str(var_dir),
        PYTHONPATH=str(ROOT),
        **env,
    )
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def example_settings(var_dir: Path, **env: str) -> dict:
    result = run_example(DUMP_SETTINGS, var_dir, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- The site boots -----------------------------------------------------------------------


def test_system_checks_pass(tmp_path):
    code = "import django; django.setup(); from django.core.management import call_command; "
    result = run_example(code + "call_command('check', fail_level='WARNING')", tmp_path / "var")
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


CHECK = "import django; django.setup(); from django.core.management import call_command; "


def test_production_settings_need_a_site_url(tmp_path):
    """DEBUG off and no SITE_URL: links in emails would follow the Host header, so check fails."""
    production = {"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "x" * 50}
    result = run_example(CHECK + "call_command('check')", tmp_path / "var", **production)
    assert result.returncode != 0
    assert "backpain_report.E006" in result.stderr and "SITE_URL" in result.stderr

    given = {**production, "SITE_URL": "https://reports.example.org"}
    result = run_example(CHECK + "call_command('check')", tmp_path / "v2", **given)
    # No error; W004 may still warn: without CACHE_URL the example's throttles use the db cache.
    assert result.returncode == 0, result.stderr
    assert "E006" not in result.stderr + result.stdout


def test_run_py_points_links_at_the_server_it_starts():
    run = importlib.import_module("example_project.run")
    assert run.site_url_for("127.0.0.1", "8000") == "http://127.0.0.1:8000"
    assert run.site_url_for("0.0.0.0", "9000") == "http://127.0.0.1:9000"
    assert run.site_url_for("localhost", "8080") == "http://localhost:8080"


def test_manage_py_runs_from_anywhere(tmp_path):
    environ = {k: v for k, v in os.environ.items() if k not in EXAMPLE_ENV}
    environ.pop("DJANGO_SETTINGS_MODULE", None)
    environ["EXAMPLE_VAR_DIR"] = str(tmp_path / "var")
    result = subprocess.run(
        [sys.executable, "-W", "error", str(ROOT / "example_project" / "manage.py"), "check"],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_embedded_defaults_need_no_servers(tmp_path):
    var = tmp_path / "var"
    got = example_settings(var)

    assert got["debug"] is True
    assert got["db_engine"] == "django.db.backends.sqlite3"
    assert got["db_name"] == str(var / "example.sqlite3")
    assert got["broker_url"] == "filesystem://"
    options = got["transport_options"]
    assert options["data_folder_in"] == options["data_folder_out"] == str(var / "broker" / "queue")
    for key in ("data_folder_in", "control_folder", "processed_folder"):
        assert Path(options[key]).is_dir()
    assert got["backend"]["file_path"] == str(var / "outbox")
    assert "backends.filebased" in got["mailer"]["BACKEND"]
    assert got["captured"] is True
    assert "outbox/" in got["routes"]
    assert got["app_settings"] == {
        "FROM_EMAIL": "Back Pain Reports <reports@example.com>",
        "SITE_URL": "http://127.0.0.1:8000",
        "PRIVACY_URL": "/privacy/",
        "TRUSTED_PROXIES": 0,
        "DOUBLE_OPT_IN": False,
        # In development a webhook receiver on this machine may be called (docs, webhooks).
        "WEBHOOK_ALLOWED_NETWORKS": ["127.0.0.0/8", "::1/128"],
    }
    assert got["installed_apps"][-4:] == [
        "crispy_bootstrap5", "backpain_report", "example_project", "benchmarks.devtools",
    ]  # fmt: skip


def test_favicon_privacy_notice_and_sitemap_are_served(tmp_path):
    """The example's /favicon.ico is no 404, its privacy notice exists, /sitemap.xml is routed."""
    code = (
        "import django; django.setup()\n"
        "from django.test import Client\n"
        "from django.urls import resolve\n"
        "client = Client(HTTP_HOST='127.0.0.1')\n"
        "icon = client.get('/favicon.ico')\n"
        "print(icon.status_code, icon.get('Location'))\n"
        "print(client.get('/privacy/').status_code)\n"
        "print(resolve('/sitemap.xml').func.__name__)\n"
    )
    result = run_example(code, tmp_path / "var")
    assert result.returncode == 0, result.stderr
    icon, privacy, sitemap = result.stdout.split("\n")[:3]
    assert icon.split() == ["302", "/static/backpain_report/favicon.svg"]
    assert privacy == "200" and sitemap == "sitemap"


# Which app provides each dev command (None: unknown), then what populating says.
LIST_DEV_COMMANDS = (
    CHECK + "from django.core.management import get_commands, call_command, CommandError\n"
    "print(get_commands().get('backpain_populate'), get_commands().get('backpain_bench'))\n"
)
POPULATE = (
    LIST_DEV_COMMANDS + "try:\n"
    "    call_command('backpain_populate', '--subscribers', '1')\n"
    "except CommandError as exc:\n"
    "    print(exc)\n"
)


def test_dev_tools_are_installed_only_in_development(tmp_path):
    """Docs: backpain_populate and backpain_bench come from benchmarks/devtools/, a dev-only app
    the example installs with DEBUG on or EXAMPLE_DEVTOOLS=1, never from the package."""
    result = run_example(LIST_DEV_COMMANDS, tmp_path / "dev")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["benchmarks.devtools", "benchmarks.devtools"]

    production = {"DJANGO_DEBUG": "0", "SITE_URL": "https://reports.example.org"}
    result = run_example(POPULATE, tmp_path / "prod", **production)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:2] == ["None None", "Unknown command: 'backpain_populate'"]

    result = run_example(POPULATE, tmp_path / "asked", EXAMPLE_DEVTOOLS="1", **production)
    assert result.returncode == 0, result.stderr
    first, refusal = result.stdout.split("\n")[:2]
    assert first.split() == ["benchmarks.devtools", "benchmarks.devtools"]
    assert "DEBUG is off" in refusal and "--i-know-this-is-not-production" in refusal


def test_double_opt_in_is_one_switch_away(tmp_path):
    """Docs: BACKPAIN_DOUBLE_OPT_IN=1 tries the confirmation flow in the example."""
    got = example_settings(tmp_path / "var", BACKPAIN_DOUBLE_OPT_IN="1")
    assert got["app_settings"]["DOUBLE_OPT_IN"] is True


def test_embed_origins_come_from_the_environment(tmp_path):
    """Docs: BACKPAIN_EMBED_ORIGINS (comma-separated) lists the sites that may post the form."""
    assert "EMBED_ORIGINS" not in example_settings(tmp_path / "none")["app_settings"]
    listed = " https://www.example.org, http://127.0.0.2:8001 ,"
    got = example_settings(tmp_path / "var", BACKPAIN_EMBED_ORIGINS=listed)
    assert got["app_settings"]["EMBED_ORIGINS"] == [
        "https://www.example.org",
        "http://127.0.0.2:8001",
    ]


def test_page_max_age_and_a_template_dir_come_from_the_environment(tmp_path):
    """Docs (Production): BACKPAIN_PAGE_MAX_AGE and EXAMPLE_TEMPLATE_DIR, which the Varnish
    tier runs its sites with; unset, the app's default and no folder of the site's own."""
    unset = example_settings(tmp_path / "a")
    assert "PAGE_MAX_AGE" not in unset["app_settings"] and unset["template_dirs"] == []
    templates = tmp_path / "templates"
    got = example_settings(
        tmp_path / "b", BACKPAIN_PAGE_MAX_AGE="3", EXAMPLE_TEMPLATE_DIR=str(templates)
    )
    assert got["app_settings"]["PAGE_MAX_AGE"] == 3
    assert got["template_dirs"] == [str(templates)]


def test_celery_settings_the_app_needs(tmp_path):
    got = example_settings(tmp_path / "var")
    assert got["acks_late"] is True
    assert got["reject_on_worker_lost"] is True
    assert got["prefetch"] == 1
    assert got["max_tasks_per_child"] == 100
    assert got["ignore_result"] is True
    assert got["retry_on_startup"] is True
    assert ["backpain_report.sweep_deliveries", 60.0] in got["beat_schedule"].values()


def test_dev_secret_key_is_generated_once(tmp_path):
    var = tmp_path / "var"
    first = example_settings(var)["secret_key"]
    assert len(first) >= 50
    assert (var / "secret_key").read_text().strip() == first
    assert example_settings(var)["secret_key"] == first


def test_environment_switches_to_real_services(tmp_path):
    var = tmp_path / "var"
    got = example_settings(
        var,
        DATABASE_URL="postgres://bp:pw@db.internal:5432/backpain",
        CELERY_BROKER_URL="redis://cache.internal:6379/1",
        EMAIL_HOST="smtp.internal",
        EMAIL_PORT="2525",
        SITE_URL="https://reports.example.org",
        DJANGO_SECRET_KEY="from-the-environment",
        DJANGO_DEBUG="0",
        ALLOWED_HOSTS="reports.example.org, www.example.org",
    )
    assert got["db_engine"] == "django.db.backends.postgresql"
    assert (got["db_host"], got["db_name"]) == ("db.internal", "backpain")
    assert got["broker_url"] == "redis://cache.internal:6379/1"
    assert got["transport_options"] == {"visibility_timeout": 3600}
    assert "backends.smtp" in got["mailer"]["BACKEND"]
    assert got["backend"]["host"] == "smtp.internal"
    assert got["backend"]["port"] == 2525
    assert got["backend"]["timeout"] == 10  # EMAIL_TIMEOUT's default
    assert got["debug"] is False
    assert got["allowed_hosts"] == ["reports.example.org", "www.example.org"]
    assert got["secret_key"] == "from-the-environment"
    assert not (var / "secret_key").exists()
    assert got["app_settings"]["SITE_URL"] == "https://reports.example.org"
    assert got["captured"] is False
    assert "outbox/" not in got["routes"]  # neither DEBUG nor captured mail
    assert "benchmarks.devtools" not in got["installed_apps"]  # the dev tools: DEBUG only


def test_amqp_broker_and_smtp_timeout(tmp_path):
    got = example_settings(
        tmp_path / "var",
        CELERY_BROKER_URL="amqp://guest:guest@mq.internal:5672//",
        EMAIL_HOST="smtp.internal",
        EMAIL_TIMEOUT="3.5",
    )
    assert got["broker_url"].startswith("amqp://")
    assert got["transport_options"] == {}
    assert got["backend"]["timeout"] == 3.5
    assert got["backend"]["port"] == 25
    assert "outbox/" in got["routes"]  # DEBUG is still on


def _service_url(variable: str) -> str:
    url = os.environ.get(variable)
    if not url:
        if os.environ.get("BACKPAIN_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{variable} is not set and BACKPAIN_REQUIRE_SERVICES=1")
        pytest.skip(f"set {variable} to run this test")
    return url


@pytest.mark.services
def test_example_site_on_postgresql(tmp_path):
    url = _service_url("BACKPAIN_TEST_POSTGRES_URL")
    code = (
        "import django; django.setup(); from django.db import connection; "
        "connection.ensure_connection(); print(connection.vendor)"
    )
    result = run_example(code, tmp_path / "var", DATABASE_URL=url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "postgresql"


@pytest.mark.services
@pytest.mark.parametrize("variable", ["BACKPAIN_TEST_REDIS_URL", "BACKPAIN_TEST_AMQP_URL"])
def test_example_celery_app_reaches_the_broker(tmp_path, variable):
    url = _service_url(variable)
    code = (
        "import django; django.setup(); from example_project.celery import app\n"
        "with app.connection_for_write() as conn:\n"
        "    conn.ensure_connection(max_retries=1); print(conn.transport.driver_type)\n"
    )
    result = run_example(code, tmp_path / "var", CELERY_BROKER_URL=url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == url.split(":", 1)[0]


# --- The outbox page ----------------------------------------------------------------------


def _import_outbox():
    """Import example_project.outbox without making its Celery app the current one here."""
    previous = celery_state._tls.current_app, celery_state.default_app
    try:
        return importlib.import_module("example_project.outbox")
    finally:
        celery_state._tls.current_app, celery_state.default_app = previous


outbox = _import_outbox()

urlpatterns = [path("outbox/", include("example_project.outbox"))]

PDF = b"%PDF-1.7\n% a tiny stand-in for the report\n%%EOF\n"


def _templates() -> list[dict]:
    templates = [dict(engine) for engine in settings.TEMPLATES]
    templates[0]["DIRS"] = [*templates[0]["DIRS"], ROOT / "example_project" / "templates"]
    return templates


def _write_mail(directory: Path, *messages: EmailMultiAlternatives) -> Path:
    """Send ``messages`` through Django's file-based backend into ``directory``."""
    backend = "django.core.mail.backends.filebased.EmailBackend"
    if django.VERSION >= (6, 1):
        mailers = {"files": {"BACKEND": backend, "OPTIONS": {"file_path": str(directory)}}}
        with override_settings(MAILERS=mailers), mail.mailers["files"] as connection:
            connection.send_messages(list(messages))
    else:
        with mail.get_connection(backend, file_path=str(directory)) as connection:
            connection.send_messages(list(messages))
    (written,) = directory.glob("*.log")
    return written


def _message(subject: str = "Your free back pain report") -> EmailMultiAlternatives:
    message = EmailMultiAlternatives(
        subject=subject,
        body="Hello Ann,\n\nYour report is attached.\nhttps://reports.example.com/u/abc/\n",
        from_email="Back Pain Reports <reports@example.com>",
        to=["Ann Reader <ann@example.com>"],
        headers={"List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
    )
    message.attach_alternative("<p>Hello <b>Ann</b></p><script>alert('x')</script>", "text/html")
    message.attach("back-pain-report.pdf", PDF, "application/pdf")
    return message


@pytest.fixture
def outbox_dir(tmp_path):
    directory = tmp_path / "outbox"
    directory.mkdir()
    with override_settings(
        ROOT_URLCONF=__name__,
        TEMPLATES=_templates(),
        EXAMPLE_OUTBOX_DIR=directory,
        EXAMPLE_MAIL_CAPTURED=True,
    ):
        yield directory


def test_parses_every_message_of_a_file(outbox_dir):
    log = _write_mail(outbox_dir, _message("First"), _message("Second"))
    found = outbox.summaries(outbox_dir)
    assert [(s.name, s.index) for s in found] == [(log.name, 1), (log.name, 0)]
    assert {s.subject for s in found} == {"First", "Second"}
    assert found[0].to == "Ann Reader <ann@example.com>"

    message = outbox.parse(outbox.read_raw(outbox_dir, log.name, 0))
    text, html = outbox.bodies(message)
    assert "Your report is attached." in text.get_content()
    assert "<b>Ann</b>" in html.get_content()
    (attachment,) = outbox.attachments(message)
    assert (attachment.filename, attachment.content_type) == (
        "back-pain-report.pdf",
        "application/pdf",
    )
    assert outbox.leaf_parts(message)[attachment.part].get_payload(decode=True) == PDF


def test_list_and_detail_pages(client, outbox_dir):
    log = _write_mail(outbox_dir, _message("Report for <Ann>"))

    listing = client.get("/outbox/")
    assert listing.status_code == 200
    assert b"Report for &lt;Ann&gt;" in listing.content
    assert b"ann@example.com" in listing.content
    detail_url = f"/outbox/{log.name}/0/"
    assert detail_url.encode() in listing.content

    detail = client.get(detail_url)
    assert detail.status_code == 200
    body = detail.content.decode()
    assert "List-Unsubscribe-Post" in body
    assert "Your report is attached." in body
    assert 'href="https://reports.example.com/u/abc/"' in body  # links in the text are live
    assert f'src="/outbox/{log.name}/0/html/"' in body
    assert "sandbox=" in body
    assert "<script>alert" not in body  # the HTML body only ever appears inside the iframe
    assert "back-pain-report.pdf" in body


def test_html_body_is_served_sandboxed(client, outbox_dir):
    log = _write_mail(outbox_dir, _message())
    response = client.get(f"/outbox/{log.name}/0/html/")
    assert response.status_code == 200
    assert b"<b>Ann</b>" in response.content
    csp = response["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "sandbox" in csp
    assert "script-src" not in csp
    assert response["X-Content-Type-Options"] == "nosniff"


def test_pdf_attachment_opens_inline_or_downloads(client, outbox_dir):
    log = _write_mail(outbox_dir, _message())
    message = outbox.parse(outbox.read_raw(outbox_dir, log.name, 0))
    (attachment,) = outbox.attachments(message)
    url = f"/outbox/{log.name}/0/part/{attachment.part}/"

    inline = client.get(url)
    assert inline.status_code == 200
    assert inline["Content-Type"] == "application/pdf"
    assert inline["Content-Disposition"].startswith("inline")
    assert "back-pain-report.pdf" in inline["Content-Disposition"]
    assert inline.content == PDF

    download = client.get(url, {"download": "1"})
    assert download["Content-Disposition"].startswith("attachment")
    assert download.content == PDF


def test_source_view(client, outbox_dir):
    log = _write_mail(outbox_dir, _message())
    response = client.get(f"/outbox/{log.name}/0/source/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert b"Subject: Your free back pain report" in response.content


@pytest.mark.parametrize(
    "url",
    [
        "/outbox/..%2F..%2Fsecret_key/0/",
        "/outbox/%2E%2E/0/",
        "/outbox/linked.log/0/",  # a symlink in the folder
        "/outbox/missing.log/0/",
        "/outbox/{log}/1/",  # past the last message
        "/outbox/{log}/0/part/0/",  # a body, not an attachment
        "/outbox/{log}/0/part/99/",
    ],
)
def test_unknown_or_unsafe_names_are_not_found(client, outbox_dir, tmp_path, url):
    log = _write_mail(outbox_dir, _message())
    (tmp_path / "secret_key").write_text("do not serve")
    (outbox_dir / "linked.log").symlink_to(tmp_path / "secret_key")
    response = client.get(url.format(log=log.name))
    assert response.status_code == 404
    assert b"do not serve" not in response.content


def test_outbox_is_hidden_outside_development(client, outbox_dir):
    log = _write_mail(outbox_dir, _message())
    with override_settings(DEBUG=False, EXAMPLE_MAIL_CAPTURED=False):
        assert client.get("/outbox/").status_code == 404
        assert client.get(f"/outbox/{log.name}/0/").status_code == 404


def test_empty_outbox(client, outbox_dir):
    response = client.get("/outbox/")
    assert response.status_code == 200
    assert b"No mail yet" in response.content


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        ("127.0.0.1:8000", ("127.0.0.1", "8000")),
        (":8001", ("127.0.0.1", "8001")),
        ("::1:8000", ("[::1]", "8000")),  # make example HOST=::1
        ("[::1]:8000", ("[::1]", "8000")),
        (":::9000", ("[::]", "9000")),  # HOST=:: (every interface)
        ("0.0.0.0:08080", ("0.0.0.0", "8080")),
    ],
)
def test_run_py_reads_host_and_port_as_make_example_passes_them(addr, expected):
    """Attack (issue 14): HOST=::1 gave runserver "::1:8000", which it refuses."""
    run = importlib.import_module("example_project.run")
    assert run.addr_parse(addr) == expected
    assert run.site_url_for(*expected).startswith("http://")


@pytest.mark.parametrize(
    ("addr", "problem"),
    [
        ("127.0.0.1:abc", "PORT"),
        ("127.0.0.1:", "PORT"),
        ("127.0.0.1:0", "PORT"),
        ("127.0.0.1:70000", "PORT"),
        ("127.0.0.1:\uff18\uff10\uff10\uff10", "PORT"),  # full-width digits
        ("my host:8000", "HOST"),
        ("[]:8000", "HOST"),
    ],
)
def test_run_py_refuses_a_bad_port_or_host_before_starting_anything(monkeypatch, addr, problem):
    """Attack (issue 14): PORT=abc started the web server and the worker, then died on
    int("abc") with a traceback, leaving the worker (its own session) running."""
    run = importlib.import_module("example_project.run")

    def no_process(*args, **kwargs):
        raise AssertionError("a process was started")

    monkeypatch.setattr(run.subprocess, "Popen", no_process)
    with pytest.raises(SystemExit, match=problem):
        run.serve(addr, beat=False)


def test_the_example_with_debug_off_serves_its_static_files_without_collectstatic(tmp_path):
    """Attack (issue 14): ``DJANGO_DEBUG=0 make example`` served every page without its CSS and
    JavaScript (404): ``run.py setup`` runs no ``collectstatic`` and WhiteNoise looked only in
    the empty ``STATIC_ROOT``."""
    production = {
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "x" * 50,
        "SITE_URL": "http://127.0.0.1:8000",
        "ALLOWED_HOSTS": "testserver",
    }
    code = (
        "import django; django.setup(); from django.test import Client; "
        "print(Client().get('/static/backpain_report/css/backpain_report.css').status_code)"
    )
    result = run_example(code, tmp_path / "var", **production)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "200"


def test_example_log_sweeps_keeps_celerys_lines_about_each_sweep(tmp_path):
    """Issue 23: the example hides Celery's lines about each sweep run; EXAMPLE_LOG_SWEEPS=1
    (the multi-host tier, which counts the runs) keeps them."""
    code = (
        "import django, json; from django.conf import settings; django.setup(); "
        "print(json.dumps({name: settings.LOGGING['loggers'][name]['filters'] for name in "
        "('celery.beat', 'celery.worker.strategy', 'celery.app.trace')}))"
    )
    quiet = run_example(code, tmp_path / "quiet")
    assert quiet.returncode == 0, quiet.stderr
    assert set(map(tuple, json.loads(quiet.stdout).values())) == {("sweep_runs_hidden",)}
    kept = run_example(code, tmp_path / "kept", EXAMPLE_LOG_SWEEPS="1")
    assert kept.returncode == 0, kept.stderr
    assert set(map(tuple, json.loads(kept.stdout).values())) == {()}
