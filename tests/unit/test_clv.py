"""The CLV models reproduce the published CDNOW fits (Fader, Hardie & Lee 2005; Fader & Hardie 2013)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from services.segmentation.clv import fit_bgnbd, fit_gamma_gamma

DATA = Path(__file__).parents[1] / "fixtures" / "cdnow" / "customers.csv"


def cdnow() -> tuple[np.ndarray, ...]:
    with DATA.open() as f:
        rows = list(csv.DictReader(f))
    return tuple(np.array([float(r[k]) for r in rows]) for k in ("x", "t_x", "T", "zbar"))


def test_bgnbd_matches_the_paper() -> None:
    x, t_x, T, _ = cdnow()
    model = fit_bgnbd(x, t_x, T)
    # Table/figures of Fader, Hardie & Lee (2005): r = 0.243, α = 4.414, a = 0.793, b = 2.426, LL = -9582.4
    assert (model.r, model.alpha, model.a, model.b) == pytest.approx((0.243, 4.414, 0.793, 2.426), abs=0.005)
    assert model.log_likelihood == pytest.approx(-9582.4, abs=0.1)
    # The paper's worked example: a customer with x=2, t_x=30.43, T=38.86 weeks expects 1.226 purchases
    # in the next 39 weeks.
    expected = model.expected_purchases(39, np.array([2.0]), np.array([30.43]), np.array([38.86]))
    assert float(expected[0]) == pytest.approx(1.226, abs=0.005)
    alive = model.p_alive(np.array([0.0, 2.0]), np.array([0.0, 30.43]), np.array([38.86, 38.86]))
    assert float(alive[0]) == 1.0 and 0 < float(alive[1]) < 1


def test_gamma_gamma_matches_the_published_fit() -> None:
    x, _, _, zbar = cdnow()
    model = fit_gamma_gamma(x, zbar)
    # Fader & Hardie (2013), "The Gamma-Gamma Model of Monetary Value": p = 6.25, q = 3.74, γ = 15.44.
    assert (model.p, model.q, model.gamma) == pytest.approx((6.25, 3.74, 15.44), abs=0.02)
    assert model.customers == 946


def test_history_without_dropout_gives_sane_predictions() -> None:
    """Loyal buyers who never stopped and one-off buyers, all spending the same (the integration test's
    shop): the unbounded fit ran off to a ≈ 1e-9, b ≈ 1e9 and predicted negative purchases."""
    for offset in (0.0, 0.1, 0.37, 0.9):  # the run's time of day moves every age a little
        x, t_x, age, zbar = [], [], [], []
        for i in range(12):
            first = 300 - i + offset
            x += [3, 0]
            t_x += [270.0, 0.0]
            age += [first, 400 + i * 3 + offset]
            zbar += [120.0, 0.0]
        xs, txs, ages, zbars = (np.array(v) for v in (x, t_x, age, zbar))
        model = fit_bgnbd(xs, txs, ages)
        spend = fit_gamma_gamma(xs, zbars)
        purchases = model.expected_purchases(365, xs, txs, ages)
        assert np.all(np.isfinite(purchases)) and np.all(purchases > 0)
        assert purchases[0] > purchases[1]  # the loyal buyer beats the one-off buyer
        assert np.all((model.p_alive(xs, txs, ages) > 0) & (model.p_alive(xs, txs, ages) <= 1))
        assert spend.expected_spend(xs, zbars, 84.0)[0] == pytest.approx(120.0, rel=1e-3)


def test_expected_spend_when_q_is_below_one() -> None:
    """The posterior mean p(γ + x z̄)/(px + q − 1) stays between prior and observation for q < 1."""
    from services.segmentation.clv import GammaGamma

    model = GammaGamma(p=2.0, q=0.5, gamma=50.0, log_likelihood=0.0, customers=10)
    spend = model.expected_spend(np.array([1.0, 4.0, 0.0]), np.array([100.0, 100.0, 0.0]), 80.0)
    assert spend[0] == pytest.approx(2 * (50 + 100) / 1.5) and spend[1] == pytest.approx(2 * 450 / 7.5)
    assert spend[2] == 80.0  # no repeat purchase and no finite population mean: the shop's mean


def test_a_large_shop_is_fitted_on_a_sample_and_predicted_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above FIT_SAMPLE buyers the models are fitted on a fixed random sample; every buyer is predicted."""
    from types import SimpleNamespace

    from services.segmentation import clv_fits

    monkeypatch.setattr(clv_fits, "FIT_SAMPLE", 300)
    rng = np.random.default_rng(3)
    rows = []
    for i in range(1_000):
        repeat = int(rng.poisson(1.2))
        age = float(rng.uniform(60, 700))
        rows.append(
            SimpleNamespace(
                customer_id=f"cus_{i}",
                x=repeat,
                t_x=float(rng.uniform(0, age)) if repeat else 0.0,
                age=age,
                zbar=float(rng.gamma(3, 40)) if repeat else 0.0,
                mean_spend=float(rng.gamma(3, 40)),
            )
        )
    model, spend, alive, e90, clv = clv_fits._fit(rows)
    assert model.customers == 300 and spend is not None and spend.customers < 300
    assert len(alive) == len(e90) == len(clv) == 1_000
    assert np.all(clv >= 0) and np.all((alive > 0) & (alive <= 1))
    again, *_ = clv_fits._fit(rows)
    assert (again.r, again.alpha, again.a, again.b) == (model.r, model.alpha, model.a, model.b)  # same sample
