"""Translates psycopg errors into engramdb's exception tree at the store boundary."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import errors as pg

from ...errors import (
    BackendError,
    Conflict,
    DimensionMismatch,
    EngramError,
    InvalidInput,
    NotFound,
    Unavailable,
)

__all__ = ["translate_errors"]


@contextmanager
def translate_errors() -> Iterator[None]:
    try:
        yield
    except EngramError:
        raise
    except pg.UniqueViolation as exc:
        raise Conflict(
            "an object with the same unique key already exists",
            details={"constraint": exc.diag.constraint_name},
        ) from exc
    except pg.ForeignKeyViolation as exc:
        raise NotFound(
            "a referenced object does not exist", details={"constraint": exc.diag.constraint_name}
        ) from exc
    except (pg.CheckViolation, pg.NotNullViolation) as exc:
        raise InvalidInput(
            f"value rejected by the database: {exc.diag.message_primary}",
            details={"constraint": exc.diag.constraint_name},
        ) from exc
    except psycopg.DataError as exc:  # SQLSTATE class 22, not only its generic 22000
        message = exc.diag.message_primary or str(exc)
        if "dimensions" in message:
            raise DimensionMismatch(message) from exc
        raise InvalidInput(message) from exc
    except pg.QueryCanceled as exc:
        raise Unavailable("the query took longer than the statement timeout") from exc
    except psycopg.OperationalError as exc:
        raise Unavailable(f"the database is unavailable: {exc}") from exc
    except psycopg.Error as exc:
        raise BackendError(f"database error: {exc}") from exc
