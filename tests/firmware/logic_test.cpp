// Host tests of firmware/esp32_stream/camserver_logic.h, built with g++ by tests/test_firmware.py.
// Prints "N passed, M failed"; with the argument "frame-sizes" prints the frame size table as JSON,
// with "settings" the settings table, the quality and fps ranges and the OTA slot size.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <initializer_list>

#include "camserver_logic.h"
#include "camserver_messages.h"

static int passed = 0, failed = 0;
#define CHECK(cond)                                                 \
  do {                                                              \
    if (cond) {                                                     \
      passed++;                                                     \
    } else {                                                        \
      failed++;                                                     \
      fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
    }                                                               \
  } while (0)

static void test_camera_id_and_path() {
  char path[48];
  CHECK(camlogic::build_ws_path("esp32cam-1", path, sizeof path));
  CHECK(strcmp(path, "/ws/esp32cam-1") == 0);
  CHECK(camlogic::valid_camera_id("A_b-9"));
  CHECK(!camlogic::valid_camera_id(""));
  CHECK(!camlogic::valid_camera_id("has space"));
  CHECK(!camlogic::valid_camera_id("slash/no"));
  CHECK(!camlogic::valid_camera_id("x23456789012345678901234567890123"));  // 33 chars
  CHECK(camlogic::valid_camera_id("x2345678901234567890123456789012"));    // 32 chars
  CHECK(!camlogic::build_ws_path("bad id", path, sizeof path));
  char tiny[6];
  CHECK(!camlogic::build_ws_path("longer", tiny, sizeof tiny));  // no room: refused, not truncated
}

static void test_auth_header() {
  char h[64];
  CHECK(camlogic::build_auth_header("s3cret", h, sizeof h));
  CHECK(strcmp(h, "Bearer s3cret") == 0);
  CHECK(!camlogic::build_auth_header("", h, sizeof h));
  CHECK(h[0] == '\0');
  char small[8];
  CHECK(!camlogic::build_auth_header("much-too-long", small, sizeof small));
  CHECK(small[0] == '\0');
}

static void test_server_host_by_address_or_name() {
  camlogic::ServerHost h;
  CHECK(h.init("192.168.1.10", ""));
  CHECK(!h.uses_mdns() && !h.lookup_due());
  CHECK(strcmp(h.connect_host(), "192.168.1.10") == 0);
  CHECK(!h.connect_failed() && !h.connect_failed());  // an address is never forgotten
  CHECK(strcmp(h.connect_host(), "192.168.1.10") == 0);
  CHECK(h.init("nas.lan", nullptr));  // a DNS name the router knows: used as it is
  CHECK(!h.uses_mdns() && strcmp(h.connect_host(), "nas.lan") == 0);
  CHECK(!camlogic::is_mdns_name("printer.local.lan"));
  CHECK(!camlogic::is_mdns_name(".local"));
  CHECK(!camlogic::is_mdns_name("local"));
  CHECK(camlogic::is_mdns_name("x.local"));
  CHECK(camlogic::is_mdns_name("CamServer.LOCAL"));
  CHECK(!h.init("", ""));
  CHECK(!h.init(nullptr, ""));
  char long_name[80];
  memset(long_name, 'a', sizeof long_name - 1);
  long_name[sizeof long_name - 1] = '\0';
  CHECK(!h.init(long_name, ""));  // too long: refused, never cut
}

static void test_server_host_over_mdns() {
  camlogic::ServerHost h;
  CHECK(h.init("CamServer.local", ""));
  CHECK(h.uses_mdns() && strcmp(h.query, "CamServer") == 0);  // what MDNS.queryHost takes
  CHECK(h.lookup_due());
  CHECK(h.connect_host() == nullptr);  // nothing to connect to before the name is found
  CHECK(!h.looked_up(0, 0, 0, 0));     // queryHost's answer on a timeout
  CHECK(h.lookup_due() && h.connect_host() == nullptr && h.lookups_failed == 1);
  CHECK(h.looked_up(192, 168, 1, 20));
  CHECK(!h.lookup_due() && strcmp(h.connect_host(), "192.168.1.20") == 0 && h.lookups_failed == 0);
  CHECK(!h.connect_failed());  // one failure: the server may be restarting; same address
  h.connected();
  CHECK(!h.connect_failed());  // a success in between: the count starts again
  CHECK(h.connect_failed());   // two in a row: the address is forgotten
  CHECK(h.lookup_due() && h.connect_host() == nullptr);
  CHECK(h.looked_up(10, 0, 0, 255));
  CHECK(strcmp(h.connect_host(), "10.0.0.255") == 0 && h.lookups == 3);
  CHECK(h.looked_up(255, 255, 255, 254));
  CHECK(strcmp(h.connect_host(), "255.255.255.254") == 0);  // the longest address fits
}

static void test_server_host_fallback() {
  camlogic::ServerHost h;
  CHECK(h.init("camserver.local", "192.168.1.10"));
  CHECK(h.lookup_due() && strcmp(h.connect_host(), "192.168.1.10") == 0);  // before any lookup
  CHECK(!h.looked_up(0, 0, 0, 0));
  CHECK(strcmp(h.connect_host(), "192.168.1.10") == 0);  // not found: the fallback meanwhile
  CHECK(!h.connect_failed());  // a failure on the fallback forgets nothing
  CHECK(h.lookup_due());       // and the next attempt asks for the name again first
  CHECK(h.looked_up(192, 168, 1, 30));
  CHECK(strcmp(h.connect_host(), "192.168.1.30") == 0);  // found: the name wins over the fallback
}

static void test_backoff() {
  camlogic::Backoff b(500, 30000);
  uint32_t ceilings[] = {500, 1000, 2000, 4000, 8000, 16000, 30000, 30000};
  for (uint32_t expected : ceilings) {
    CHECK(b.ceiling_ms() == expected);
    uint32_t lo = b.next_delay_ms(0), hi;
    b.attempt--;
    hi = b.next_delay_ms(0xFFFFFFFFu);
    b.attempt--;
    uint32_t any = b.next_delay_ms(12345u);
    CHECK(lo >= expected / 2 && lo <= expected);
    CHECK(hi >= expected / 2 && hi <= expected);
    CHECK(any >= expected / 2 && any <= expected);
  }
  for (int i = 0; i < 100; i++) b.next_delay_ms(7u * i);  // stays capped, no overflow
  CHECK(b.ceiling_ms() == 30000);
  CHECK(b.next_delay_ms(99) <= 30000);
  b.reset();
  CHECK(b.ceiling_ms() == 500);
  // jitter: different random numbers give different delays
  camlogic::Backoff j1(1000, 30000), j2(1000, 30000);
  j1.attempt = j2.attempt = 4;
  CHECK(j1.next_delay_ms(1) != j2.next_delay_ms(5000));
}

// A refused handshake: the library fires ConnectionClosed inside connect(), then connect()
// returns false. The wait must grow x2 per attempt (one backoff step), never x4.
static void test_refused_attempt_advances_backoff_once() {
  camlogic::WsLink link(500, 30000);
  uint32_t now = 1000;
  uint32_t ceilings[] = {500, 1000, 2000, 4000, 8000, 16000, 30000};
  for (uint32_t expected : ceilings) {
    CHECK(link.due(now));
    CHECK(link.backoff.ceiling_ms() == expected);
    CHECK(link.closed(now, 0xFFFFFFFFu) == 0);  // inside connect(): ignored, nothing scheduled
    CHECK(link.due(now));
    CHECK(link.backoff.ceiling_ms() == expected);  // the ignored event took no backoff step
    uint32_t delay = link.connect_failed(now, 0xFFFFFFFFu);
    CHECK(delay >= expected / 2 && delay <= expected);
    CHECK(link.backoff.ceiling_ms() == (expected * 2 > 30000 ? 30000 : expected * 2));  // x2, not x4
    CHECK(!link.due(now + delay - 1));
    now += delay;
  }
  CHECK(link.connections == 0 && link.reconnects() == 0);
  // an open connection that closes schedules exactly one retry; the next connect resets
  link.connected();
  CHECK(link.open && link.reconnects() == 0);  // the first connection is not a reconnect
  uint32_t delay = link.closed(now, 0);
  CHECK(delay == 250);  // backoff was reset by connected(): [250, 500]
  CHECK(!link.open);
  CHECK(link.closed(now, 0) == 0);  // a second close event of the same connection: ignored
  CHECK(link.due(now + delay));
  link.connected();
  CHECK(link.reconnects() == 1);
  link.connected();
  CHECK(link.reconnects() == 2);
  // due() across the millis() wrap
  camlogic::WsLink w;
  w.connect_failed(0xFFFFFF00u, 0);
  CHECK(!w.due(0xFFFFFF00u + 100));
  CHECK(w.due(0xFFFFFF00u + 250));  // wrapped to a small number
}

// The timers, the links, the probation and the quality guard (camserver_link.h): link_tests.h.
#include "link_tests.h"

static void test_camera_buffer_sizing() {
  int vga = camlogic::frame_size_index("VGA"), uxga = camlogic::frame_size_index("UXGA");
  int qvga = camlogic::frame_size_index("QVGA");
  CHECK(camlogic::jpeg_buffer_bytes(vga) == 61440);
  CHECK(camlogic::jpeg_buffer_bytes(uxga) == 384000);
  CHECK(camlogic::jpeg_buffer_bytes(-1) == 0);
  CHECK(camlogic::largest_frame_size_index(true, qvga) == uxga);  // PSRAM: room for any size
  CHECK(camlogic::largest_frame_size_index(false, qvga) == qvga);
  CHECK(camlogic::largest_frame_size_index(false, -1) == 0);
  // every size a control message may choose fits the buffer of the size initialised
  for (int i = 0; i <= uxga; i++) CHECK(camlogic::jpeg_buffer_bytes(i) <= camlogic::jpeg_buffer_bytes(uxga));
}

static void test_pacer() {
  camlogic::FramePacer p(10);
  CHECK(p.interval_ms == 100);
  CHECK(p.due(1000));
  CHECK(!p.due(1050));
  CHECK(p.due(1100));
  CHECK(!p.due(1199));
  CHECK(p.due(1205));  // a little late: keeps the cadence (next at 1300)
  CHECK(p.due(1300));
  CHECK(p.due(5000));  // after a stall: no burst of catch-up frames
  CHECK(!p.due(5001));
  CHECK(!p.due(5099));
  // over one simulated minute at 1 ms steps, exactly 10 fps
  camlogic::FramePacer q(10);
  int sent = 0;
  for (uint32_t t = 0; t < 60000; t++) sent += q.due(t);
  CHECK(sent == 600);
  // millis() wraps after ~49.7 days
  camlogic::FramePacer w(10);
  CHECK(w.due(0xFFFFFFF0u));
  CHECK(!w.due(0xFFFFFFF0u + 50));
  CHECK(w.due(0xFFFFFFF0u + 100));  // wrapped to a small number
  p.set_fps(0);
  CHECK(p.interval_ms == 10000);
  p.set_fps(NAN);
  CHECK(p.interval_ms == 10000);
  p.set_fps(1000);
  CHECK(p.interval_ms == 17);
}

static void test_json_texts() {
  char out[256];
  int n = camlogic::format_hello(out, sizeof out, "cam1", "1.0.0", "VGA", 12, 123456, -61);
  CHECK(n > 0);
  CHECK(strcmp(out,
               "{\"type\":\"hello\",\"camera_id\":\"cam1\",\"firmware\":\"1.0.0\",\"frame_size\":\"VGA\","
               "\"quality\":12,\"free_heap\":123456,\"rssi\":-61}") == 0);
  CHECK(camlogic::format_hello(out, 10, "cam1", "1.0.0", "VGA", 12, 1, 1) == -1);
  camlogic::StatusFigures s = {9.5f, 80000, -70, 3, 1200, 2, "SVGA", 10, 8.0f, nullptr, nullptr, 0, nullptr, 0, 0, -1, nullptr};
  n = camlogic::format_status(out, sizeof out, s);
  CHECK(n > 0);
  CHECK(strcmp(out,
               "{\"type\":\"status\",\"fps_sent\":9.5,\"free_heap\":80000,\"rssi\":-70,\"reconnects\":3,"
               "\"frames_sent\":1200,\"capture_failures\":2,\"frame_size\":\"SVGA\",\"quality\":10,\"max_fps\":8.0}") == 0);
}

static void test_control() {
  camlogic::Control c;
  char err[64];
  CHECK(camlogic::parse_control("{\"framesize\": \"SVGA\", \"quality\": 12, \"fps\": 8}", &c, err, sizeof err));
  CHECK(c.frame_size == camlogic::frame_size_index("SVGA") && c.quality == 12 && fabsf(c.fps - 8.0f) < 1e-6f);
  CHECK(camlogic::parse_control(" {\"type\":\"control\",\"fps\":2.5} ", &c, err, sizeof err));
  CHECK(c.frame_size == -1 && c.quality == -1 && fabsf(c.fps - 2.5f) < 1e-6f);
  const char* bad[] = {
      "", "[]", "{}", "{\"fps\": 0}", "{\"fps\": 31}", "{\"quality\": 3}", "{\"quality\": 12.5}",
      "{\"framesize\": \"HUGE\"}", "{\"framesize\": 5}", "{\"colour\": 1}", "{\"fps\": 5,}", "{\"fps\": 5} x",
      "{\"fps\" 5}", "{\"framesize\": \"VG\\\"A\"}", "{\"type\": \"other\", \"fps\": 5}", "{\"fps\": 5",
      "{\"framesize\": \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}",
  };
  for (const char* text : bad) {
    err[0] = '\0';
    bool ok = camlogic::parse_control(text, &c, err, sizeof err);
    CHECK(!ok);
    CHECK(err[0] != '\0');
    if (ok) fprintf(stderr, "accepted: %s\n", text);
  }
  CHECK(!camlogic::parse_control(nullptr, &c, err, sizeof err));
}

static void test_settings_messages() {
  camlogic::Control c;
  char err[96];
  CHECK(camlogic::parse_control(
      "{\"type\":\"control\",\"brightness\":-2,\"hmirror\":true,\"vflip\":0,\"aec_value\":1200,\"lamp\":40,"
      "\"special_effect\":6,\"fps\":5}",
      &c, err, sizeof err));
  CHECK(!c.ota);
  CHECK(c.settings.has(camlogic::SET_BRIGHTNESS) && c.settings.value[camlogic::SET_BRIGHTNESS] == -2);
  CHECK(c.settings.has(camlogic::SET_HMIRROR) && c.settings.value[camlogic::SET_HMIRROR] == 1);
  CHECK(c.settings.has(camlogic::SET_VFLIP) && c.settings.value[camlogic::SET_VFLIP] == 0);
  CHECK(c.settings.value[camlogic::SET_AEC_VALUE] == 1200 && c.settings.value[camlogic::SET_LAMP] == 40);
  CHECK(c.settings.value[camlogic::SET_SPECIAL_EFFECT] == 6);
  CHECK(!c.settings.has(camlogic::SET_CONTRAST));
  CHECK(fabsf(c.fps - 5.0f) < 1e-6f && c.frame_size == -1);
  // every setting, at both ends of its range, parses; one past either end is refused naming the range
  for (int i = 0; i < camlogic::SETTING_COUNT; i++) {
    const camlogic::SettingRange& r = camlogic::SETTINGS[i];
    char text[96];
    for (int v : {(int)r.min, (int)r.max}) {
      snprintf(text, sizeof text, "{\"%s\": %d}", r.name, v);
      CHECK(camlogic::parse_control(text, &c, err, sizeof err));
      CHECK(c.settings.mask == camlogic::setting_bit(i) && c.settings.value[i] == v);
    }
    for (int v : {(int)r.min - 1, (int)r.max + 1}) {
      snprintf(text, sizeof text, "{\"%s\": %d}", r.name, v);
      err[0] = '\0';
      CHECK(!camlogic::parse_control(text, &c, err, sizeof err));
      CHECK(strstr(err, r.name) != nullptr);
      char range[64];
      snprintf(range, sizeof range, r.is_switch ? "true or false" : "from %d to %d", r.min, r.max);
      CHECK(strstr(err, range) != nullptr);
      if (!strstr(err, range)) fprintf(stderr, "error for %s: %s\n", text, err);
    }
  }
  CHECK(!camlogic::parse_control("{\"brightness\": 1.5}", &c, err, sizeof err));
  CHECK(!camlogic::parse_control("{\"lamp\": \"50\"}", &c, err, sizeof err));
  CHECK(!camlogic::parse_control("{\"hmirror\": tru}", &c, err, sizeof err));
  CHECK(!camlogic::parse_control("{\"aec_value\": 1e9}", &c, err, sizeof err));
  CHECK(!camlogic::parse_control("{\"quality\": 1e30}", &c, err, sizeof err));  // no overflowing cast
  CHECK(!camlogic::parse_control("{\"fps\": inf}", &c, err, sizeof err));
  CHECK(!camlogic::parse_control("{\"colour\": 1}", &c, err, sizeof err));
  CHECK(strcmp(err, "unknown key: colour") == 0);
  CHECK(!camlogic::parse_control("{\"a_key_much_longer_than_the_buffer\": 1}", &c, err, sizeof err));
  // merging keeps what the earlier message set
  camlogic::SettingValues kept;
  CHECK(camlogic::parse_control("{\"brightness\": 1, \"lamp\": 10}", &c, err, sizeof err));
  kept.merge(c.settings);
  CHECK(camlogic::parse_control("{\"lamp\": 0}", &c, err, sizeof err));
  kept.merge(c.settings);
  CHECK(kept.value[camlogic::SET_BRIGHTNESS] == 1 && kept.value[camlogic::SET_LAMP] == 0);
  CHECK(kept.mask == (camlogic::setting_bit(camlogic::SET_BRIGHTNESS) | camlogic::setting_bit(camlogic::SET_LAMP)));
}

static void test_ota_messages_and_decision() {
  camlogic::Control c;
  char err[96];
  const char* good =
      "{\"type\":\"control\",\"ota_url\":\"http://192.0.2.7:8080/ota/AbC-_9\",\"ota_md5\":"
      "\"0123456789abcdef0123456789ABCDEF\",\"ota_size\":912345}";
  CHECK(camlogic::parse_control(good, &c, err, sizeof err));
  CHECK(c.ota && c.settings.mask == 0 && c.frame_size == -1 && c.fps < 0);
  CHECK(strcmp(c.ota_request.url, "http://192.0.2.7:8080/ota/AbC-_9") == 0);
  CHECK(c.ota_request.size == 912345);
  CHECK(camlogic::ota_should_start(c.ota_request, camlogic::OTA_SLOT_BYTES, err, sizeof err));
  // the decision: no second slot, too big, not http
  CHECK(!camlogic::ota_should_start(c.ota_request, 0, err, sizeof err));
  CHECK(strstr(err, "partition table") != nullptr);
  c.ota_request.size = camlogic::OTA_SLOT_BYTES + 1;
  CHECK(!camlogic::ota_should_start(c.ota_request, camlogic::OTA_SLOT_BYTES, err, sizeof err));
  CHECK(strstr(err, "does not fit") != nullptr);
  c.ota_request.size = camlogic::OTA_SLOT_BYTES;
  CHECK(camlogic::ota_should_start(c.ota_request, camlogic::OTA_SLOT_BYTES, err, sizeof err));
  camlogic::OtaRequest https = c.ota_request;
  memcpy(https.url, "https://x/y", 12);
  CHECK(!camlogic::ota_should_start(https, camlogic::OTA_SLOT_BYTES, err, sizeof err));
  // incomplete or mixed messages are refused
  const char* bad[] = {
      "{\"ota_url\":\"http://h/x\",\"ota_md5\":\"0123456789abcdef0123456789abcdef\"}",
      "{\"ota_url\":\"http://h/x\",\"ota_md5\":\"0123456789abcdef0123456789abcdef\",\"ota_size\":0}",
      "{\"ota_url\":\"http://h/x\",\"ota_md5\":\"0123456789abcdef0123456789abcdeg\",\"ota_size\":5}",
      "{\"ota_url\":\"http://h/x\",\"ota_md5\":\"0123456789abcdef\",\"ota_size\":5}",
      "{\"ota_url\":\"http://h/x\",\"ota_md5\":\"0123456789abcdef0123456789abcdef\",\"ota_size\":5.5}",
      "{\"ota_url\":\"http://h/x\",\"ota_md5\":\"0123456789abcdef0123456789abcdef\",\"ota_size\":-5}",
      "{\"ota_url\":\"http://h/x\",\"ota_md5\":\"0123456789abcdef0123456789abcdef\",\"ota_size\":5e12}",
      "{\"ota_url\":\"http://h/x\",\"ota_md5\":\"0123456789abcdef0123456789abcdef\",\"ota_size\":5,\"fps\":2}",
  };
  for (const char* text : bad) {
    err[0] = '\0';
    bool ok = camlogic::parse_control(text, &c, err, sizeof err);
    CHECK(!ok && err[0] != '\0');
    if (ok) fprintf(stderr, "accepted: %s\n", text);
  }
  char long_url[300] = "{\"ota_url\":\"http://";
  for (int i = 0; i < 200; i++) strcat(long_url, "h");
  strcat(long_url, "\",\"ota_md5\":\"0123456789abcdef0123456789abcdef\",\"ota_size\":5}");
  CHECK(!camlogic::parse_control(long_url, &c, err, sizeof err));  // refused, not truncated
  // after the download: the digest written must be the one announced
  CHECK(camlogic::md5_equal("0123456789abcdef0123456789abcdef", "0123456789ABCDEF0123456789ABCDEF"));
  CHECK(!camlogic::md5_equal("0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdee"));
  CHECK(!camlogic::md5_equal("", ""));
  CHECK(!camlogic::md5_equal(nullptr, "0123456789abcdef0123456789abcdef"));
}

static void test_status_with_settings() {
  camlogic::SettingValues applied;
  applied.set(camlogic::SET_BRIGHTNESS, 1);
  applied.set(camlogic::SET_SHARPNESS, 0);
  applied.set(camlogic::SET_HMIRROR, 1);
  applied.set(camlogic::SET_VFLIP, 0);
  applied.set(camlogic::SET_LAMP, 40);
  camlogic::StatusFigures s = {9.5f, 80000, -70, 3, 1200, 2, "SVGA", 10, 8.0f, "1.1.0", &applied,
                               camlogic::setting_bit(camlogic::SET_SHARPNESS), "Update error: MD5 \"x\"\n", 0, 0, -1, nullptr};
  char out[1024];
  int n = camlogic::format_status(out, sizeof out, s);
  CHECK(n > 0 && (size_t)n == strlen(out));
  const char* expected =
      "{\"type\":\"status\",\"fps_sent\":9.5,\"free_heap\":80000,\"rssi\":-70,\"reconnects\":3,"
      "\"frames_sent\":1200,\"capture_failures\":2,\"frame_size\":\"SVGA\",\"quality\":10,\"max_fps\":8.0,"
      "\"firmware\":\"1.1.0\",\"settings\":{\"brightness\":1,\"hmirror\":true,\"vflip\":false,\"lamp\":40},"
      "\"unsupported\":[\"sharpness\"],\"ota_error\":\"Update error: MD5 \\\"x\\\"\\u000a\"}";
  CHECK(strcmp(out, expected) == 0);
  if (strcmp(out, expected) != 0) fprintf(stderr, "got %s\n", out);
  // every setting, and the longest error, fit the sketch's 1024-byte buffer
  camlogic::SettingValues all;
  for (int i = 0; i < camlogic::SETTING_COUNT; i++) all.set(i, camlogic::SETTINGS[i].min);
  char error[96];
  memset(error, '"', sizeof error - 1);
  error[sizeof error - 1] = '\0';
  s.settings = &all;
  s.unsupported = 0x00FFFFFFu;  // pretend all but none are unsupported: the longest list
  s.ota_error = error;
  CHECK(camlogic::format_status(out, sizeof out, s) > 0);
  s.unsupported = 0;
  CHECK(camlogic::format_status(out, sizeof out, s) > 0);
  // too small a buffer: -1, never a truncated text
  CHECK(camlogic::format_status(out, 200, s) == -1);
}

static void print_settings_table() {
  printf("{\"settings\": [");
  for (int i = 0; i < camlogic::SETTING_COUNT; i++) {
    const camlogic::SettingRange& r = camlogic::SETTINGS[i];
    printf("%s[\"%s\", %d, %d, %s]", i ? ", " : "", r.name, r.min, r.max, r.is_switch ? "true" : "false");
  }
  printf("], \"quality\": [%d, %d], \"fps\": [%g, %g], \"ota_slot\": %lu}\n", camlogic::QUALITY_MIN,
         camlogic::QUALITY_MAX, (double)camlogic::FPS_MIN, (double)camlogic::FPS_MAX,
         (unsigned long)camlogic::OTA_SLOT_BYTES);
}

int main(int argc, char** argv) {
  if (argc > 1 && strcmp(argv[1], "frame-sizes") == 0) {
    printf("[");
    for (int i = 0; i < camlogic::FRAME_SIZE_COUNT; i++) {
      const camlogic::FrameSizeName& f = camlogic::FRAME_SIZES[i];
      printf("%s[\"%s\", %u, %u]", i ? ", " : "", f.name, f.width, f.height);
    }
    printf("]\n");
    return 0;
  }
  if (argc > 1 && strcmp(argv[1], "settings") == 0) {
    print_settings_table();
    return 0;
  }
  test_camera_id_and_path();
  test_auth_header();
  test_server_host_by_address_or_name();
  test_server_host_over_mdns();
  test_server_host_fallback();
  test_backoff();
  test_refused_attempt_advances_backoff_once();
  test_every_timer_at_any_uptime();
  test_wifi_retries_are_spaced_and_capped();
  test_send_ledger_counts_what_the_server_has();
  test_probation();
  test_quality_guard();
  test_status_extras();
  test_camera_buffer_sizing();
  test_pacer();
  test_json_texts();
  test_control();
  test_settings_messages();
  test_ota_messages_and_decision();
  test_status_with_settings();
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
