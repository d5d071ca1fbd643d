// The sketch itself, run on the host against fake_board.cpp: each scenario is one process (fork), as each
// boot of the board is a fresh start of its globals; the flash's OTA data and the counts are shared.
// Prints "N passed, M failed"; with a scenario name as argument, runs only that one.
#include "Arduino.h"
#include "esp32_stream.ino"  // the sketch, unmodified

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "fake_board.h"

struct Shared {
  FakeFlash flash;
  int passed;
  int failed;
  int flag;  // a boot's finding, for the process that started it
};
static Shared* shared = nullptr;
static const char* scenario = "";

#define CHECK(cond)                                                                         \
  do {                                                                                      \
    if (cond) {                                                                             \
      __sync_fetch_and_add(&shared->passed, 1);                                             \
    } else {                                                                                \
      __sync_fetch_and_add(&shared->failed, 1);                                             \
      fprintf(stderr, "%s: %s:%d: CHECK(%s) failed\n", scenario, __FILE__, __LINE__, #cond); \
    }                                                                                       \
  } while (0)

// One loop() of the sketch; the clock moves at least 1 ms.
static void step() {
  uint64_t before = sim.now;
  loop();
  if (sim.now == before) delay(1);
}

// Runs loop() for ms of simulated time; returns the longest gap between frames the server received.
static uint64_t run_for(uint64_t ms) {
  uint64_t end = sim.now + ms, longest = 0, last = sim.now, frames = sim.server.frames;
  while (sim.now < end) {
    step();
    if (sim.server.frames != frames) {
      frames = sim.server.frames;
      last = sim.now;
    }
    if (sim.now - last > longest) longest = sim.now - last;
  }
  return longest;
}

// Runs until the server has a frame it did not have; returns how long that took, or -1 after max_ms.
static long until_new_frame(uint64_t max_ms) {
  uint64_t start = sim.now, frames = sim.server.frames;
  while (sim.now - start < max_ms) {
    step();
    if (sim.server.frames > frames) return (long)(sim.now - start);
  }
  return -1;
}

static long json_number(const std::string& text, const char* key) {
  std::string k = std::string("\"") + key + "\":";
  size_t at = text.find(k);
  return at == std::string::npos ? -1 : strtol(text.c_str() + at + k.size(), nullptr, 10);
}

// The server's texts from index `from` on that are statuses.
static std::vector<std::string> statuses(size_t from = 0) {
  std::vector<std::string> out;
  for (size_t i = from; i < sim.server.texts.size(); i++) {
    if (sim.server.texts[i].find("\"type\":\"status\"") != std::string::npos) out.push_back(sim.server.texts[i]);
  }
  return out;
}

static void boot_streaming() {
  sim.flash = &shared->flash;
  fake_init_arduino();
  setup();
  CHECK(until_new_frame(30000) >= 0);
  run_for(10000);
}

// The first defect: WiFi drops at an uptime near 2^31 or 2^32 ms; streaming must resume within
// 10 s of WiFi returning. The board booted at 0 and ran for `uptime` (the clock jumps: nothing happens
// on a quiet link in between that matters to the timers).
static void wifi_drop_at(uint64_t uptime) {
  boot_streaming();
  sim.now = uptime - 5000;
  run_for(5000);
  sim.wifi.ap_up = false;
  run_for(20000);
  sim.wifi.ap_up = true;
  long back = until_new_frame(60000);
  CHECK(back >= 0 && back <= 10000);
  if (back < 0 || back > 10000) {
    fprintf(stderr, "  uptime %llu: streaming again after %ld ms\n", (unsigned long long)uptime, back);
  }
}

// The failed-update path ends the link too: past 2^31 ms it must reconnect at once, not 24.8 days later.
static void failed_update_after_2_31() {
  boot_streaming();
  sim.now = 0x80000000ull + 1000;
  run_for(3000);
  int connections = sim.server.connections;
  sim.server.push = "{\"ota_url\":\"http://192.168.1.10:8080/ota/x\",\"ota_md5\":"
                    "\"0123456789abcdef0123456789abcdef\",\"ota_size\":900000}";
  while (sim.server.connections == connections && sim.now < 0x80000000ull + 60000) step();
  CHECK(sim.server.connections == connections + 1);  // the download failed (the fake's HTTPUpdate fails)
  long back = until_new_frame(10000);
  CHECK(back >= 0);
  bool reported = false;
  for (const std::string& t : statuses()) {
    reported = reported || t.find("\"ota_error\":\"simulated") != std::string::npos;
  }
  CHECK(reported);
}

// A server restart: the board waits with the backoff (0.25 s at least after the close, then doubling),
// never in a tight loop, and is back within a second of the server.
static void server_restart_backoff() {
  boot_streaming();
  size_t attempts = sim.server.attempt_at.size();
  uint64_t down_at = sim.now;
  sim.server.up = false;
  run_for(20000);
  std::vector<uint64_t> at(sim.server.attempt_at.begin() + attempts, sim.server.attempt_at.end());
  CHECK(!at.empty() && at[0] - down_at >= 250);
  CHECK(at.size() >= 4 && at.size() <= 8);  // 0.25-0.5, 0.5-1, 1-2, 2-4, 4-8, 8-16 s
  if (!at.empty() && at[0] - down_at < 250) {
    fprintf(stderr, "  first attempt %llu ms after the close\n", (unsigned long long)(at[0] - down_at));
  }
  sim.server.up = true;
  long back = until_new_frame(20000);
  CHECK(back >= 0 && back <= 16000);
}

// The access point reboots: gone (the core keeps trying), then refusing authentication while it boots
// (the core stops trying), then up. The backstop brings the board back within its cap, 30 s.
static void wifi_ap_reboot() {
  boot_streaming();
  sim.wifi.ap_up = false;
  run_for(20000);
  sim.wifi.ap_up = true;
  sim.wifi.ap_refuses = true;
  run_for(60000);
  sim.wifi.ap_refuses = false;
  long back = until_new_frame(60000);
  CHECK(back >= 0 && back <= 30000 + FAKE_ASSOC_MS + 1000);
  if (back < 0 || back > 34000) fprintf(stderr, "  back after %ld ms\n", back);
}

// WiFi retries: the sketch's begin() never comes sooner than 5 s after the loss or its last one (it
// would abort the core's attempt in progress), the gaps rise, and streaming resumes within 10 s.
static void wifi_retries_spaced() {
  boot_streaming();
  int begins_before = sim.wifi.sketch_begins;
  uint64_t lost_at = sim.now;
  sim.wifi.ap_up = false;
  run_for(180000);
  std::vector<uint64_t> at(sim.wifi.begin_at.begin() + begins_before, sim.wifi.begin_at.end());
  CHECK(at.size() >= 3);
  uint64_t previous = lost_at, shortest = ~0ull, longest = 0;
  for (uint64_t t : at) {
    if (t - previous < shortest) shortest = t - previous;
    if (t - previous > longest) longest = t - previous;
    previous = t;
  }
  CHECK(shortest >= 5000);
  CHECK(longest <= 31000);
  if (shortest < 5000) fprintf(stderr, "  a WiFi retry %llu ms after the one before\n", (unsigned long long)shortest);
  sim.wifi.ap_up = true;
  long back = until_new_frame(60000);
  CHECK(back >= 0 && back <= 10000);
}

// frames_sent is what the server has, within the frames in flight, also when a connection dies silently
// (sendBinary() keeps returning true) and when the server restarts; the dead link is noticed and left.
static void counters_across_cuts() {
  boot_streaming();
  int connections = sim.server.connections;
  sim.server.blackhole = true;  // the connection passes nothing more, and nothing says so
  uint64_t cut_at = sim.now;
  while (sim.server.connections == connections && sim.now - cut_at < 30000) step();
  CHECK(sim.server.connections == connections + 1);
  CHECK(sim.now - cut_at <= 15000);
  run_for(6000);
  sim.server.up = false;
  run_for(3000);
  sim.server.up = true;
  size_t texts = sim.server.texts.size();
  run_for(12000);
  // every status after the restart against what the server had when it arrived
  int compared = 0;
  for (size_t i = texts; i < sim.server.texts.size(); i++) {
    const std::string& t = sim.server.texts[i];
    if (t.find("\"type\":\"status\"") == std::string::npos) continue;
    long sent = json_number(t, "frames_sent");
    long in_flight = json_number(t, "frames_in_flight");
    long unconfirmed = json_number(t, "frames_unconfirmed");
    if (in_flight < 0) in_flight = 0;  // not sent when 0
    if (unconfirmed < 0) unconfirmed = 0;
    uint64_t had = sim.server.frames_at_text[i];
    // frames in flight when a connection ended may or may not have arrived: the only uncertainty
    bool honest = sent >= 0 && (uint64_t)sent <= had && had <= (uint64_t)(sent + in_flight + unconfirmed);
    CHECK(honest);
    if (!honest) {
      fprintf(stderr, "  frames_sent %ld, in flight %ld, unconfirmed %ld, the server had %llu\n", sent, in_flight,
              unconfirmed, (unsigned long long)had);
    }
    compared++;
  }
  CHECK(compared >= 2);
}

// Quality 4 at UXGA overflows the 384,000-byte buffer: the camera must not go dark for more than 10 s,
// the status says what it does instead, and the same setting sent again on the next hello costs nothing.
static void never_dark_on_a_setting() {
  boot_streaming();
  sim.server.desired = "{\"type\":\"control\",\"framesize\":\"UXGA\",\"quality\":4}";
  sim.server.up = false;  // a server restart: the settings come with the next hello
  run_for(1500);
  sim.server.up = true;
  size_t texts = sim.server.texts.size();
  CHECK(until_new_frame(15000) >= 0);
  uint64_t gap = run_for(60000);
  CHECK(gap <= 10000);
  if (gap > 10000) fprintf(stderr, "  no frame for %llu ms\n", (unsigned long long)gap);
  std::vector<std::string> s = statuses(texts);
  CHECK(!s.empty() && s.back().find("\"frame_size\":\"UXGA\"") != std::string::npos);
  CHECK(!s.empty() && json_number(s.back(), "quality") > 10 && json_number(s.back(), "quality_refused") == 4);
  int failures = sim.camera.failures;
  sim.server.up = false;
  run_for(1500);
  sim.server.up = true;
  CHECK(until_new_frame(15000) >= 0);
  CHECK(run_for(30000) <= 10000);
  CHECK(sim.camera.failures == failures);  // the setting came again and was not tried again
}

static void brownout_detector_kept() {
  sim.flash = &shared->flash;
  fake_init_arduino();
  setup();
  run_for(2000);
  CHECK(sim.brownout_writes.empty());
}

// --- Rollback: each boot is a process; the bootloader (here) acts between them ------------------------

static void bootloader() {
  FakeFlash& f = shared->flash;
  if (f.state[f.running] == ESP_OTA_IMG_PENDING_VERIFY) {  // reset while on probation: back to the other
    f.state[f.running] = ESP_OTA_IMG_ABORTED;
    f.running = 1 - f.running;
  } else if (f.state[f.running] == ESP_OTA_IMG_NEW) {
    f.state[f.running] = ESP_OTA_IMG_PENDING_VERIFY;
  }
}

enum Image { GOOD, EXITS_AT_START };

// Boots the running slot in a new process: slot 1 is the update (`update` says how it behaves), slot 0
// the previous image. Runs run_ms of simulated time; sets shared->flag when a status said rolled_back.
static void boot(Image update, bool server_up, uint64_t run_ms) {
  bootloader();
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) {
    sim.flash = &shared->flash;
    sim.server.up = server_up;
    fake_init_arduino();
    if (shared->flash.running == 1 && update == EXITS_AT_START) fake_reset(3);
    setup();
    run_for(run_ms);
    for (const std::string& s : statuses()) {
      if (s.find("\"ota\":\"rolled_back\"") != std::string::npos) shared->flag = 1;
    }
    fake_reset(0);  // the power stays on; the next boot() is a reset
  }
  int status = 0;
  waitpid(pid, &status, 0);
}

static void update_pending() {
  shared->flash = FakeFlash();
  shared->flash.state[1] = ESP_OTA_IMG_NEW;  // written and made the boot image by the previous firmware
  shared->flash.running = 1;
  shared->flag = 0;
}

static void rollback_when_the_image_exits_at_start() {
  update_pending();
  boot(EXITS_AT_START, true, 0);
  boot(EXITS_AT_START, true, 20000);
  CHECK(shared->flash.running == 0);
  CHECK(shared->flag == 1);  // the previous image told the server
}

static void rollback_when_the_image_never_reaches_the_server() {
  update_pending();
  boot(GOOD, false, 400000);  // the server is unreachable for this image: it gives up after 300 s
  CHECK(shared->flash.rollbacks_asked == 1);
  boot(GOOD, true, 20000);
  CHECK(shared->flash.running == 0);
  CHECK(shared->flag == 1);
}

static void good_image_is_marked_valid_after_streaming() {
  update_pending();
  boot(GOOD, true, 90000);  // streams for 60 s: valid
  CHECK(shared->flash.marked_valid == 1 && shared->flash.state[1] == ESP_OTA_IMG_VALID);
  boot(GOOD, true, 20000);  // a reset later: the update stays
  CHECK(shared->flash.running == 1);
  CHECK(shared->flag == 0);
  // not marked valid before it had streamed: the core's initArduino() left it to the sketch
  update_pending();
  boot(GOOD, true, 30000);
  CHECK(shared->flash.marked_valid == 0);
}

struct Scenario {
  const char* name;
  void (*run)();
};

static void drop_10_minutes() { wifi_drop_at(600000ull); }
static void drop_before_2_31() { wifi_drop_at(0x80000000ull - 20000); }
static void drop_after_2_31() { wifi_drop_at(0x80000000ull + 1000); }
static void drop_before_wrap() { wifi_drop_at(0x100000000ull - 20000); }
static void drop_after_wrap() { wifi_drop_at(0x100000000ull + 1000); }

static const Scenario SCENARIOS[] = {
    {"wifi-drop-10-minutes", drop_10_minutes},
    {"wifi-drop-before-2^31", drop_before_2_31},
    {"wifi-drop-after-2^31", drop_after_2_31},
    {"wifi-drop-before-wrap", drop_before_wrap},
    {"wifi-drop-after-wrap", drop_after_wrap},
    {"failed-update-after-2^31", failed_update_after_2_31},
    {"server-restart-backoff", server_restart_backoff},
    {"wifi-retries-spaced", wifi_retries_spaced},
    {"wifi-ap-reboot", wifi_ap_reboot},
    {"counters-across-cuts", counters_across_cuts},
    {"never-dark-on-a-setting", never_dark_on_a_setting},
    {"brownout-detector-kept", brownout_detector_kept},
    {"rollback-exits-at-start", rollback_when_the_image_exits_at_start},
    {"rollback-no-server", rollback_when_the_image_never_reaches_the_server},
    {"good-image-marked-valid", good_image_is_marked_valid_after_streaming},
};

int main(int argc, char** argv) {
  shared = (Shared*)mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) return 2;
  memset((void*)shared, 0, sizeof *shared);
  for (const Scenario& s : SCENARIOS) {
    if (argc > 1 && strcmp(argv[1], s.name) != 0) continue;
    scenario = s.name;
    shared->flash = FakeFlash();
    int failed_before = shared->failed;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
      srand(1);
      s.run();
      fake_reset(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      shared->failed++;
      fprintf(stderr, "%s: the scenario's process ended with status %d\n", s.name, status);
    }
    printf("%s: %s\n", s.name, shared->failed == failed_before ? "ok" : "FAILED");
  }
  printf("%d passed, %d failed\n", shared->passed, shared->failed);
  return shared->failed ? 1 : 0;
}
