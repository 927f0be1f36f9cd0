"""The example consumer in docs/examples/serving_set.py builds the serving set the way the
docs say: latest version wins, older or repeated records dropped, only serving campaigns
with approved creatives, grouped by ad unit."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "serving_set.py"


def load() -> Any:
    spec = importlib.util.spec_from_file_location("serving_set", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["serving_set"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def record(cid: str, version: int, serving: bool, creatives: list[tuple[str, str, str]]) -> bytes:
    data = {
        "campaign_id": cid,
        "version": version,
        "serving": serving,
        "creatives": [{"creative_id": c, "status": s, "ad_unit_id": u} for c, s, u in creatives],
    }
    return json.dumps({"type": "campaign.state", "subject": cid, "data": data}).encode()


def test_the_example_keeps_the_latest_serving_campaigns_by_ad_unit() -> None:
    s = load().ServingSet()
    assert s.apply(record("a", 3, True, [("c1", "APPROVED", "u1"), ("c2", "UNDER_REVIEW", "u1")]))
    assert s.apply(record("b", 2, False, [("c3", "APPROVED", "u2")]))
    assert s.serving == {"a": {"u1": ["c1"]}}
    assert not s.apply(record("a", 3, False, []))  # a repeat of version 3: dropped
    assert not s.apply(record("a", 2, False, []))  # older: dropped
    assert s.apply(record("a", 4, False, [("c1", "APPROVED", "u1")]))  # paused or held
    assert s.apply(record("b", 5, True, [("c3", "APPROVED", "u2"), ("c4", "APPROVED", "u2")]))
    assert s.serving == {"b": {"u2": ["c3", "c4"]}}
    assert not s.apply(None)
