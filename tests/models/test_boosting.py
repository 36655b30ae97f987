"""LightGBM loaded the way the package loads it: without scikit-learn, which stays importable after."""

from __future__ import annotations

import subprocess
import sys


def test_lightgbm_loads_without_scikit_learn_and_scikit_learn_still_imports_after() -> None:
    code = (
        "import sys\n"
        "from funnelmodels.models.boosting import lightgbm\n"
        "lgb = lightgbm()\n"
        "assert 'sklearn' not in sys.modules, 'scikit-learn came with LightGBM'\n"
        "import numpy as np\n"
        "x = np.arange(200.0).reshape(100, 2); y = (x[:, 0] > 100).astype(int)\n"
        "booster = lgb.train({'objective': 'binary', 'verbose': -1, 'min_data_in_leaf': 5}, lgb.Dataset(x, y), 5)\n"
        "assert booster.predict(x[:1])[0] < 0.5 < booster.predict(x[-1:])[0]\n"
        "from sklearn.metrics import roc_auc_score\n"
        "print(roc_auc_score(y, booster.predict(x)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) == 1.0
