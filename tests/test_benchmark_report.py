"""benchmarks/run.py words a difference its interval does not support as noise: never a negative time, never an absurd ratio.

An earlier version printed "adds 3770519000x less" and negative added times for differences within noise.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("llm_replay_bench_run", RUN)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_an_added_time_whose_interval_holds_zero_prints_as_noise_and_a_negative_one_as_below_the_floor(bench):
    noisy = bench.added_row("added", [-40.0, 5.0, 60.0])
    assert noisy.shown == "within noise" and noisy.median_us >= 0
    below = bench.added_row("added", [-52.0, -50.0, -49.0])
    assert below.shown == "below floor" and below.median_us == 0 and "50 µs less than the floor" in below.note
    clear = bench.added_row("added", [190.0, 200.0, 210.0])
    assert clear.shown is None and clear.median_us == 200 and clear.note == "75% interval 190 µs to 210 µs over 3 rounds"


def test_a_comparison_gives_a_ratio_only_when_both_sides_are_clear_of_noise(bench):
    assert bench.how_much_more([100.0, 110.0, 120.0], [400.0, 420.0, 440.0], "cassetter") == "cassetter adds 3.8x as much as llm_replay"
    assert bench.how_much_more([-1e-3, 0.0, 2e-3], [400.0, 420.0, 440.0], "cassetter") == "llm_replay's added time is within noise; cassetter adds 420 µs"
    assert bench.how_much_more([100.0, 110.0, 120.0], [-5.0, 1.0, 9.0], "cassetter") == "cassetter's added time is within noise"
    assert bench.how_much_more([400.0, 420.0, 440.0], [100.0, 110.0, 120.0], "cassetter") == "llm_replay adds 3.8x as much as cassetter"


def test_the_instruction_count_splits_a_session_into_once_paid_and_per_test_costs(bench, monkeypatch):
    """benchmarks/instructions.py: four counted sessions give back the costs they were made of."""
    spec = importlib.util.spec_from_file_location("llm_replay_bench_instructions", RUN.with_name("instructions.py"))
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "run", bench)  # it imports run.py as ``run``
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    startup, floor_test, once, per_test = 5_000_000_000, 7_000_000, 300_000_000, 1_200_000

    def session(tests: int, ours: bool) -> int:
        return startup + tests * floor_test + (once + (tests - 1) * per_test if ours else 0)

    counts = module.Counts(200, session(1, False), session(1, True), session(200, False), session(200, True))
    assert (counts.once, counts.per_test, counts.floor_per_test) == (once, per_test, floor_test)
    assert counts.added_per_test(1_000) == per_test + once / 1_000
    lines = module.report(counts, speed=1e-10)  # 10 instructions a ns
    assert lines[4].endswith("|        1.500 M |       150 | 1.125x the floor session"), lines[4]  # 1.5e9 over 5e9 + 1,000 x 7e6


def test_a_slower_machine_says_what_its_microseconds_are_at_the_reference_run_s_speed(bench):
    """The µs targets stay checked in this machine's µs; beside them, the figure at the reference run's speed."""
    slow = [bench.Row(bench.FLOOR_SESSION, 2 * bench.REFERENCE_FLOOR_SESSION_US, "1.00x floor")]
    assert bench.at_reference_speed(500.0, slow) == " (~250 µs at the reference run's speed: this machine's floor session took 2.00x its 2.38 s)"
    near = [bench.Row(bench.FLOOR_SESSION, 1.1 * bench.REFERENCE_FLOOR_SESSION_US, "1.00x floor")]
    assert bench.at_reference_speed(500.0, near) == "" and bench.at_reference_speed(500.0, []) == ""


def test_a_target_the_median_s_interval_straddles_is_neither_met_nor_missed(bench):
    """An earlier version printed PASS for "within noise (±554 µs)" against a 300 µs target."""
    assert bench.verdict(bench.added_row("added", [-300.0, 100.0, 800.0]), 300) == "UNSURE"  # within noise
    assert bench.verdict(bench.added_row("added", [150.0, 280.0, 450.0]), 300) == "UNSURE"  # 150 to 450 around 280
    assert bench.verdict(bench.added_row("added", [200.0, 220.0, 240.0]), 300) == "PASS"
    assert bench.verdict(bench.added_row("added", [380.0, 400.0, 420.0]), 300) == "MISS"


def test_the_median_s_interval_narrows_with_rounds_where_half_the_range_would_not(bench):
    """One disturbed round of nine (a neighbour's burst) no longer decides the verdict: the interval of the median of
    nine rounds runs from the 2nd smallest to the 2nd largest (96% confidence), so the outliers fall outside it."""
    rounds = [100.0, 240.0, 250.0, 255.0, 260.0, 265.0, 270.0, 280.0, 900.0]
    assert bench.median_interval(rounds) == (240.0, 280.0, pytest.approx(1 - 20 / 512))
    row = bench.added_row("added", rounds)
    assert row.note == "96% interval 240 µs to 280 µs over 9 rounds" and bench.verdict(row, 300) == "PASS"
    assert bench.verdict(bench.added_row("added", [*rounds[:-1], 310.0, 900.0]), 300) == "UNSURE"  # the 2nd largest is over
    assert bench.median_interval([1.0, 2.0, 3.0]) == (1.0, 3.0, 0.75)  # too few rounds for 95%: the whole range, said so
    assert bench.verdict(bench.added_row("added", [900.0]), 300) == "UNSURE"  # one round (--quick) holds it with 0%


def test_a_target_line_gives_a_noisy_row_no_figure_and_a_clear_one_its_figure_at_the_reference_speed(bench):
    slow = [bench.Row(bench.FLOOR_SESSION, 2 * bench.REFERENCE_FLOOR_SESSION_US, "1.00x floor")]
    assert bench.measured(bench.added_row("added", [-300.0, 100.0, 800.0]), slow) == "within noise (75% interval -300 µs to 800 µs over 3 rounds)"
    clear = bench.measured(bench.added_row("added", [390.0, 400.0, 410.0]), slow)
    assert clear.startswith("400 µs (75% interval 390 µs to 410 µs over 3 rounds) (~200 µs at the reference run's speed"), clear


def test_flat_with_size_compares_the_sizes_paired_ratios_not_their_microseconds(bench):
    """The 02:14 run on 2026-12-08 printed "MISS flat with size: 2.00x": the 100,000-recording row took 1.06 ms against
    528 µs at 10 recordings, while its paired ratio to the floor was 1.27x against 1.06x: the machine had slowed
    between the two rows, which are timed minutes apart."""
    rows = [bench.Row("llm_replay replay, SQLite, 10 interactions", 528.0, "1.06x floor"),
            bench.Row("llm_replay replay, SQLite, 100,000 interactions", 1060.0, "1.27x floor")]
    assert "PASS  flat with size (SQLite, largest / smallest cassette, in paired ratios to the floor): 1.20x" in bench.targets(rows)
    rows[1] = bench.Row("llm_replay replay, SQLite, 100,000 interactions", 600.0, "1.45x floor")
    assert any(line.startswith("MISS  flat with size") for line in bench.targets(rows))
