"""Web-search style queries (as PostgreSQL's ``websearch_to_tsquery('english', …)``) for FTS5.

Words are ANDed, ``or`` between words makes alternatives, ``"quoted words"`` are phrases and a
leading ``-`` excludes a word or phrase. English stop words are dropped outside phrases, as the
``english`` text search configuration does; stemming is FTS5's porter tokenizer. Every term is
quoted, so nothing a user types is read as FTS5 syntax.
"""

from __future__ import annotations

import re

__all__ = ["STOP_WORDS", "TOKENIZER", "fts_query"]

#: The FTS5 tokenizer of ``memories_fts`` (kept here so the query side matches it).
TOKENIZER = "porter unicode61 remove_diacritics 0"

#: The Snowball English stop words (PostgreSQL's ``english.stop``).
_STOP = """
    i me my myself we our ours ourselves you your yours yourself yourselves he him his himself
    she her hers herself it its itself they them their theirs themselves what which who whom
    this that these those am is are was were be been being have has had having do does did
    doing a an the and but if or because as until while of at by for with about against between
    into through during before after above below to from up down in out on off over under again
    further then once here there when where why how all any both each few more most other some
    such no nor not only own same so than too very s t can will just don should now
    """
STOP_WORDS = frozenset(_STOP.split())

_TERM = re.compile(r'(-?)"([^"]*)"?|(\S+)')
_WORD = re.compile(r"[^\W_]+")


def _quote(words: list[str]) -> str:
    return '"' + " ".join(w.replace('"', '""') for w in words) + '"'


def fts_query(text: str) -> str | None:
    """The FTS5 MATCH expression for ``text``, or ``None`` when nothing searchable is left."""
    groups: list[tuple[list[str], list[str]]] = [([], [])]
    for match in _TERM.finditer(text):
        negate, phrase, bare = match.group(1), match.group(2), match.group(3)
        if bare is not None:
            if bare.lower() == "or":
                groups.append(([], []))
                continue
            negate = "-" if bare.startswith("-") else ""
            words = _WORD.findall(bare.lstrip("-").lower())
            if len(words) == 1 and words[0] in STOP_WORDS:
                continue
        else:
            words = _WORD.findall(phrase.lower())
        if not words:
            continue
        positives, negatives = groups[-1]
        (negatives if negate else positives).append(_quote(words))
    alternatives = []
    for positives, negatives in groups:
        if not positives:  # FTS5 cannot express "everything but"; such a group matches nothing
            continue
        expr = "(" + " AND ".join(positives) + ")"
        for neg in negatives:
            expr = f"({expr} NOT {neg})"
        alternatives.append(expr)
    return " OR ".join(alternatives) if alternatives else None
