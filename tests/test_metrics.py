"""GET /metrics: Prometheus text that prometheus_client's own parser reads, with counters that move with the frames."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from conftest import FakeDetector, connect_camera, make_jpeg, mjpeg, running_server, wait_for


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_parse_and_move_with_frames(http):
    """Counters per camera rise with frames; gauges show connection and viewers; histograms count batches."""
    async with running_server(FakeDetector(), http={"token": "metrics-token-1"}) as srv:
        async with http.get(f"{srv.http}/metrics") as resp:
            assert resp.status == 401  # the viewer token applies
        auth = {"Authorization": "Bearer metrics-token-1"}
        cam = await connect_camera(srv.ws("yard"))
        for seq in range(1, 6):
            await cam.send(make_jpeg(seq))
            await wait_for(lambda: srv.server.hub.get("yard").frames_processed == seq)
        async with mjpeg(http, f"{srv.http}/cameras/yard/stream.mjpg", headers=auth) as viewer:
            await viewer.next_live()
            async with http.get(f"{srv.http}/metrics", headers=auth) as resp:
                assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain; version=")
                first = samples(await resp.text())
        yard = (("camera", "yard"),)
        assert first[("camserver_viewers", yard)] == 1
        assert first[("camserver_frames_received_total", yard)] == 5
        assert first[("camserver_frames_processed_total", yard)] == 5
        assert first[("camserver_camera_connected", yard)] == 1
        assert first[("camserver_batch_size_count", ())] == 5
        assert first[("camserver_inference_seconds_count", ())] == 5
        assert ("camserver_mqtt_messages_dropped_total", ()) in first and ("camserver_webhook_failures_total", ()) in first
        await cam.send(make_jpeg(6))
        await wait_for(lambda: srv.server.hub.get("yard").frames_processed == 6)
        await cam.close()
        await wait_for(lambda: not srv.server.hub.get("yard").connected)
        await wait_for(lambda: srv.server.viewer_app.viewers_total == 0, what="the viewer gone")
        async with http.get(f"{srv.http}/metrics", headers=auth) as resp:
            second = samples(await resp.text())
        assert second[("camserver_frames_processed_total", yard)] == 6
        assert second[("camserver_camera_connected", yard)] == 0
        assert second[("camserver_viewers", yard)] == 0
