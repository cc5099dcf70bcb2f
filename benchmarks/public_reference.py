"""statsforecast's AutoETS and AutoARIMA on the public check series, as JSON for judge_public.py --reference.

Run in a scratch venv with statsforecast (the project never imports it), on the held-out problems
judge_public.py makes (the last H values held out, H and the season length as forecast.py picks them):

    python - <<'EOF'   # in the project's environment: the problems as JSON
    import json, sys; sys.path.insert(0, "benchmarks"); from judge_public import held_out; from pathlib import Path
    json.dump({f"{f.parent.name}/{f.stem}": dict(zip(("history", "actual", "horizon", "period"),
               (lambda h, y, H, m, s: (h.tolist(), y.tolist(), H, m or 1))(*held_out(f))))
               for d in sys.argv[1:] for f in sorted(Path(d).glob("*.csv"))}, open("problems.json", "w"))
    EOF
    /tmp/sfvenv/bin/python benchmarks/public_reference.py problems.json runs/public_reference.json

Season lengths above 24 run without a season (R's ets refuses them; AutoARIMA's seasonal search at 48 or
52 took minutes a series). Each method's point forecast and 80% interval, per series.
"""

import json
import sys
import warnings

import numpy as np


def main() -> None:
    from statsforecast.models import AutoARIMA, AutoETS

    warnings.filterwarnings("ignore")
    problems = json.load(open(sys.argv[1]))
    out = {}
    for name, problem in problems.items():
        y, horizon, m = np.asarray(problem["history"], dtype=float), problem["horizon"], problem["period"]
        season = m if m <= 24 else 1
        made = {}
        for label, model in (("autoets", AutoETS(season_length=season)), ("autoarima", AutoARIMA(season_length=season))):
            try:
                f = model.forecast(y=y, h=horizon, level=[80])
                made[label] = {"mean": f["mean"].tolist(), "lo": f["lo-80"].tolist(), "hi": f["hi-80"].tolist()}
            except Exception as err:  # noqa: BLE001 - a reference that fails is recorded, not fatal
                made[label] = {"error": str(err)[:200]}
        out[name] = made
        print(name, sorted(made), flush=True)
    json.dump(out, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
