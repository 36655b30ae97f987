"""Where and how models are stored: the model folder's layout and each model's JSON file.

Models are saved as JSON (and LightGBM's own text format), never as Python object dumps: a saved
model can be read, diffed and loaded without running code from the file.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from funnelmodels.errors import ModelError
from funnelmodels.models.design import FeatureEncoder
from funnelmodels.provenance import package_versions

__all__ = [
    "CARD_FILE",
    "METRICS_FILE",
    "MODEL_FILE",
    "ModelStore",
    "booster_file",
    "check_engine",
    "damaged_model",
    "member",
    "model_metadata",
    "read_json",
    "read_model",
    "write_json",
    "write_model",
]


MODEL_FILE = "model.json"
METRICS_FILE = "metrics.json"
CARD_FILE = "model_card.json"


@dataclass(frozen=True)
class ModelStore:
    """The layout of a model folder written by ``funnelmodels train``.

    ``<root>/conversion/<engine>/``, ``<root>/satisfaction/<engine>/`` and ``<root>/close_time/<engine>/``
    hold one model each (:data:`MODEL_FILE` and any booster files); ``<root>/metrics.json`` the training
    summary and ``<root>/forecast.json`` the forecast's backtest.
    """

    root: Path

    def conversion(self, engine: str) -> Path:
        """The folder of the stage-conversion model of ``engine``."""
        return Path(self.root) / "conversion" / engine

    def satisfaction(self, engine: str) -> Path:
        """The folder of the satisfaction model of ``engine``."""
        return Path(self.root) / "satisfaction" / engine

    def close_time(self, engine: str) -> Path:
        """The folder of the close-time (forecast) model of ``engine``."""
        return Path(self.root) / "close_time" / engine

    @property
    def conversion_card(self) -> Path:
        """The stage-conversion model card: metrics with intervals against the baselines, the gate (JSON)."""
        return Path(self.root) / "conversion" / CARD_FILE

    @property
    def satisfaction_card(self) -> Path:
        """The satisfaction model card: metrics with intervals against the naive answer, P(low) calibration (JSON)."""
        return Path(self.root) / "satisfaction" / CARD_FILE

    @property
    def forecast(self) -> Path:
        """The forecast's backtest, calibration and checks (JSON)."""
        return Path(self.root) / "forecast.json"

    @property
    def metrics(self) -> Path:
        """The training summary: splits and test metrics of every model in the folder."""
        return Path(self.root) / METRICS_FILE


def booster_file(key: str | None = None) -> str:
    """The file name of a LightGBM text model in a model's folder (one per ``key`` when there are several)."""
    return "booster.txt" if key is None else f"booster_{key}.txt"


def model_metadata(
    format_version: int,
    *,
    seed: int,
    params: Mapping[str, Any],
    train_rows: int,
    validation_rows: int,
    notes: Sequence[str],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What every saved model records about its making: format, seed, parameters, versions, rows, notes."""
    return {
        "format_version": format_version,
        "seed": seed,
        "params": dict(params),
        "versions": package_versions(),
        "train_rows": train_rows,
        "validation_rows": validation_rows,
        "notes": list(notes),
        **dict(extra or {}),
    }


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
        folder / MODEL_FILE,
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
    data = read_json(folder / MODEL_FILE)
    if data.get("kind") != kind:
        raise ModelError(f"{folder} holds a {data.get('kind')!r} model, not a {kind.replace('_', '-')} model.")
    version = data.get("metadata", {}).get("format_version")
    if version != format_version:
        raise ModelError(
            f"{folder} was saved in model format {version}; this funnelmodels reads {format_version}. Retrain it."
        )
    return data


@contextlib.contextmanager
def damaged_model(folder: Path) -> Iterator[None]:
    """Turn anything a damaged or tampered model folder raises into ``model folder damaged: …``.

    A missing key, a garbage booster, a value of the wrong type: whatever breaks while a model
    is read means the folder is not what ``funnelmodels train`` wrote.
    """
    try:
        yield
    except ModelError:
        raise
    except Exception as exc:
        what = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise ModelError(
            f"model folder damaged: {folder} ({type(exc).__name__}{': ' + what if what else ''}); "
            "retrain it with funnelmodels train."
        ) from None


def member(folder: Path, name: Any) -> Path:
    """The file ``name`` inside a model folder; a name that leads elsewhere is refused."""
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ModelError(f"model folder damaged: {folder} names a file {name!r} outside it; retrain it.")
    return folder / name


def check_engine(folder: Path, found: str, expected: str | None) -> None:
    """Refuse a model of another engine than the folder it was read from should hold."""
    if expected is not None and found != expected:
        raise ModelError(
            f"model folder damaged: {folder} should hold the {expected} model and holds a {found!r} one; retrain it."
        )


def read_json(path: Path) -> dict[str, Any]:
    """Read a model's JSON file, with a clear error when it is missing or damaged."""
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ModelError(f"{path} is missing: is {path.parent} a model folder written by funnelmodels train?") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path} is not valid JSON ({exc}); the model folder is damaged, retrain it.") from None
