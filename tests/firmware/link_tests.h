// Host tests of camserver_link.h and the quality guard, included by logic_test.cpp (CHECK, passed, failed).
// Every timer runs from just before and just after millis() = 2^31 (24.8 days) and 2^32 (the wrap at
// 49.7 days), also when the timer was last set at boot.
#pragma once

// Uptimes to start from: each run lasts minutes and so crosses the boundary it starts near.
static const uint32_t UPTIMES[] = {
    5000u,                  // just booted
    0x80000000u - 20000u,   // 2^31 - 20 s: crosses 2^31
    0x80000000u + 1000u,    // 2^31 + 1 s: the uptime of the lost camera
    0xFFFFFFFFu - 20000u,   // 2^32 - 20 s: crosses the wrap
    0xFFFFFFFFu - 500u,     // 0.5 s before the wrap
};

static void test_every_timer_at_any_uptime() {
  for (uint32_t t0 : UPTIMES) {
    // A Timer is always set: one never started is due at the first look, whenever that is.
    camlogic::Timer never_started;
    CHECK(never_started.due(t0));
    camlogic::Timer t;
    t.start(t0, 5000);
    CHECK(!t.due(t0 + 4999) && t.left_ms(t0 + 4999) == 1);
    CHECK(t.due(t0 + 5000) && t.left_ms(t0 + 5000) == 0);
    CHECK(t.due(t0 + 5000 + 0x90000000u));  // latched: still due 28 days later

    // WebSocket link, connected at boot and never scheduled since: WiFi (or an update) drops it at t0.
    // The case: next_connect_ms was 0 from boot, so at 2^31 + 1 s nothing was due for 24.8 days.
    camlogic::WsLink link;
    CHECK(link.due(1000));  // boot: the first attempt at once
    link.connected();
    CHECK(!link.due(t0));   // open: nothing to do
    link.dropped(t0);
    CHECK(link.due(t0));    // due at once, WiFi permitting
    CHECK(link.due(t0 + 10000));
    // ... and closed by the server: due within the backoff, and still due later
    link.connected();
    uint32_t delay = link.closed(t0, 0xFFFFFFFFu);
    CHECK(delay > 0 && delay <= 500);
    CHECK(!link.due(t0 + delay - 1) && link.due(t0 + delay) && link.due(t0 + delay + 0x80000000u));
    // ... and every failed attempt after it, up to the cap, across the boundary
    uint32_t now = t0 + delay;
    for (int i = 0; i < 12; i++) {
      uint32_t d = link.connect_failed(now, 0xFFFFFFFFu);
      CHECK(d <= 30000);
      CHECK(!link.due(now + d - 1));
      CHECK(link.due(now + d));
      now += d;
    }

    // Frame pacing: 10 fps on every second, across the boundary.
    camlogic::FramePacer pacer(10);
    int frames = 0;
    for (uint32_t e = 0; e < 40000; e++) frames += pacer.due(t0 + e);
    CHECK(frames == 400);

    // Status every 5 s (the sketch restarts the timer at every status).
    camlogic::Timer status;
    status.start(t0, 5000);
    int statuses = 0;
    for (uint32_t e = 0; e <= 40000; e += 10) {
      if (status.due(t0 + e)) {
        statuses++;
        status.start(t0 + e, 5000);
      }
    }
    CHECK(statuses == 8);

    // Ping every 2 s after the connection opens, pong deadline 8 s after a ping.
    camlogic::SendLedger ledger;
    ledger.opened(t0);
    CHECK(!ledger.ping_due(t0 + 1999) && ledger.ping_due(t0 + 2000));
    ledger.pinged(t0 + 2000);
    CHECK(!ledger.ping_due(t0 + 5000));  // one ping at a time
    CHECK(!ledger.dead(t0 + 2000 + 7999) && ledger.dead(t0 + 2000 + 8000));
    ledger.opened(t0);
    ledger.pinged(t0 + 2000);
    ledger.ponged(t0 + 2050);
    CHECK(!ledger.dead(t0 + 30000));
    CHECK(!ledger.ping_due(t0 + 4049) && ledger.ping_due(t0 + 4050));

    // The image's probation: rolled back 300 s after boot, or valid after 60 s of streaming.
    camlogic::Probation idle;
    idle.boot(true, t0);
    CHECK(idle.poll(t0 + 299999) == camlogic::Probation::WAIT);
    CHECK(idle.poll(t0 + 300000) == camlogic::Probation::ROLL_BACK);
    camlogic::Probation streams;
    streams.boot(true, t0);
    for (uint32_t e = 2000; e <= 70000; e += 2000) streams.confirmed(t0 + e, 20);
    CHECK(streams.poll(t0 + 70000) == camlogic::Probation::MARK_VALID);

    // The restart guard (no restart within a minute of booting), and the camera's re-initialisation.
    camlogic::Timer guard;
    guard.start(t0, 60000);
    CHECK(!guard.due(t0 + 59999) && guard.due(t0 + 60000));
    camlogic::Timer reinit;
    reinit.start(t0, 2000);
    CHECK(!reinit.due(t0 + 1999) && reinit.due(t0 + 2000));
  }
}

// The WiFi backstop: never sooner than 5 s after the loss or the try before (association plus DHCP take
// 2 to 6 s, and a new begin() aborts one in progress), rising to at most 30 s apart, at any uptime.
static void test_wifi_retries_are_spaced_and_capped() {
  for (uint32_t t0 : UPTIMES) {
    for (uint32_t random : {0u, 12345u, 0xFFFFFFFFu}) {
      camlogic::WifiKeeper wifi;
      int tries = 0;
      uint32_t last = t0;
      uint32_t shortest = 0xFFFFFFFFu, longest = 0;
      for (uint32_t e = 0; e <= 600000; e += 10) {  // ten minutes down, a loop every 10 ms
        uint32_t now = t0 + e;
        if (wifi.down(now, random)) {
          uint32_t gap = now - last;
          if (gap < shortest) shortest = gap;
          if (gap > longest) longest = gap;
          tries++;
          last = now;
        }
      }
      CHECK(tries >= 20);  // ten minutes at most 30 s apart
      CHECK(shortest >= 5000);
      CHECK(longest <= 30000 + 10);
      CHECK(wifi.down_for_ms(t0 + 600000) == 600000);  // the give-up clock works at any uptime
      CHECK(wifi.up());
      CHECK(!wifi.up());
      CHECK(wifi.down_for_ms(t0 + 610000) == 0);
      CHECK(!wifi.down(t0 + 610000, random));  // a new loss: the core tries first
      CHECK(!wifi.down(t0 + 614990, random));
    }
  }
}

// The status's frames_sent counts frames a pong proved the server received; the rest are in flight,
// and lost when the connection ends before a pong covers them.
static void test_send_ledger_counts_what_the_server_has() {
  camlogic::SendLedger l;
  l.opened(0);
  for (int i = 0; i < 20; i++) l.sent();
  CHECK(l.confirmed == 0 && l.in_flight() == 20);
  l.pinged(2000);
  for (int i = 0; i < 5; i++) l.sent();  // after the ping: not covered by its pong
  CHECK(l.ponged(2040) == 20);
  CHECK(l.confirmed == 20 && l.in_flight() == 5);
  CHECK(l.ponged(2050) == 0);  // an unasked pong confirms nothing more
  l.pinged(4050);
  for (int i = 0; i < 7; i++) l.sent();
  CHECK(l.cut() == 12);  // the connection died: 5 + 7 never confirmed
  CHECK(l.confirmed == 20 && l.unconfirmed == 12 && l.in_flight() == 0);
  CHECK(!l.dead(100000));  // a cut link waits for no pong
  // a new connection starts clean, the totals go on
  l.opened(200000);
  l.sent();
  l.pinged(202000);
  CHECK(l.ponged(202010) == 1 && l.confirmed == 21 && l.unconfirmed == 12);
}

static void test_probation() {
  using camlogic::Probation;
  // USB-flashed or already valid: no probation, never a verdict
  Probation p;
  p.boot(false, 0);
  CHECK(p.poll(10000000) == Probation::WAIT);
  // streams on one connection for 60 s: valid, once
  p.boot(true, 0);
  p.confirmed(10000, 20);
  CHECK(p.poll(69999) == Probation::WAIT);
  p.confirmed(69000, 20);
  CHECK(p.poll(69500) == Probation::WAIT);  // 59 s of streaming
  p.confirmed(70000, 20);
  CHECK(p.poll(70000) == Probation::MARK_VALID);
  CHECK(p.poll(400000) == Probation::WAIT);  // decided: no rollback later
  // connects, but the connection drops every 50 s: never 60 s in one piece, rolled back at 300 s
  p.boot(true, 0);
  for (uint32_t c = 0; c < 300000; c += 50000) {
    for (uint32_t e = 2000; e < 50000; e += 2000) {
      p.confirmed(c + e, 20);
      CHECK(p.poll(c + e) == Probation::WAIT);
    }
    p.link_lost();
  }
  CHECK(p.poll(300000) == Probation::ROLL_BACK);
  CHECK(p.poll(300001) == Probation::WAIT);
  // a slow camera (a frame every 10 s): pongs that confirm nothing do not end the streaming
  p.boot(true, 0);
  for (uint32_t e = 2000; e <= 80000; e += 2000) p.confirmed(e, e % 10000 == 0 ? 1 : 0);
  CHECK(p.poll(80000) == Probation::MARK_VALID);
  // reaches the server but sends no frame (camera dead): rolled back
  p.boot(true, 0);
  for (uint32_t e = 2000; e < 300000; e += 2000) p.confirmed(e, 0);
  CHECK(p.poll(300000) == Probation::ROLL_BACK);
}

// Quality 4 to 10 at UXGA and SXGA overflows the 384,000-byte buffer: the first failure steps to 12,
// and the same setting asked again gets 12 at once.
static void test_quality_guard() {
  camlogic::QualityGuard g;
  int uxga = camlogic::frame_size_index("UXGA"), sxga = camlogic::frame_size_index("SXGA");
  int vga = camlogic::frame_size_index("VGA"), xga = camlogic::frame_size_index("XGA");
  int qvga = camlogic::frame_size_index("QVGA");
  const uint32_t buffer = camlogic::jpeg_buffer_bytes(uxga);  // 384,000: PSRAM, initialised at UXGA
  for (int q = 4; q <= 10; q++) CHECK(g.allowed(uxga, q) == q);  // nothing known yet: as asked
  CHECK(g.capture_failed(uxga, 4, buffer) == 12);
  CHECK(g.allowed(uxga, 4) == 12 && g.allowed(uxga, 10) == 12 && g.allowed(uxga, 15) == 15);
  CHECK(g.allowed(sxga, 4) == 4);  // a smaller size is not held back by a larger one's failure
  CHECK(g.capture_failed(sxga, 6, buffer) == 12);
  CHECK(g.allowed(uxga, 6) == 12);  // a larger size is held back by a smaller one's floor
  CHECK(g.capture_failed(uxga, 12, buffer) == 16);  // 12 still too big (a busy scene): step on
  CHECK(g.allowed(uxga, 4) == 16 && g.allowed(sxga, 4) == 12 && g.allowed(vga, 4) == 4);
  CHECK(g.capture_failed(uxga, 20, buffer) == 24);
  CHECK(g.capture_failed(uxga, 24, buffer) == -1);  // no overflow at 24: the camera itself fails
  CHECK(g.capture_failed(-1, 4, buffer) == -1);
  // VGA frames fit UXGA's buffer at any quality: a failed capture there is no reason to lower the picture
  CHECK(g.capture_failed(vga, 4, buffer) == -1 && g.capture_failed(vga, 12, buffer) == -1);
  CHECK(g.allowed(vga, 12) == 12);
  CHECK(g.capture_failed(xga, 4, buffer) == 12);  // 786,432 pixels in 384,000 bytes: it may overflow
  // without PSRAM the buffer is QVGA's own (15,360 bytes): QVGA at quality 4 may overflow it
  camlogic::QualityGuard small;
  CHECK(small.capture_failed(qvga, 4, camlogic::jpeg_buffer_bytes(qvga)) == 12);
}

static void test_status_extras() {
  camlogic::StatusFigures s = {9.5f, 80000, -70, 3, 1200, 2, "UXGA", 12, 8.0f, nullptr, nullptr, 0, nullptr,
                               5, 12, 4, "rolled_back"};
  char out[512];
  CHECK(camlogic::format_status(out, sizeof out, s) > 0);
  CHECK(strstr(out, ",\"frames_sent\":1200,") != nullptr);
  CHECK(strstr(out, ",\"frames_in_flight\":5,\"frames_unconfirmed\":12,\"quality_refused\":4,"
                    "\"ota\":\"rolled_back\"}") != nullptr);
  if (!strstr(out, "\"ota\":\"rolled_back\"}")) fprintf(stderr, "got %s\n", out);
}
