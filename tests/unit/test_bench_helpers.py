"""The benchmark's pure helpers (bench/helpers.py, bench/profile_top.py): no server, no timing."""

from __future__ import annotations

import json
import math
import os
from collections import Counter

import pytest
from bench import helpers as h
from bench.profile_top import library, parse, summarise


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert h.percentile(values, 0) == 10.0
    assert h.percentile(values, 100) == 40.0
    assert h.percentile(values, 50) == 25.0
    assert h.percentile(list(range(1, 101)), 99) == pytest.approx(99.01)
    assert h.percentile([7.0], 99) == 7.0
    assert math.isnan(h.percentile([], 50))
    with pytest.raises(ValueError):
        h.percentile(values, 101)


def test_proc_stat_cpu_counts_fields_after_a_command_name_with_spaces_and_parens() -> None:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    line = "4242 (campaign (worker) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 3"
    assert h.parse_proc_stat_cpu(line, 100) == pytest.approx(3.0)


def test_proc_stat_of_this_process_is_readable_and_grows() -> None:
    if not os.path.exists("/proc/self/stat"):
        pytest.skip("no /proc here")
    before = h.process_cpu_seconds(os.getpid())
    sum(i * i for i in range(300_000))
    assert h.process_cpu_seconds(os.getpid()) >= before
    assert h.process_peak_rss_mib(os.getpid()) > 1


def test_proc_status_value_in_kib() -> None:
    text = "Name:\tpython\nVmPeak:\t  300000 kB\nVmHWM:\t  102400 kB\nThreads:\t4\n"
    assert h.parse_proc_status_kib(text, "VmHWM") == 102400
    with pytest.raises(KeyError):
        h.parse_proc_status_kib(text, "VmSwap")


def test_mix_plan_has_one_sixth_of_each_type_and_sequences_valid_in_any_topic_order() -> None:
    plan = h.mix_plan(50)
    assert len(plan.commands) == 300
    assert Counter(c.type for c in plan.commands) == {t: 50 for t in h.MIX_TYPES}
    assert len(set(plan.ids())) == 300
    by_campaign: dict[str, list[h.Command]] = {}
    for c in plan.commands:
        by_campaign.setdefault(c.campaign_id, []).append(c)
        event = json.loads(c.value)
        assert event["id"] == c.id and event["subject"] == c.campaign_id
        assert event["type"] == c.type and c.key == c.campaign_id.encode()
    submitted, booked = set(plan.submitted), set(plan.booked)
    for cid, cmds in by_campaign.items():
        types = [c.type for c in cmds]
        if cid in submitted:  # set up as SUBMITTED: its one command is the approval
            assert types == ["review.campaign_approved"]
        elif cid in booked:  # set up as BOOKED: pause, resume on one topic; delivery anywhere
            lifecycle = [c for c in cmds if c.topic == "campaign.commands"]
            assert [c.type for c in lifecycle] == ["campaign.pause", "campaign.resume"]
            assert sorted(types) == sorted(
                ["campaign.pause", "campaign.resume", "delivery.reported"]
            )
        else:  # new: create then submit, both on campaign.commands
            assert types == ["campaign.create", "campaign.submit"]
            assert {c.topic for c in cmds} == {"campaign.commands"}


def test_units_for_rounds_to_whole_units() -> None:
    assert h.units_for(20000) == 3333
    assert h.units_for(1) == 1


def test_summary_line_has_the_agreed_shape_and_dashes_for_what_was_not_measured() -> None:
    line = h.summary_line(
        {
            "mix_per_s": 453.2,
            "mix_cpu_us_per_cmd": 2030.4,
            "create_per_s": 547.0,
            "naive_per_s": 63.0,
            "ratio": 7.19,
            "p99_at_1000_ms": 25000.0,
            "due_s": 324.4,
            "rss_mb": 123.2,
        }
    )
    assert line == (
        "bench: mix 453/s, cpu 2030 us/cmd, create 547/s, naive 63/s, ratio 7.2, "
        "p99@1000 25000 ms, due100k 324 s, rss 123 MB"
    )
    assert h.summary_line({"mix_per_s": 1.0}).endswith("due100k - s, rss - MB")


def test_profile_summary_attributes_samples_to_libraries() -> None:
    raw = (
        "<module> (/v/bin/campaign-worker:6);run (/usr/lib/python3.11/asyncio/runners.py:1);"
        "compile (/v/lib/python3.11/site-packages/sqlalchemy/sql/compiler.py:9) 6\n"
        "<module> (/v/bin/campaign-worker:6);run (/usr/lib/python3.11/asyncio/runners.py:1);"
        "handle (/w/src/campaign_worker/service/handlers.py:3) 3\n"
        "<module> (/v/bin/campaign-worker:6);dumps (/usr/lib/python3.11/json/encoder.py:2) 1\n"
        "garbage\n"
    )
    assert len(parse(raw)) == 3
    assert library("/v/lib/python3.11/site-packages/sqlalchemy/sql/compiler.py") == "sqlalchemy"
    assert library("/w/src/campaign_worker/service/handlers.py") == "campaign_worker.service"
    assert library("/usr/lib/python3.11/asyncio/runners.py") == "asyncio"
    text = summarise(raw)
    assert "10 samples" in text
    assert "60.0%  sqlalchemy" in text and "30.0%  campaign_worker.service" in text


def test_state_figures_are_both_runs_and_their_difference() -> None:
    fig = h.state_figures((2000.0, 300.0), (2400.0, 260.0))
    assert fig == {
        "mix_with_state_per_s": 2000.0,
        "mix_with_state_cpu_us_per_cmd": 300.0,
        "mix_no_state_per_s": 2400.0,
        "mix_no_state_cpu_us_per_cmd": 260.0,
        "state_record_cpu_us_per_cmd": 40.0,
    }


def test_state_compare_prints_its_figures_before_an_unchanged_summary_line() -> None:
    from bench.throughput import Run, parse_args, report

    assert parse_args(["--only", "mix", "--state-compare"]).state_compare
    assert not parse_args(["--only", "mix"]).state_compare
    runs = {
        "mix": Run("mix", 1010, 2.0, 0.3, 100.0, first_poll=10),
        h.MIX_NO_STATE: Run(h.MIX_NO_STATE, 1010, 1.0, 0.25, 90.0, first_poll=10),
    }
    text, document = report(runs, [], None, 100_000)
    lines = text.splitlines()
    assert lines[-1] == (
        "bench: mix 500/s, cpu 300 us/cmd, create -/s, naive -/s, ratio -, "
        "p99@1000 - ms, due100k - s, rss 100 MB"
    )
    assert "state_record_cpu_us_per_cmd: 50.0" in lines[:-1]
    assert "mix_no_state_cpu_us_per_cmd: 250.0" in lines[:-1]
    assert "mix_with_state_cpu_us_per_cmd: 300.0" in lines[:-1]
    assert document["figures"]["state_record_cpu_us_per_cmd"] == 50.0
    assert any(line.startswith(h.MIX_NO_STATE) for line in lines)  # its row in the table


def test_workers_figures_give_the_speedup_and_the_spread_of_the_commands() -> None:
    fig = h.workers_figures((1000.0, 300.0), (1500.0, 320.0), [0.4, 0.6])
    assert fig["workers_speedup"] == 1.5
    assert (fig["mix_workers_per_s"], fig["mix_workers_cpu_us_per_cmd"]) == (1500.0, 320.0)
    assert (fig["workers_share_min"], fig["workers_share_max"]) == (0.4, 0.6)
    assert "workers_share_min" not in h.workers_figures((1.0, 1.0), (2.0, 1.0), [])


def test_metric_sum_adds_every_sample_of_one_metric_only() -> None:
    text = (
        "# HELP campaign_worker_messages_total Messages.\n"
        "# TYPE campaign_worker_messages_total counter\n"
        'campaign_worker_messages_total{topic="a",type="x",outcome="applied"} 120.0\n'
        'campaign_worker_messages_total{topic="b",type="y",outcome="rejected"} 3.0\n'
        'campaign_worker_messages_created{topic="a",type="x",outcome="applied"} 1.7e9\n'
        "campaign_worker_messages_total_other 5.0\n"
    )
    assert h.metric_sum(text, "campaign_worker_messages_total") == 123.0
    assert h.metric_sum(text, "campaign_worker_nothing") == 0.0
