"""Weights a canary really reaches, and the analysis math on synthetic Prometheus texts."""

from __future__ import annotations

import math

import pytest

from infraplan.models.config import RolloutBlock, SloGate
from infraplan.plan import weights
from infraplan.rollout import analysis
from infraplan.serving.sglang_client import parse_metrics


# -- weights ---------------------------------------------------------------------------

def test_canary_weights_with_four_replicas_are_what_even_balancing_gives():
    spec = RolloutBlock(strategy="canary", steps=[5, 25, 50, 100])
    real = weights.plan_steps(spec.steps, 4, 4)
    assert [(s.new, s.old) for s in real] == [(1, 4), (1, 4), (4, 4), (4, 0)]
    assert [round(s.share) for s in real] == [20, 20, 50, 100]
    assert weights.describe(spec, 4) == "canary 5% -> 25% -> 50% -> 100% (4 replicas: really 20%, 20%, 50%, 100%)"


def test_weights_never_step_back_and_keep_a_baseline_below_100():
    for n in range(1, 7):
        real = weights.plan_steps([1, 10, 30, 60, 75, 90, 99, 100], n, n)
        shares = [s.share for s in real]
        assert shares == sorted(shares)
        assert all(s.old >= 1 for s in real[:-1]) and real[-1].old == 0
        assert all(1 <= s.new <= n for s in real)


def test_weights_exact_when_reachable_and_above_half_by_removing_old():
    spec = RolloutBlock(strategy="canary", steps=[50, 100])
    assert weights.describe(spec, 2) == "canary 50% -> 100% (2 replicas)"
    (step,) = weights.plan_steps([75], 4, 4)
    assert (step.new, step.old) == (4, 1) and step.share == 80  # 67% or 80%: 80 is closer


@pytest.mark.parametrize("strategy,needle", [("recreate", "capacity drops to zero"), ("rolling", "at least 3 serving"),
                                             ("blue_green", "old set kept 10m")])
def test_describe_other_strategies(strategy, needle):
    spec = RolloutBlock(strategy=strategy, max_unavailable=1, rollback_window="10m")
    assert needle in weights.describe(spec, 4)


# -- histogram_quantile ------------------------------------------------------------------

def test_histogram_quantile_interpolates_like_prometheus():
    inf = math.inf
    # 10 observations: 4 in (0, 0.1], 4 in (0.1, 0.2], 2 in (0.2, 0.4]
    b = [(0.1, 4), (0.2, 8), (0.4, 10), (inf, 10)]
    assert analysis.histogram_quantile(0.5, b) == pytest.approx(0.1 + 0.1 * (5 - 4) / 4)
    assert analysis.histogram_quantile(0.2, b) == pytest.approx(0.05)  # first bucket from 0
    assert analysis.histogram_quantile(0.95, b) == pytest.approx(0.2 + 0.2 * (9.5 - 8) / 2)
    # rank in the +Inf bucket: the highest finite bound
    assert analysis.histogram_quantile(0.99, [(0.1, 1), (inf, 5)]) == 0.1
    assert analysis.histogram_quantile(0.5, [(0.1, 0), (inf, 0)]) is None
    assert analysis.histogram_quantile(0.5, [(0.1, 3)]) is None  # no +Inf bucket


def _text(ttft: dict[float, int], requests: float, aborted: float = 0.0, tokens: float = 0.0) -> str:
    """A SGLang-like exposition: TTFT histogram (non-cumulative counts by bound) and counters."""
    lines = ["# HELP sglang:time_to_first_token_seconds ttft", "# TYPE sglang:time_to_first_token_seconds histogram"]
    cum, total = 0, 0.0
    for le in [0.1, 0.2, 0.4, 0.6, 0.8, 1.0]:
        cum += ttft.get(le, 0)
        total += ttft.get(le, 0) * le
        lines.append(f'sglang:time_to_first_token_seconds_bucket{{le="{le}",model_name="m"}} {cum}')
    lines.append(f'sglang:time_to_first_token_seconds_bucket{{le="+Inf",model_name="m"}} {cum}')
    lines.append(f'sglang:time_to_first_token_seconds_count{{model_name="m"}} {cum}')
    lines.append(f'sglang:time_to_first_token_seconds_sum{{model_name="m"}} {total}')
    for name, v in (("num_requests", requests), ("num_aborted_requests", aborted), ("generation_tokens", tokens)):
        lines += [f"# HELP sglang:{name} c", f"# TYPE sglang:{name} counter", f'sglang:{name}_total{{model_name="m"}} {v}']
    return "\n".join(lines) + "\n"


def test_window_stats_use_only_the_window_and_sum_workers():
    # worker A had 100 fast requests before the window; in it, 10 at <=0.2 s
    a0 = parse_metrics(_text({0.1: 100}, 100))
    a1 = parse_metrics(_text({0.1: 100, 0.2: 10}, 110, aborted=1, tokens=50))
    # worker B restarted during the window (counters reset): 10 new requests at <=0.4 s
    b0 = parse_metrics(_text({0.1: 500}, 500))
    b1 = parse_metrics(_text({0.4: 10}, 10, tokens=50))
    s = analysis.window_stats([a0, b0], [a1, b1], seconds=10.0)
    assert s["requests"] == 20 and s["aborted"] == 1
    assert s["error_rate"] == pytest.approx(0.05)
    # 20 observations: 10 in (0.1, 0.2], 10 in (0.2, 0.4]; p50 = rank 10 -> 0.2 s
    assert s["ttft_p50_ms"] == pytest.approx(200.0)
    assert s["ttft_p95_ms"] == pytest.approx((0.2 + 0.2 * (19 - 10) / 10) * 1000)
    assert s["gen_tokens_per_s"] == pytest.approx(10.0)
    assert s["itl_p95_ms"] is None  # no ITL histogram in these texts


def test_client_errors_raise_the_error_rate():
    s = {"server_error_rate": 0.0, "error_rate": 0.0}
    analysis.add_client_errors(s, sent=40, failed=10)
    assert s["error_rate"] == 0.25 and s["client_error_rate"] == 0.25


def test_judge_relative_and_absolute_gates():
    gates = [SloGate(metric="ttft_p95_ms", max_ratio=1.2), SloGate(metric="error_rate", max=0.01),
             SloGate(metric="e2e_p95_ms", max=500)]
    baseline = {"ttft_p95_ms": 100.0, "error_rate": 0.0, "e2e_p95_ms": 200.0}
    ok = analysis.judge(gates, {"ttft_p95_ms": 119.0, "error_rate": 0.0, "e2e_p95_ms": 300.0}, baseline)
    assert [g.passed for g in ok] == [True, True, True]
    bad = analysis.judge(gates, {"ttft_p95_ms": 130.0, "error_rate": 0.02, "e2e_p95_ms": None}, baseline)
    assert [g.passed for g in bad] == [False, False, False]
    assert bad[0].limit == pytest.approx(120.0) and bad[0].baseline == 100.0
    assert "no data" in bad[2].why
    # a relative gate needs a baseline value
    (nob,) = analysis.judge([SloGate(metric="ttft_p95_ms", max_ratio=2)], {"ttft_p95_ms": 1.0}, {})
    assert not nob.passed and "baseline" in nob.why


def test_canary_and_blue_green_need_a_router(tmp_path):
    from infraplan.errors import ApplyError
    from infraplan.rollout import RolloutContext
    from infraplan.rollout.strategies import run_rollout
    from pydantic import ValidationError

    from infraplan.plan.rollout_checks import check_spec
    from infraplan.rollout.traffic import NoRouter, find_routers
    from infraplan.state import StateStore

    for strategy in ("canary", "blue_green"):
        (err,) = check_spec("fleet.a", RolloutBlock(strategy=strategy), has_router=False)
        assert "no router fronts fleet.a" in err
        assert check_spec("fleet.a", RolloutBlock(strategy=strategy), has_router=True) == []
    assert check_spec("fleet.a", RolloutBlock(strategy="rolling"), has_router=False) == []
    with pytest.raises(ValidationError, match="positive duration"):  # one Duration type, checked at load
        RolloutBlock(strategy="blue_green", rollback_window="soon")
    with StateStore(tmp_path / "s.db") as store:
        store.put("router.gw", kind="router", attributes={"kind": "router", "worker_sets": [["http://x"]]},
                  dependencies=["fleet.b"])
        assert find_routers(store, "fleet.a") == [] and len(find_routers(store, "fleet.b")) == 1
        ctx = RolloutContext(store=store, provider=None, fleet="fleet.a", spec=RolloutBlock(strategy="canary"),
                             changes=[], emit=lambda e: None, resolve=lambda a, u: a, traffic=NoRouter())
        with pytest.raises(ApplyError, match="no router fronts"):
            run_rollout(ctx)


def test_tpot_falls_back_to_inter_token_latency_when_the_server_exports_no_tpot():
    # SGLang 0.5.x: an inter-token latency histogram, no time-per-output-token one
    def itl_text(count: int) -> str:
        name = "sglang:inter_token_latency_seconds"
        rows = [f"# HELP {name} itl", f"# TYPE {name} histogram"]
        rows += [f'{name}_bucket{{le="0.01",model_name="m"}} {count}', f'{name}_bucket{{le="+Inf",model_name="m"}} {count}',
                 f'{name}_count{{model_name="m"}} {count}', f'{name}_sum{{model_name="m"}} {count * 0.005}']
        return "\n".join(rows) + "\n"

    s = analysis.window_stats([parse_metrics(itl_text(0))], [parse_metrics(itl_text(100))], seconds=5.0)
    assert s["itl_p95_ms"] == pytest.approx(9.5)
    assert s["tpot_p95_ms"] == s["itl_p95_ms"]


def _hist_text(name: str, buckets: list[tuple[str, int]], labels: str = 'engine_type="unified",model_name="m"') -> str:
    rows = [f"# HELP {name} h", f"# TYPE {name} histogram"]
    rows += [f'{name}_bucket{{{labels},le="{le}"}} {n}' for le, n in buckets]
    total = buckets[-1][1]
    rows += [f"{name}_count{{{labels}}} {total}", f"{name}_sum{{{labels}}} {total * 0.01}"]
    return "\n".join(rows) + "\n"


def test_tpot_gate_judges_sglang_0_5_23s_request_time_per_output_token():
    """0.5.23 exports the per-request TPOT: the gate reads it, not the inter-token latency beside it."""
    itl, tpot = "sglang:inter_token_latency_seconds", "sglang:request_time_per_output_token_seconds"
    assert analysis.TPOT == tpot
    stream = 'engine_type="unified",is_streaming="true",model_name="m"'

    def text(n: int) -> str:  # gaps all under 10 ms, but each request's mean gap 30-40 ms (a slow tail per request)
        return (_hist_text(itl, [("0.01", n), ("0.04", n), ("+Inf", n)])
                + _hist_text(tpot, [("0.01", 0), ("0.04", n // 10), ("+Inf", n // 10)], stream))

    s = analysis.window_stats([parse_metrics(text(0))], [parse_metrics(text(100))], seconds=5.0)
    assert s["itl_p95_ms"] == pytest.approx(9.5)
    assert s["tpot_p95_ms"] == pytest.approx(10 + 30 * 0.95)  # interpolated in (0.01, 0.04]
    gate = SloGate(metric="tpot_p95_ms", max=20)
    (verdict,) = analysis.judge([gate], s, None)
    assert not verdict.passed and "breaks" in verdict.why


def test_tpot_with_no_finished_request_in_the_window_is_no_data_not_the_inter_token_latency():
    itl, tpot = "sglang:inter_token_latency_seconds", "sglang:request_time_per_output_token_seconds"
    stream = 'engine_type="unified",is_streaming="false",model_name="m"'
    before = _hist_text(itl, [("0.01", 0), ("+Inf", 0)]) + _hist_text(tpot, [("0.04", 5), ("+Inf", 5)], stream)
    after = _hist_text(itl, [("0.01", 50), ("+Inf", 50)]) + _hist_text(tpot, [("0.04", 5), ("+Inf", 5)], stream)
    s = analysis.window_stats([parse_metrics(before)], [parse_metrics(after)], seconds=5.0)
    assert s["itl_p95_ms"] is not None and s["tpot_p95_ms"] is None
