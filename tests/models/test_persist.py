"""Saved models: JSON and LightGBM text, nothing executable, identical scores after loading."""

from __future__ import annotations

import hashlib
import json as _json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from funnelmodels.errors import ModelError
from funnelmodels.models.conversion import StageConversionModel
from funnelmodels.models.satisfaction import SatisfactionModel
from funnelmodels.models.train import ConversionTraining, SatisfactionTraining


def test_saved_models_score_identically_in_a_fresh_process(trained: ConversionTraining, tmp_path: Path) -> None:
    rows = trained.test.head(200)
    rows.write_parquet(tmp_path / "rows.parquet")
    for engine, model in trained.models.items():
        model.save(tmp_path / engine)
        expected = model.predict_proba(rows)
        script = (
            "import sys, numpy as np, polars as pl\n"
            "from funnelmodels.models.conversion import StageConversionModel\n"
            "m = StageConversionModel.load(sys.argv[1])\n"
            "np.save(sys.argv[3], m.predict_proba(pl.read_parquet(sys.argv[2])))\n"
        )
        out = tmp_path / f"{engine}.npy"
        subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / engine), str(tmp_path / "rows.parquet"), str(out)],
            check=True,
            timeout=300,
        )
        assert np.array_equal(np.load(out), expected), engine


def test_no_pickle_in_a_saved_model(trained: ConversionTraining, tmp_path: Path) -> None:
    for engine, model in trained.models.items():
        folder = model.save(tmp_path / engine)
        for path in folder.iterdir():
            data = path.read_bytes()
            assert not data.startswith(b"\x80"), f"{path} looks like a pickle"
            assert b"pickle" not in data.lower() and b"joblib" not in data.lower()
            data.decode("utf-8")  # every file is text


def test_model_files_are_stable_text(trained: ConversionTraining, tmp_path: Path) -> None:
    folder = trained.models["logit"].save(tmp_path / "logit")
    digest = hashlib.sha256((folder / "model.json").read_bytes()).hexdigest()
    again = StageConversionModel.load(folder).save(tmp_path / "again")
    assert hashlib.sha256((again / "model.json").read_bytes()).hexdigest() == digest


def test_loading_the_wrong_kind_of_model_is_refused(trained: ConversionTraining, tmp_path: Path) -> None:

    folder = trained.models["logit"].save(tmp_path / "logit")
    data = _json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(_json.dumps(data | {"kind": "satisfaction"}))
    with pytest.raises(ModelError, match="holds a 'satisfaction' model, not a stage-conversion model"):
        StageConversionModel.load(folder)
    data["metadata"]["format_version"] = 99
    (folder / "model.json").write_text(_json.dumps(data))
    with pytest.raises(ModelError, match="model format 99"):
        StageConversionModel.load(folder)


def test_saved_models_predict_identically_in_a_fresh_process(
    satisfaction: SatisfactionTraining, tmp_path: Path
) -> None:
    rows = satisfaction.test.head(100)
    rows.write_parquet(tmp_path / "rows.parquet")
    for engine, model in satisfaction.models.items():
        folder = model.save(tmp_path / engine)
        assert all(b"pickle" not in p.read_bytes() for p in folder.iterdir())
        script = (
            "import sys, numpy as np, polars as pl\n"
            "from funnelmodels.models.satisfaction import SatisfactionModel\n"
            "m = SatisfactionModel.load(sys.argv[1])\n"
            "np.save(sys.argv[3], m.predict_proba(pl.read_parquet(sys.argv[2])))\n"
        )
        out = tmp_path / f"{engine}.npy"
        subprocess.run(
            [sys.executable, "-c", script, str(folder), str(tmp_path / "rows.parquet"), str(out)],
            check=True,
            timeout=300,
        )
        assert np.array_equal(np.load(out), model.predict_proba(rows)), engine


def _tamper(folder: Path, how: str) -> None:
    model = folder / "model.json"
    data = _json.loads(model.read_text())
    if how == "garbage booster":
        for booster in folder.glob("booster*.txt"):
            booster.write_text("tree\nnot a model\n")
    elif how == "missing key":
        del data["encoder"]
    elif how == "wrong type":
        data["state"] = ["not", "a", "mapping"]
    elif how == "file outside the folder":
        data["state"]["model_files"] = {k: "../escape.txt" for k in data["state"]["model_files"]}
    elif how == "unknown engine":
        data["engine"] = "xgboost"
    model.write_text(_json.dumps(data))


@pytest.mark.parametrize(
    "how", ["garbage booster", "missing key", "wrong type", "file outside the folder", "unknown engine"]
)
def test_a_damaged_model_folder_is_named_damaged(
    how: str, trained: ConversionTraining, satisfaction: SatisfactionTraining, tmp_path: Path
) -> None:
    (tmp_path / "escape.txt").write_text("outside")
    folders = {}
    for engine, model in trained.models.items():
        model.save(folders.setdefault(f"conversion {engine}", tmp_path / "conversion" / engine))
    for engine, smodel in satisfaction.models.items():
        smodel.save(folders.setdefault(f"satisfaction {engine}", tmp_path / "satisfaction" / engine))
    # Where the damage applies: boosters are LightGBM's; only conversion models name their files.
    applies = {
        "garbage booster": ["conversion lightgbm", "satisfaction lightgbm"],
        "file outside the folder": ["conversion lightgbm"],
    }.get(how, list(folders))
    for name in applies:
        _tamper(folders[name], how)
        loader = StageConversionModel.load if name.startswith("conversion") else SatisfactionModel.load
        with pytest.raises(ModelError, match=r"model folder damaged: .*retrain"):
            loader(folders[name])


def test_a_model_of_another_engine_in_a_folder_is_refused(trained: ConversionTraining, tmp_path: Path) -> None:
    trained.models["logit"].save(tmp_path / "lightgbm")
    with pytest.raises(ModelError, match=r"should hold the lightgbm model and holds a 'logit' one"):
        StageConversionModel.load(tmp_path / "lightgbm", engine="lightgbm")
    assert StageConversionModel.load(tmp_path / "lightgbm").engine == "logit"
