// The board simulation: the sketch (esp32_stream.ino, unmodified) runs on the host against fakes of the
// calls it makes (tests/firmware/stubs declares them, fake_board.cpp defines them). Time is simulated:
// millis() is the 32-bit clock of the board, delay() advances it. The world around the board (the
// access point, the server, the link between them, the camera's buffer, the flash's OTA state) is
// this struct; sketch_sim.cpp drives it and checks what the board does.
#pragma once
#include <stdint.h>

#include <string>
#include <vector>

static const int FAKE_ASSOC_MS = 3000;  // association plus DHCP

struct FakeWifi {
  bool ap_up = true;
  bool ap_refuses = false;  // there, but refusing authentication (booting): the core does not retry that
  bool connected = false;
  bool attempting = false;
  uint64_t attempt_done = 0;
  bool auto_reconnect = false;
  uint32_t epoch = 0;       // +1 every time the station loses the AP: connections over it are dead
  int sketch_begins = 0;    // WiFi.begin() calls by the sketch
  int aborted = 0;          // attempts in progress that a begin() or disconnect() cut short
  std::vector<uint64_t> begin_at;
};

struct FakeServer {
  bool up = true;
  bool blackhole = false;   // the current connection passes nothing either way (a NAT or AP that lost it)
  uint32_t connection = 0;  // the id of the connection the server holds
  int connections = 0;
  std::vector<uint64_t> attempt_at;  // every connect() the board made, successful or not
  uint64_t frames = 0;      // frames the server received, all connections
  uint64_t last_frame_at = 0;
  std::vector<std::string> texts;
  std::vector<uint64_t> frames_at_text;  // `frames` when each text arrived
  std::string desired;      // a control message sent after each hello ("" = none)
  std::string push;         // a message for the current connection, delivered at the board's next poll()
};

struct FakeCamera {
  bool inited = false;
  int init_framesize = -1;  // framesize_t the driver sized its buffers for
  int framesize = -1;
  int quality = -1;
  int failures = 0;         // captures that overflowed the buffer
};

// The flash's OTA data, shared with forked boots (sketch_sim.cpp): slot states as esp_ota_img_states_t.
struct FakeFlash {
  int running = 0;
  uint32_t state[2] = {2, 0xFFFFFFFFu};  // ESP_OTA_IMG_VALID, ESP_OTA_IMG_UNDEFINED
  int marked_valid = 0;
  int rollbacks_asked = 0;
};

struct FakeBoard {
  uint64_t now = 0;          // ms since boot; millis() is its low 32 bits
  FakeWifi wifi;
  FakeServer server;
  FakeCamera camera;
  FakeFlash* flash = nullptr;
  std::vector<uint32_t> brownout_writes;  // values written to RTC_CNTL_BROWN_OUT_REG
  std::vector<std::string> log;           // the serial log
  bool restarted = false;
};

extern FakeBoard sim;

// WiFi.status() is computed from the time: call after moving sim.now.
void fake_wifi_update();
// Ends the process as a reset of the board does (sketch_sim.cpp forks a process per boot).
[[noreturn]] void fake_reset(int code);
// initArduino()'s part in OTA rollback (arduino-esp32 2.x/3.x cores/esp32/esp32-hal-misc.c): unless the
// sketch's verifyRollbackLater() says otherwise, a pending image is marked valid before setup().
void fake_init_arduino();
