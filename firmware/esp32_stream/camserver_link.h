// The firmware's timers and the state of its links (WiFi, WebSocket, the image's probation), as pure
// logic: no Arduino, no ESP-IDF, no allocation. The sketch uses it on the board; tests/firmware runs
// every timer on the host across millis() = 2^31 (24.8 days) and 2^32 (the wrap at 49.7 days).
//
// Every timer is a Timer: a start that is always set (from construction on) and a wait, compared as
// the unsigned time elapsed since the start. That comparison is right at any uptime, across the wrap,
// as long as the timer is looked at at least once every 49.7 days (the sketch looks at each one every
// loop). Once due, a Timer stays due until it is started again, so a timer nobody restarted (the
// reconnect timer of a link that was dropped, not closed) can never turn "not due" again.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace camlogic {

struct Timer {
  uint32_t start_ms;
  uint32_t wait_ms;
  bool fired;

  Timer() : start_ms(0), wait_ms(0), fired(false) {}  // due from the first look on

  void start(uint32_t now_ms, uint32_t wait) {
    start_ms = now_ms;
    wait_ms = wait;
    fired = false;
  }

  // True once wait_ms have passed since start(); stays true until the next start().
  bool due(uint32_t now_ms) {
    if (!fired && (uint32_t)(now_ms - start_ms) >= wait_ms) fired = true;
    return fired;
  }

  uint32_t elapsed_ms(uint32_t now_ms) const { return now_ms - start_ms; }

  // How long until due (0 when due).
  uint32_t left_ms(uint32_t now_ms) const {
    uint32_t e = now_ms - start_ms;
    return (fired || e >= wait_ms) ? 0 : wait_ms - e;
  }
};

// ---------------------------------------------------------------------------------------------
// Reconnect backoff: exponential, capped, with jitter so a room of cameras does not
// reconnect in lockstep after the server restarts.
// ---------------------------------------------------------------------------------------------

struct Backoff {
  uint32_t base_ms;
  uint32_t cap_ms;
  uint32_t attempt;

  Backoff(uint32_t base = 500, uint32_t cap = 30000) : base_ms(base), cap_ms(cap), attempt(0) {}

  // Ceiling of the next delay: base * 2^attempt, at most cap.
  uint32_t ceiling_ms() const {
    uint32_t shift = attempt > 16 ? 16 : attempt;
    uint64_t d = (uint64_t)base_ms << shift;
    return d > cap_ms ? cap_ms : (uint32_t)d;
  }

  // Delay before the next try, in [ceiling/2, ceiling]; random32 is any random number.
  uint32_t next_delay_ms(uint32_t random32) {
    uint32_t ceil = ceiling_ms();
    uint32_t half = ceil / 2;
    uint32_t delay = half + (half ? random32 % (ceil - half + 1) : 0);
    if (attempt < 32) attempt++;
    return delay;
  }

  void reset() { attempt = 0; }
};

// ---------------------------------------------------------------------------------------------
// The WebSocket link: when to (re)connect, and how many reconnects there were.
//
// ArduinoWebsockets fires ConnectionClosed inside a refused connect() (HTTP 401, 503, a slow
// reply) as well as when an open connection closes. Only the second may schedule a retry: the
// failed connect() schedules its own, so a refused attempt advances the backoff once, not twice.
// Every way a link ends schedules the next attempt: closed() and connect_failed() with the backoff,
// dropped() (WiFi lost, an update that failed, no pong) at once.
// ---------------------------------------------------------------------------------------------

struct WsLink {
  Backoff backoff;
  bool open;
  uint32_t connections;  // successful connections since boot
  Timer retry;           // the next connection attempt is due when this is

  explicit WsLink(uint32_t base_ms = 500, uint32_t cap_ms = 30000)
      : backoff(base_ms, cap_ms), open(false), connections(0), retry() {}

  // True when a connection attempt is due at now_ms (at any uptime).
  bool due(uint32_t now_ms) { return !open && retry.due(now_ms); }

  void connected() {
    open = true;
    connections++;
    backoff.reset();
  }

  // connect() returned false. Returns the delay before the next attempt.
  uint32_t connect_failed(uint32_t now_ms, uint32_t random32) {
    open = false;
    return schedule(now_ms, random32);
  }

  // The library reported ConnectionClosed. Returns the delay before the next attempt, or 0 when
  // no connection was open (inside a refused connect()): nothing is scheduled then.
  uint32_t closed(uint32_t now_ms, uint32_t random32) {
    if (!open) return 0;
    open = false;
    return schedule(now_ms, random32);
  }

  // The sketch ends the link itself (WiFi lost, an update failed): the next attempt is due at once,
  // as soon as WiFi is there.
  void dropped(uint32_t now_ms) {
    open = false;
    retry.start(now_ms, 0);
  }

  // The first connection is not a reconnect.
  uint32_t reconnects() const { return connections > 0 ? connections - 1 : 0; }

 private:
  uint32_t schedule(uint32_t now_ms, uint32_t random32) {
    uint32_t delay = backoff.next_delay_ms(random32);
    retry.start(now_ms, delay);
    return delay;
  }
};

// ---------------------------------------------------------------------------------------------
// WiFi recovery. The core's auto-reconnect (WiFi.setAutoReconnect(true)) starts a new attempt
// after each failed one by itself; association plus DHCP take 2 to 6 s, and WiFi.disconnect() +
// WiFi.begin() aborts an attempt in progress. So the sketch's own retries are a backstop: the first
// 5 to 10 s after the loss, then doubling to 15 to 30 s. The cap bounds how late the board notices a
// returning access point when the core has stopped retrying (it does after a disconnect reason outside
// its list, e.g. an access point refusing authentication while it boots). down_for_ms() feeds the
// give-up restart.
// ---------------------------------------------------------------------------------------------

struct WifiKeeper {
  static const uint32_t BASE_MS = 10000;  // first retry in [5 s, 10 s]
  static const uint32_t CAP_MS = 30000;   // then at most [15 s, 30 s] apart
  Backoff backoff;
  bool lost;
  Timer since;     // started when the loss was seen
  Timer next_try;  // the next WiFi.begin()

  WifiKeeper() : backoff(BASE_MS, CAP_MS), lost(false), since(), next_try() {}

  // Called every loop while WiFi is down. Returns true when WiFi.begin() is due now; *delay_ms
  // (if given) gets the wait until the try after it. The first try comes one backoff step after the
  // loss: the core is already trying.
  bool down(uint32_t now_ms, uint32_t random32, uint32_t* delay_ms = nullptr) {
    if (!lost) {
      lost = true;
      since.start(now_ms, 0);
      next_try.start(now_ms, backoff.next_delay_ms(random32));
      return false;
    }
    if (!next_try.due(now_ms)) return false;
    uint32_t delay = backoff.next_delay_ms(random32);
    next_try.start(now_ms, delay);
    if (delay_ms) *delay_ms = delay;
    return true;
  }

  // How long WiFi has been down (0 while up).
  uint32_t down_for_ms(uint32_t now_ms) const { return lost ? since.elapsed_ms(now_ms) : 0; }

  // WiFi is back. Returns true when it had been lost (worth a log line).
  bool up() {
    bool was_lost = lost;
    lost = false;
    backoff.reset();
    return was_lost;
  }
};

// ---------------------------------------------------------------------------------------------
// Frame pacing: at most `fps` frames a second, at any uptime.
// ---------------------------------------------------------------------------------------------

struct FramePacer {
  uint32_t interval_ms;
  uint32_t last_ms;
  bool started;

  explicit FramePacer(float fps = 10.0f) : interval_ms(100), last_ms(0), started(false) { set_fps(fps); }

  void set_fps(float fps) {
    if (!(fps >= 0.1f)) fps = 0.1f;  // also catches NaN
    if (fps > 60.0f) fps = 60.0f;
    interval_ms = (uint32_t)(1000.0f / fps + 0.5f);
  }

  // True when a frame is due at now_ms; marks it sent. Unsigned subtraction handles wrap-around.
  bool due(uint32_t now_ms) {
    if (started && (uint32_t)(now_ms - last_ms) < interval_ms) return false;
    // Keep the cadence when on time; after a stall, restart from now instead of bursting.
    if (started && (uint32_t)(now_ms - last_ms) < 2 * interval_ms) {
      last_ms += interval_ms;
    } else {
      last_ms = now_ms;
    }
    started = true;
    return true;
  }
};

// ---------------------------------------------------------------------------------------------
// Frames the server has for sure. ArduinoWebsockets' sendBinary() returns true whenever the
// connection looks open (0.5.4 never checks the write), so a frame written into a link that is
// already dead counts as sent. The sketch pings the server every PING_EVERY_MS: TCP delivers in
// order, so the pong proves the server received every frame sent before its ping. `confirmed` (the
// status's frames_sent) counts only those; frames after the last answered ping are in flight, and
// are counted as lost when the connection ends before a pong covers them. No pong within
// PONG_WITHIN_MS: the link is dead, and the sketch drops it and reconnects.
// ---------------------------------------------------------------------------------------------

struct SendLedger {
  static const uint32_t PING_EVERY_MS = 2000;
  static const uint32_t PONG_WITHIN_MS = 8000;
  Timer ping_timer;
  Timer pong_deadline;
  bool awaiting_pong;
  uint32_t after_ping;   // frames sent since the outstanding ping (or since the last pong)
  uint32_t before_ping;  // frames sent before the outstanding ping: the pong confirms them
  uint32_t confirmed;    // since boot
  uint32_t unconfirmed;  // since boot: in flight when their connection ended (the server may have some)

  SendLedger()
      : ping_timer(), pong_deadline(), awaiting_pong(false), after_ping(0), before_ping(0), confirmed(0),
        unconfirmed(0) {}

  void opened(uint32_t now_ms) {
    after_ping = before_ping = 0;
    awaiting_pong = false;
    ping_timer.start(now_ms, PING_EVERY_MS);
  }

  void sent() { after_ping++; }

  bool ping_due(uint32_t now_ms) { return !awaiting_pong && ping_timer.due(now_ms); }

  void pinged(uint32_t now_ms) {
    before_ping = after_ping;
    after_ping = 0;
    awaiting_pong = true;
    pong_deadline.start(now_ms, PONG_WITHIN_MS);
  }

  // A pong arrived. Returns how many frames it confirmed.
  uint32_t ponged(uint32_t now_ms) {
    if (!awaiting_pong) return 0;
    uint32_t n = before_ping;
    confirmed += n;
    before_ping = 0;
    awaiting_pong = false;
    ping_timer.start(now_ms, PING_EVERY_MS);
    return n;
  }

  // True when the outstanding ping went unanswered for PONG_WITHIN_MS.
  bool dead(uint32_t now_ms) { return awaiting_pong && pong_deadline.due(now_ms); }

  // The connection ended: what no pong confirmed stays unconfirmed. Returns how many frames that was.
  uint32_t cut() {
    uint32_t n = after_ping + before_ping;
    unconfirmed += n;
    after_ping = before_ping = 0;
    awaiting_pong = false;
    return n;
  }

  uint32_t in_flight() const { return after_ping + before_ping; }
};

// ---------------------------------------------------------------------------------------------
// A new image on probation. The sketch tells the core not to mark a freshly updated image valid
// before setup() (verifyRollbackLater() returns true), so the image stays ESP_OTA_IMG_PENDING_VERIFY
// and any reset boots the previous one. It marks itself valid once it has streamed to the server for
// STREAM_MS (pongs confirming frames all along one connection); if that has not happened
// GIVE_UP_MS after boot, it rolls back itself. The previous image then finds the new one in
// esp_ota_get_last_invalid_partition() and reports "ota": "rolled_back".
// ---------------------------------------------------------------------------------------------

struct Probation {
  static const uint32_t STREAM_MS = 60000;    // confirmed streaming, on one connection
  static const uint32_t GIVE_UP_MS = 300000;  // from boot
  enum Verdict { WAIT, MARK_VALID, ROLL_BACK };
  bool pending;     // the running image is on probation
  bool streaming;   // a pong confirmed frames on the current connection
  bool proven;      // ... and another one did STREAM_MS later
  Timer streamed;   // since the first confirmed frames of the current connection
  Timer give_up;    // since boot

  Probation() : pending(false), streaming(false), proven(false), streamed(), give_up() {}

  void boot(bool pending_verify, uint32_t now_ms) {
    pending = pending_verify;
    streaming = proven = false;
    give_up.start(now_ms, GIVE_UP_MS);
  }

  // A pong confirmed `frames` frames (0: none were sent since the ping before, e.g. at 0.1 fps).
  void confirmed(uint32_t now_ms, uint32_t frames) {
    if (frames == 0) return;
    if (!streaming) {
      streaming = true;
      streamed.start(now_ms, STREAM_MS);
    } else if (streamed.due(now_ms)) {
      proven = true;  // frames confirmed STREAM_MS after the first ones, on the same connection
    }
  }

  void link_lost() { streaming = proven = false; }  // streaming starts over on the next connection

  // Called every loop. MARK_VALID and ROLL_BACK are returned once; the sketch acts on them.
  Verdict poll(uint32_t now_ms) {
    if (!pending) return WAIT;
    if (proven) {
      pending = false;
      return MARK_VALID;
    }
    if (give_up.due(now_ms)) {
      pending = false;
      return ROLL_BACK;
    }
    return WAIT;
  }
};

}  // namespace camlogic
