"""A private PostgreSQL database for one test session, created and dropped here."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import sql
from psycopg.rows import dict_row


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` (same server, user and options)."""
    return urlsplit(url)._replace(path="/" + name).geturl()


class Database:
    """``CREATE DATABASE backpain_rs_<random>`` on the server of ``server_url``; query it."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.name = f"backpain_rs_{secrets.token_hex(4)}"
        self.url = with_database(server_url, self.name)

    def create(self) -> None:
        with psycopg.connect(self.server_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))

    def drop(self) -> None:
        with psycopg.connect(self.server_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name))
            )

    def query(self, statement: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict]:
        """Rows of ``statement`` as dicts, on a fresh autocommit connection."""
        with (
            psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn,
            conn.cursor(row_factory=dict_row) as cur,
        ):
            cur.execute(statement, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def deliveries_for(self, emails: Sequence[str]) -> list[dict]:
        """Every delivery of the subscribers with these (canonical) addresses."""
        return self.query(
            """
            SELECT d.id, d.status, d.reason, d.attempts, d.message_id, d.last_error,
                   s.email_canonical AS email, s.name
            FROM backpain_report_delivery d
            JOIN backpain_report_subscriber s ON s.id = d.subscriber_id
            WHERE s.email_canonical = ANY(%s)
            ORDER BY d.id
            """,
            (list(emails),),
        )
