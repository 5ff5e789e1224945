"""Logging where every line caused by a request carries its transaction id.

The transaction id lives in a context variable: asyncio copies the context
into every task a request handler starts, so lines logged from helpers deep
inside the request (and from ``run_in_executor`` work started with
:func:`contextvars.copy_context`) carry the id without passing it around.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
import uuid

txn_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("txn_id", default=None)

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s%(txn_suffix)s"


def set_txn_id(value: str | None) -> contextvars.Token[str | None]:
    return txn_id.set(value)


def get_txn_id() -> str | None:
    return txn_id.get()


def generate_trans_id(suffix: str = "") -> str:
    """Swift's form: ``tx`` + 21 hex chars + ``-`` + hex unix time + suffix."""
    return f"tx{uuid.uuid4().hex[:21]}-{int(time.time()):010x}{suffix}"


class TxnIdFilter(logging.Filter):
    """Adds ``txn_suffix`` (`` (txn: <id>)`` as Swift prints it) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        tid = getattr(record, "txn_id", None) or txn_id.get()
        record.txn_id = tid
        record.txn_suffix = f" (txn: {tid})" if tid else ""
        return True


_configured: set[str] = set()


def get_logger(
    name: str,
    level: str = "INFO",
    log_file: str | None = None,
) -> logging.Logger:
    """A logger named ``name`` writing to stderr (or ``log_file``) with txn ids."""
    logger = logging.getLogger(name)
    logger.setLevel(level.upper())
    if name not in _configured:
        handler: logging.Handler
        if log_file:
            handler = logging.FileHandler(log_file)
        else:
            handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.addFilter(TxnIdFilter())
        logger.addHandler(handler)
        logger.propagate = False
        _configured.add(name)
    return logger


__all__ = [
    "TxnIdFilter",
    "generate_trans_id",
    "get_logger",
    "get_txn_id",
    "set_txn_id",
    "txn_id",
]
