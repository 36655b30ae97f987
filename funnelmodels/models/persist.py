"""Where and how models are stored: the model folder's layout and each model's JSON file.

Models are saved as JSON (and LightGBM's own text format), never as Python object dumps: a saved
model can be read, diffed and loaded without running code from the file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from funnelmodels.errors import ModelError
from funnelmodels.models.design import FeatureEncoder

__all__ = [
    "read_json",
    "read_model",
    "write_json",
    "write_model",
]


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.floating):
        return _clean(float(value))
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON deterministically (sorted keys, NaN as null)."""
    path.write_text(json.dumps(_clean(dict(data)), indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def write_model(
    folder: Path,
    *,
    kind: str,
    engine: str,
    encoder: FeatureEncoder,
    state: Mapping[str, Any],
    metadata: Mapping[str, Any],
    **extra: Any,
) -> None:
    """Write ``folder/model.json``: the model's kind, engine, encoder, parameters and metadata."""
    write_json(
        folder / "model.json",
        {
            "kind": kind,
            "engine": engine,
            **extra,
            "encoder": encoder.to_json(),
            "state": dict(state),
            "metadata": dict(metadata),
        },
    )


def read_model(folder: Path, *, kind: str, format_version: int) -> dict[str, Any]:
    """Read ``folder/model.json`` and check it holds a ``kind`` model in ``format_version``."""
    data = read_json(folder / "model.json")
    if data.get("kind") != kind:
        raise ModelError(f"{folder} holds a {data.get('kind')!r} model, not a {kind.replace('_', '-')} model.")
    version = data.get("metadata", {}).get("format_version")
    if version != format_version:
        raise ModelError(
            f"{folder} was saved in model format {version}; this funnelmodels reads {format_version}. Retrain it."
        )
    return data


def read_json(path: Path) -> dict[str, Any]:
    """Read a model's JSON file, with a clear error when it is missing or damaged."""
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ModelError(f"{path} is missing: is {path.parent} a model folder written by funnelmodels train?") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path} is not valid JSON ({exc}); the model folder is damaged, retrain it.") from None


