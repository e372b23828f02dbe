"""/metrics (Prometheus text, admin token), /readyz, with a browser in a room and SIP calls."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.browser import in_meeting, join
from tests.support.gateway import ADMIN_TOKEN, RunningGateway, wait_until
from tests.support.sipp import Sipp

pytestmark = pytest.mark.browser


def scrape(gateway: RunningGateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = httpx.get(gateway.base_url + "/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(answer.text):  # parses, or raises on bad text
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_show_rooms_calls_and_failures(gateway: RunningGateway, open_participant, tmp_path: Path) -> None:
    assert httpx.get(gateway.base_url + "/readyz", timeout=5).status_code == 200
    assert httpx.get(gateway.base_url + "/metrics", timeout=5).status_code == 401  # no token

    anna = join(open_participant, gateway, "demo", "Anna", 440, pin="1234")
    wait_until(lambda: in_meeting(anna), 30, what="Anna in the meeting")
    refused = Sipp(gateway, tmp_path / "gsm", "sdp_no_codec.xml", "demo")
    assert refused.wait().returncode == 0
    calling = Sipp(gateway, tmp_path / "call", "late_offer.xml", "demo")
    wait_until(lambda: scrape(gateway).get(("gateway_sip_calls_active", ())) == 1, 10, what="a call in progress")
    assert calling.wait().returncode == 0

    samples = scrape(gateway)
    assert samples[("gateway_participants", (("kind", "browser"), ("room", "demo")))] == 1
    assert samples[("gateway_sip_call_attempts_total", (("direction", "in"),))] == 2
    failures = {labels: value for (name, labels), value in samples.items() if name == "gateway_sip_call_failures_total"}
    assert failures == {(("reason", "488"),): 1}
    assert samples[("gateway_mixer_ticks_total", (("room", "demo"),))] > 50
    assert ("gateway_mixer_late_ticks_total", (("room", "demo"),)) in samples
    assert 0 <= samples[("gateway_event_loop_lag_seconds", ())] < 1
