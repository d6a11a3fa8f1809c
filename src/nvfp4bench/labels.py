"""How a shape is named in figures, tables and the report: by the layers that have it. Kept apart
from the plots so that the workflow reads the report's labels without importing matplotlib."""

from __future__ import annotations

import pandas as pd


def shape_users(shapes: pd.DataFrame, N: int, K: int) -> str:
    match = shapes[(shapes["N"] == N) & (shapes["K"] == K)]
    return str(match["users"].iloc[0]) if len(match) else ""


def short_users(users: str, limit: int | None = 3) -> str:
    """The layers of a shape without the models' orgs, at most `limit` (None: all) then
    "+n more": "org/Model:layer@tp2; ..." -> "Model:layer@tp2, ..."."""
    names = []
    for user in filter(None, (u.strip() for u in str(users).split(";"))):
        model, _, layer = user.rpartition(":")
        names.append(f"{model.rstrip('/').rsplit('/', 1)[-1]}:{layer}" if model else user)
    limit = len(names) if limit is None else limit
    more = f", +{len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def shape_label(users: str, N: int, K: int) -> str:
    """How a shape is named in figures and the report: its layers, then N x K."""
    layers = short_users(users)
    return f"{layers} ({N}×{K})" if layers else f"{N}×{K}"
