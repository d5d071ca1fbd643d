// camserver ESP32-CAM firmware: streams JPEG frames to ws://SERVER_HOST:SERVER_PORT/ws/CAMERA_ID
// and keeps doing so through WiFi drops, server restarts and camera hiccups.
//
// Serial log lines start with a tag: [boot] [wifi] [cam] [ws] [ctl] [ota] [status]; firmware/README.md
// explains each one.

#include <Arduino.h>
#include <WiFi.h>
#include <HTTPUpdate.h>
#include <Update.h>
#include <ArduinoWebsockets.h>
#include <ESPmDNS.h>
#include "driver/ledc.h"
#include "esp_camera.h"
#include "esp_ota_ops.h"

#include "config.h"
#if __has_include("secrets.h")
#include "secrets.h"
#else
#error "secrets.h is missing: copy secrets.example.h to secrets.h and fill in your WiFi name, password and camera token"
#endif
#include "board_pins.h"
#include "camserver_logic.h"
#include "camserver_messages.h"
#include "camera_sensor.h"

#ifndef SERVER_FALLBACK_HOST
#define SERVER_FALLBACK_HOST ""  // a config.h from before SERVER_FALLBACK_HOST existed
#endif

using namespace websockets;

// Bump for every image you roll out: the board says it in its hello, and the server reads it from an
// uploaded .bin through the marker (an Arduino build's app descriptor carries the core's version, not
// the sketch's). The marker is kept in the image because FIRMWARE_VERSION points into it.
#define FIRMWARE_VERSION_TEXT "1.2.0"
static const char FIRMWARE_MARKER[] = "camserver-firmware-version:" FIRMWARE_VERSION_TEXT;
static const char* const FIRMWARE_VERSION = FIRMWARE_MARKER + sizeof("camserver-firmware-version:") - 1;

// The core marks a freshly updated image valid before setup() unless this says the sketch will decide
// (arduino-esp32 2.x and 3.x, initArduino()). The image stays on probation instead: see `probation`.
// extern "C": the core's weak default is a C function; a C++ name would not replace it, silently.
extern "C" bool verifyRollbackLater() { return true; }

// millis() is 32 bits on the board; every timer takes it as uint32_t (camserver_link.h).
static uint32_t now_ms() { return (uint32_t)millis(); }

// Camera driver sizes in the order of camlogic::FRAME_SIZES.
static const framesize_t FRAMESIZE_BY_INDEX[] = {
    FRAMESIZE_QQVGA, FRAMESIZE_QVGA, FRAMESIZE_CIF, FRAMESIZE_HVGA, FRAMESIZE_VGA,
    FRAMESIZE_SVGA,  FRAMESIZE_XGA,  FRAMESIZE_HD,  FRAMESIZE_SXGA, FRAMESIZE_UXGA,
};
static_assert(sizeof(FRAMESIZE_BY_INDEX) / sizeof(FRAMESIZE_BY_INDEX[0]) == camlogic::FRAME_SIZE_COUNT,
              "frame size tables differ");

static const uint32_t WIFI_GIVE_UP_MS = 5UL * 60UL * 1000UL;  // restart after this long without WiFi
static const uint32_t MIN_UPTIME_BEFORE_RESTART_MS = 60UL * 1000UL;  // never restart in a tight loop
static const int CAPTURE_RETRIES = 3;  // failed captures in a row before re-initialising the camera
static const int REINIT_RETRIES = 5;   // failed re-initialisations in a row before a restart

// WebSocket: a fresh client for every connection attempt (the library's clients are not meant to
// be reused after a close).
static WebsocketsClient* ws = nullptr;
static camlogic::WsLink ws_link(500, 30000);  // open or not, backoff, reconnect count
static char ws_path[48];
static camlogic::ServerHost server_host;  // SERVER_HOST, looked up over mDNS when it ends in .local
static bool mdns_started = false;
static const uint32_t MDNS_QUERY_MS = 2000;  // how long one lookup waits for an answer
static char auth_header[160];

static camlogic::WifiKeeper wifi_keeper;  // backstop retries 5-10 s apart at first, at most 15-30 s
static camlogic::SendLedger ledger;       // pings, pongs, and the frames the server has for sure
static camlogic::Probation probation;     // a new image proves itself or rolls back
static const char* ota_state = nullptr;   // "rolled_back" once the bootloader went back to this image

static camlogic::FramePacer pacer(MAX_FPS);
static int frame_size_index = 0;
static int largest_size_index = 0;  // the size the camera was initialised at: no frame may be larger
static int jpeg_quality = JPEG_QUALITY;   // in use
static int wanted_quality = JPEG_QUALITY; // asked for (config.h, then the server)
static camlogic::QualityGuard quality_guard;
static float max_fps = MAX_FPS;
static bool camera_ready = false;
static int capture_failures_in_row = 0;
static int reinit_failures_in_row = 0;
static camlogic::Timer reinit_timer;
static camlogic::Timer restart_guard;  // no restart within a minute of booting

// Sensor settings and the flash LED. `wanted` is every setting the server asked for since boot, applied
// again whenever the camera is re-initialised (the sensor forgets them); `applied` is what the sensor
// and the LED hold now, reported in every status; `unsupported` is what this board cannot do.
static camlogic::SettingValues wanted;
static camlogic::SettingValues applied;
static uint32_t unsupported = 0;

// The flash LED: LEDC low-speed timer 3, channel 7, 5 kHz, 8 bits. The camera's XCLK runs on timer 0,
// channel 0; sharing its timer would change the camera's clock.
static const ledc_timer_t LAMP_TIMER = LEDC_TIMER_3;
static const ledc_channel_t LAMP_CHANNEL = LEDC_CHANNEL_7;
static bool lamp_ready = false;

// A firmware update asked for by the server; run from loop(), never inside the WebSocket callback
// (the update closes and deletes the client that is calling back).
static camlogic::OtaRequest ota_request;
static bool ota_pending = false;
static char ota_error[96] = "";  // why the last update failed, reported in every status until the next one

static uint32_t capture_failures = 0;
static uint32_t frames_at_last_status = 0;
static camlogic::Timer status_timer;

static void restart_if_allowed(const char* why) {
  if (!restart_guard.due(now_ms())) {
    Serial.printf("[boot] would restart (%s) but uptime is short; waiting\n", why);
    return;
  }
  Serial.printf("[boot] restarting: %s\n", why);
  delay(100);
  ESP.restart();
}

// ---------------------------------------------------------------------------------------------
// Sensor settings and the flash LED
// ---------------------------------------------------------------------------------------------

// After the camera starts: what the sensor holds, so the status shows every setting from the first one.
static void read_sensor_settings(const sensor_t* sensor) {
  for (int id = 0; id < camlogic::SETTING_COUNT; id++) {
    if (id != camlogic::SET_LAMP) applied.set(id, sensor_value(sensor, id));
  }
}

static bool lamp_setup() {
  if (LAMP_GPIO_NUM < 0) return false;
  ledc_timer_config_t timer = {};
  timer.speed_mode = LEDC_LOW_SPEED_MODE;
  timer.duty_resolution = LEDC_TIMER_8_BIT;
  timer.timer_num = LAMP_TIMER;
  timer.freq_hz = 5000;
  timer.clk_cfg = LEDC_AUTO_CLK;
  ledc_channel_config_t channel = {};
  channel.gpio_num = LAMP_GPIO_NUM;
  channel.speed_mode = LEDC_LOW_SPEED_MODE;
  channel.channel = LAMP_CHANNEL;
  channel.intr_type = LEDC_INTR_DISABLE;
  channel.timer_sel = LAMP_TIMER;
  channel.duty = 0;
  channel.hpoint = 0;
  return ledc_timer_config(&timer) == ESP_OK && ledc_channel_config(&channel) == ESP_OK;
}

// Flash LED brightness in percent; false on a board without one.
static bool lamp_set(int percent) {
  if (!lamp_ready) return false;
  uint32_t duty = ((uint32_t)percent * 255 + 50) / 100;
  return ledc_set_duty(LEDC_LOW_SPEED_MODE, LAMP_CHANNEL, duty) == ESP_OK &&
         ledc_update_duty(LEDC_LOW_SPEED_MODE, LAMP_CHANNEL) == ESP_OK;
}

// Applies each setting present; what the sensor or the board refuses goes into `unsupported` (logged
// once). Sensor settings wait in `wanted` while the camera is down: camera_init() applies them.
static void apply_settings(const camlogic::SettingValues& settings, sensor_t* sensor) {
  for (int id = 0; id < camlogic::SETTING_COUNT; id++) {
    if (!settings.has(id)) continue;
    bool lamp = id == camlogic::SET_LAMP;
    if (!lamp && sensor == nullptr) continue;
    int v = settings.value[id];
    bool ok = lamp ? lamp_set(v) : sensor_apply(sensor, id, v) == 0;
    uint32_t bit = camlogic::setting_bit(id);
    if (ok) {
      applied.set(id, v);
      unsupported &= ~bit;
    } else {
      if (!(unsupported & bit)) {
        Serial.printf("[ctl] %s: %s; ignored\n", camlogic::SETTINGS[id].name,
                      lamp ? "this board has no flash LED" : "not supported by this sensor");
      }
      unsupported |= bit;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Camera
// ---------------------------------------------------------------------------------------------

static bool camera_init() {
  camera_config_t config = {};
  config.ledc_channel = LEDC_CHANNEL_0;
  config.ledc_timer = LEDC_TIMER_0;
  config.pin_d0 = Y2_GPIO_NUM;
  config.pin_d1 = Y3_GPIO_NUM;
  config.pin_d2 = Y4_GPIO_NUM;
  config.pin_d3 = Y5_GPIO_NUM;
  config.pin_d4 = Y6_GPIO_NUM;
  config.pin_d5 = Y7_GPIO_NUM;
  config.pin_d6 = Y8_GPIO_NUM;
  config.pin_d7 = Y9_GPIO_NUM;
  config.pin_xclk = XCLK_GPIO_NUM;
  config.pin_pclk = PCLK_GPIO_NUM;
  config.pin_vsync = VSYNC_GPIO_NUM;
  config.pin_href = HREF_GPIO_NUM;
  config.pin_sccb_sda = SIOD_GPIO_NUM;
  config.pin_sccb_scl = SIOC_GPIO_NUM;
  config.pin_pwdn = PWDN_GPIO_NUM;
  config.pin_reset = RESET_GPIO_NUM;
  config.xclk_freq_hz = 20000000;
  config.pixel_format = PIXFORMAT_JPEG;
  jpeg_quality = quality_guard.allowed(frame_size_index, wanted_quality);
  config.jpeg_quality = jpeg_quality;
  // The driver sizes its JPEG buffers from this frame size and never resizes them, so initialise
  // at the largest size a control message may ask for, then switch to the wanted one: a later
  // {"framesize": "UXGA"} then fits. Cost with PSRAM: 2 x 384,000 bytes of PSRAM instead of
  // 2 x 61,440 for VGA (of the 4 MB PSRAM of an AI-Thinker board).
  bool psram = psramFound();
  largest_size_index = camlogic::largest_frame_size_index(psram, camlogic::frame_size_index(FRAME_SIZE_NO_PSRAM));
  if (frame_size_index > largest_size_index) frame_size_index = largest_size_index;
  config.frame_size = FRAMESIZE_BY_INDEX[largest_size_index];
  if (psram) {
    // Two buffers in PSRAM, always the newest frame: capture overlaps sending.
    config.fb_count = 2;
    config.fb_location = CAMERA_FB_IN_PSRAM;
    config.grab_mode = CAMERA_GRAB_LATEST;
  } else {
    // Internal RAM only: one small buffer.
    config.fb_count = 1;
    config.fb_location = CAMERA_FB_IN_DRAM;
    config.grab_mode = CAMERA_GRAB_WHEN_EMPTY;
  }
  esp_err_t err = esp_camera_init(&config);
  if (err != ESP_OK) {
    Serial.printf("[cam] init failed: 0x%x\n", err);
    return false;
  }
  sensor_t* sensor = esp_camera_sensor_get();
  if (sensor == nullptr || sensor->set_framesize(sensor, FRAMESIZE_BY_INDEX[frame_size_index]) != 0) {
    Serial.println("[cam] could not set the frame size");
    esp_camera_deinit();
    return false;
  }
  Serial.printf("[cam] ready: %s, quality %d, %s\n", camlogic::FRAME_SIZES[frame_size_index].name, jpeg_quality,
                psramFound() ? "PSRAM, 2 buffers" : "no PSRAM, 1 buffer");
  read_sensor_settings(sensor);
  apply_settings(wanted, sensor);  // a re-initialised sensor starts from its defaults again
  return true;
}

static void camera_reinit() {
  Serial.println("[cam] re-initialising the camera");
  esp_camera_deinit();
  camera_ready = camera_init();
  if (camera_ready) {
    reinit_failures_in_row = 0;
    capture_failures_in_row = 0;
    return;
  }
  reinit_failures_in_row++;
  reinit_timer.start(now_ms(), 2000UL * reinit_failures_in_row);
  if (reinit_failures_in_row >= REINIT_RETRIES) restart_if_allowed("camera does not come back");
}

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

static void send_hello() {
  char text[256];
  int n = camlogic::format_hello(text, sizeof text, CAMERA_ID, FIRMWARE_VERSION,
                                 camlogic::FRAME_SIZES[frame_size_index].name, jpeg_quality, ESP.getFreeHeap(),
                                 WiFi.RSSI());
  if (n > 0 && ws != nullptr) ws->send(text, (size_t)n);
}

static void send_status() {
  uint32_t now = now_ms();
  float seconds = status_timer.elapsed_ms(now) / 1000.0f;
  camlogic::StatusFigures s;
  // Frames a pong confirmed: what the server has for sure (camserver_link.h, SendLedger).
  s.fps_sent = seconds > 0 ? (ledger.confirmed - frames_at_last_status) / seconds : 0;
  s.free_heap = ESP.getFreeHeap();
  s.rssi = WiFi.RSSI();
  s.reconnects = ws_link.reconnects();
  s.frames_sent = ledger.confirmed;
  s.capture_failures = capture_failures;
  s.frame_size = camlogic::FRAME_SIZES[frame_size_index].name;
  s.quality = jpeg_quality;
  s.max_fps = max_fps;
  s.firmware = FIRMWARE_VERSION;
  s.settings = &applied;
  s.unsupported = unsupported;
  s.ota_error = ota_error;
  s.frames_in_flight = ledger.in_flight();
  s.frames_unconfirmed = ledger.unconfirmed;
  // the quality asked for, when the guard holds it back (not while the camera is down to take it)
  s.quality_refused = quality_guard.allowed(frame_size_index, wanted_quality) != wanted_quality ? wanted_quality : -1;
  s.ota = ota_state;
  char text[1024];
  int n = camlogic::format_status(text, sizeof text, s);
  if (n > 0 && ws != nullptr && ws_link.open) ws->send(text, (size_t)n);
  Serial.printf("[status] %.1f fps, heap %lu, rssi %d, reconnects %lu\n", s.fps_sent, (unsigned long)s.free_heap,
                s.rssi, (unsigned long)ws_link.reconnects());
  frames_at_last_status = ledger.confirmed;
  status_timer.start(now, STATUS_INTERVAL_MS);
}

static void apply_control(const camlogic::Control& c) {
  sensor_t* sensor = esp_camera_sensor_get();
  if (c.frame_size >= 0 && sensor != nullptr) {
    if (c.frame_size > largest_size_index) {
      Serial.printf("[ctl] frame size larger than %s (no PSRAM); ignored\n", camlogic::FRAME_SIZES[largest_size_index].name);
    } else if (sensor->set_framesize(sensor, FRAMESIZE_BY_INDEX[c.frame_size]) == 0) {
      frame_size_index = c.frame_size;
    }
  }
  if (c.quality >= 0) wanted_quality = c.quality;
  // A quality this frame size overflowed the buffer with before is not tried again (QualityGuard):
  // the server sends the same settings on every hello.
  int quality = quality_guard.allowed(frame_size_index, wanted_quality);
  if (quality != wanted_quality && c.quality >= 0) {
    Serial.printf("[ctl] quality %d overflows the JPEG buffer at %s; quality %d instead\n", wanted_quality,
                  camlogic::FRAME_SIZES[frame_size_index].name, quality);
  }
  if (quality != jpeg_quality && sensor != nullptr && sensor->set_quality(sensor, quality) == 0) {
    jpeg_quality = quality;
  }
  if (c.fps > 0) {
    max_fps = c.fps;
    pacer.set_fps(c.fps);
  }
  wanted.merge(c.settings);
  apply_settings(c.settings, camera_ready ? sensor : nullptr);
  Serial.printf("[ctl] now %s, quality %d, %.1f fps\n", camlogic::FRAME_SIZES[frame_size_index].name, jpeg_quality,
                max_fps);
  send_status();  // the applied values, at once
}

static void on_message(WebsocketsMessage message) {
  if (!message.isText()) return;
  String text = message.data();
  camlogic::Control control;
  char err[96];
  if (!camlogic::parse_control(text.c_str(), &control, err, sizeof err)) {
    Serial.printf("[ctl] ignored server message (%s): %s\n", err, text.c_str());
  } else if (control.ota) {
    ota_request = control.ota_request;
    ota_pending = true;  // loop() runs it once this callback has returned
  } else {
    apply_control(control);
  }
}

static void on_event(WebsocketsEvent event, String data) {
  if (event == WebsocketsEvent::GotPong) {
    // The server has every frame sent before the ping this answers.
    probation.confirmed(now_ms(), ledger.ponged(now_ms()));
    return;
  }
  if (event != WebsocketsEvent::ConnectionClosed) return;
  // Also fired inside a refused connect(); ws_link.closed() ignores that one (ws_connect schedules).
  uint32_t delay_ms = ws_link.closed(now_ms(), esp_random());
  if (delay_ms > 0) {
    ledger.cut();
    probation.link_lost();
    Serial.printf("[ws] closed; reconnecting in %lu ms\n", (unsigned long)delay_ms);
  }
}

// ---------------------------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------------------------

// Closes and deletes the client; schedules nothing.
static void ws_release() {
  ws_link.open = false;  // first: the close below fires ConnectionClosed, which must not schedule
  if (ws != nullptr) {
    ws->close();
    delete ws;
    ws = nullptr;
  }
}

// The sketch ends the link (WiFi lost, an update that failed): what no pong confirmed stays unconfirmed,
// and the next attempt is due as soon as WiFi is there, at any uptime.
static void ws_drop() {
  if (ws_link.open) {
    ledger.cut();
    probation.link_lost();
  }
  ws_release();
  ws_link.dropped(now_ms());
}

// SERVER_HOST "camserver.local": asks the LAN for the address (blocks loop() up to MDNS_QUERY_MS, while
// no connection is open). Returns where to connect, or nullptr when the name is not found and there
// is no SERVER_FALLBACK_HOST.
static const char* server_address() {
  if (server_host.lookup_due()) {
    if (!mdns_started) mdns_started = MDNS.begin(CAMERA_ID);  // the board answers as CAMERA_ID.local too
    IPAddress ip = MDNS.queryHost(server_host.query, MDNS_QUERY_MS);
    if (server_host.looked_up(ip[0], ip[1], ip[2], ip[3])) {
      Serial.printf("[mdns] %s is %s\n", server_host.host, server_host.address);
    } else if (server_host.fallback[0] != '\0') {
      Serial.printf("[mdns] %s not found; trying SERVER_FALLBACK_HOST %s\n", server_host.host, server_host.fallback);
    } else {
      Serial.printf("[mdns] %s not found (%lu tries)\n", server_host.host, (unsigned long)server_host.lookups_failed);
    }
  }
  return server_host.connect_host();
}

static void ws_connect() {
  ws_release();
  const char* host = server_address();
  if (host == nullptr) {
    uint32_t delay_ms = ws_link.connect_failed(now_ms(), esp_random());
    Serial.printf("[ws] no address for %s yet; asking again in %lu ms\n", server_host.host, (unsigned long)delay_ms);
    return;
  }
  ws = new WebsocketsClient();
  ws->onMessage(on_message);
  ws->onEvent(on_event);
  if (auth_header[0] != '\0') ws->addHeader("Authorization", auth_header);
  Serial.printf("[ws] connecting to ws://%s:%d%s\n", host, SERVER_PORT, ws_path);
  if (ws->connect(host, SERVER_PORT, ws_path)) {
    ws_link.connected();
    server_host.connected();
    ledger.opened(now_ms());
    status_timer.start(now_ms(), STATUS_INTERVAL_MS);
    frames_at_last_status = ledger.confirmed;
    Serial.println("[ws] connected");
    send_hello();
    send_status();  // the settings as applied, and the last update's error, without waiting 5 s
    return;
  }
  uint32_t delay_ms = ws_link.connect_failed(now_ms(), esp_random());
  Serial.printf("[ws] connect failed; retry in %lu ms\n", (unsigned long)delay_ms);
  if (server_host.connect_failed()) Serial.printf("[mdns] %s will be looked up again\n", server_host.host);
  ws_release();
}

// No pong within SendLedger::PONG_WITHIN_MS: the link is dead even if the library still calls it open.
static void ws_dead() {
  uint32_t unconfirmed = ledger.cut();
  probation.link_lost();
  uint32_t delay_ms = ws_link.closed(now_ms(), esp_random());
  ws_release();
  Serial.printf("[ws] no pong for %lu ms (%lu frames unconfirmed); reconnecting in %lu ms\n",
                (unsigned long)camlogic::SendLedger::PONG_WITHIN_MS, (unsigned long)unconfirmed,
                (unsigned long)delay_ms);
}

// ---------------------------------------------------------------------------------------------
// Firmware update over the air
// ---------------------------------------------------------------------------------------------

// Downloads the image with HTTPUpdate into the other app slot and reboots into it. On any failure the
// running firmware goes on, and ota_error says why in every status.
static void run_update(const camlogic::OtaRequest& request) {
  char why[96];
  if (!camlogic::ota_should_start(request, ESP.getFreeSketchSpace(), why, sizeof why)) {
    snprintf(ota_error, sizeof ota_error, "%s", why);
    Serial.printf("[ota] refused: %s\n", why);
    send_status();
    return;
  }
  ota_error[0] = '\0';
  ota_state = nullptr;  // a rollback before this update is old news
  Serial.printf("[ota] updating from %s (%lu bytes); firmware %s until then\n", request.url,
                (unsigned long)request.size, FIRMWARE_VERSION);
  // Stop streaming. The download blocks loop() for seconds, so pings would go unanswered: close the
  // connection rather than let the server time it out. Stop the camera too: its DMA keeps filling
  // frame buffers while the flash is written, and its memory is better left to the download.
  ws_drop();
  esp_camera_deinit();
  camera_ready = false;
  WiFiClient client;
  httpUpdate.rebootOnUpdate(false);  // reboot only after checking the digest against the message's
  HTTPUpdateResult result = httpUpdate.update(client, request.url, FIRMWARE_VERSION);
  if (result == HTTP_UPDATE_OK) {
    String written = Update.md5String();
    if (camlogic::md5_equal(written.c_str(), request.md5)) {
      Serial.println("[ota] image written and verified; rebooting into it");
      delay(100);
      ESP.restart();
      return;
    }
    // HTTPUpdate checked the image against the server's x-MD5 header, but it is not the image the
    // control message announced: keep booting the running firmware.
    esp_ota_set_boot_partition(esp_ota_get_running_partition());
    snprintf(ota_error, sizeof ota_error, "md5 mismatch: wrote %s", written.c_str());
  } else if (result == HTTP_UPDATE_NO_UPDATES) {
    snprintf(ota_error, sizeof ota_error, "the server answered 304 Not Modified");
  } else {
    // e.g. "Update error: MD5 Check Failed", "File Not Found (404)", "Server Did Not Report Size"
    snprintf(ota_error, sizeof ota_error, "%s (%d)", httpUpdate.getLastErrorString().c_str(),
             httpUpdate.getLastError());
  }
  Serial.printf("[ota] failed: %s; still running firmware %s\n", ota_error, FIRMWARE_VERSION);
  camera_ready = camera_init();
  if (!camera_ready) reinit_timer.start(now_ms(), 2000);
  // ws_drop() above made the next attempt due: loop() reconnects at once, and the status after the
  // hello reports the error
}

static void wifi_start() {
  WiFi.mode(WIFI_STA);
  WiFi.setSleep(false);  // modem sleep adds 100+ ms of latency and drops frames
  WiFi.setAutoReconnect(true);
  WiFi.begin(WIFI_SSID, WIFI_PASSWORD);
  Serial.printf("[wifi] joining %s\n", WIFI_SSID);
  uint32_t start = now_ms();
  while (WiFi.status() != WL_CONNECTED && now_ms() - start < 20000) {
    delay(250);
  }
  if (WiFi.status() == WL_CONNECTED) {
    Serial.printf("[wifi] connected, ip %s, rssi %d\n", WiFi.localIP().toString().c_str(), WiFi.RSSI());
  } else {
    Serial.println("[wifi] not connected yet; will keep trying");
  }
}

static void wifi_keep() {
  uint32_t now = now_ms();
  if (!wifi_keeper.lost) {
    Serial.println("[wifi] lost");
    ws_drop();  // the connection is gone with WiFi; the next attempt is due once WiFi is back
  }
  uint32_t delay_ms = 0;
  if (wifi_keeper.down(now, esp_random(), &delay_ms)) {
    Serial.printf("[wifi] reconnecting (next try in %lu ms)\n", (unsigned long)delay_ms);
    WiFi.disconnect();
    WiFi.begin(WIFI_SSID, WIFI_PASSWORD);
  }
  if (wifi_keeper.down_for_ms(now) > WIFI_GIVE_UP_MS) restart_if_allowed("no WiFi for 5 minutes");
}

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

// A failed capture at a high quality is most likely a frame that overflowed the JPEG buffer (the
// driver drops it and esp_camera_fb_get() gives up after 4 s): raise the quality at once rather than
// re-initialise the camera with the same settings, and say so in the status (quality_refused).
static bool step_quality_back() {
  int quality = quality_guard.capture_failed(frame_size_index, jpeg_quality,
                                             camlogic::jpeg_buffer_bytes(largest_size_index));
  sensor_t* sensor = esp_camera_sensor_get();
  if (quality < 0 || sensor == nullptr || sensor->set_quality(sensor, quality) != 0) return false;
  Serial.printf("[cam] capture failed at %s, quality %d (the JPEG buffer holds %lu bytes); quality %d from now on\n",
                camlogic::FRAME_SIZES[frame_size_index].name, jpeg_quality,
                (unsigned long)camlogic::jpeg_buffer_bytes(largest_size_index), quality);
  jpeg_quality = quality;
  capture_failures_in_row = 0;
  if (ws_link.open) send_status();
  return true;
}

static void send_frame() {
  camera_fb_t* fb = esp_camera_fb_get();
  if (fb == nullptr) {
    capture_failures++;
    if (step_quality_back()) return;
    capture_failures_in_row++;
    Serial.println("[cam] capture failed");
    if (capture_failures_in_row >= CAPTURE_RETRIES) camera_reinit();
    return;
  }
  capture_failures_in_row = 0;
  // true whenever the connection looks open (0.5.4 does not check the write): the ledger counts the
  // frame as in flight until a pong confirms it
  bool ok = ws->sendBinary((const char*)fb->buf, fb->len);
  esp_camera_fb_return(fb);  // give the buffer back at once so the driver can fill it again
  if (ok) {
    ledger.sent();
  } else {
    Serial.println("[ws] send failed");
  }
}

// The running image's state: a freshly updated one is on probation; one the bootloader went back to
// reports the rollback to the server.
static void check_image() {
  const esp_partition_t* running = esp_ota_get_running_partition();
  esp_ota_img_states_t state = ESP_OTA_IMG_UNDEFINED;
  bool pending = running != nullptr && esp_ota_get_state_partition(running, &state) == ESP_OK &&
                 state == ESP_OTA_IMG_PENDING_VERIFY;
  probation.boot(pending, now_ms());
  const esp_partition_t* invalid = esp_ota_get_last_invalid_partition();
  if (pending) {
    Serial.printf("[ota] firmware %s is on probation: valid once it has streamed for %lu s, "
                  "else rolled back after %lu s\n",
                  FIRMWARE_VERSION, (unsigned long)(camlogic::Probation::STREAM_MS / 1000),
                  (unsigned long)(camlogic::Probation::GIVE_UP_MS / 1000));
  } else if (invalid != nullptr) {
    ota_state = "rolled_back";
    Serial.printf("[ota] the update in %s did not prove itself: rolled back to firmware %s\n", invalid->label,
                  FIRMWARE_VERSION);
  }
}

static void keep_probation(uint32_t now) {
  switch (probation.poll(now)) {
    case camlogic::Probation::MARK_VALID:
      Serial.printf("[ota] firmware %s streamed for %lu s: marked valid\n", FIRMWARE_VERSION,
                    (unsigned long)(camlogic::Probation::STREAM_MS / 1000));
      esp_ota_mark_app_valid_cancel_rollback();
      break;
    case camlogic::Probation::ROLL_BACK:
      Serial.printf("[ota] firmware %s did not stream within %lu s: rolling back\n", FIRMWARE_VERSION,
                    (unsigned long)(camlogic::Probation::GIVE_UP_MS / 1000));
      delay(100);
      {
        esp_err_t err = esp_ota_mark_app_invalid_rollback_and_reboot();  // returns only when it could not
        Serial.printf("[ota] could not roll back (0x%x): staying on firmware %s\n", err, FIRMWARE_VERSION);
      }
      break;
    case camlogic::Probation::WAIT:
      break;
  }
}

void setup() {
  // The brownout detector stays on (the tutorial disables it): a sagging supply resets the board
  // rather than let it run on corrupt, also while an update writes the flash. A board that resets
  // when WiFi or the lamp starts needs a solid 5 V / 2 A supply (see firmware/README.md).
  restart_guard.start(now_ms(), MIN_UPTIME_BEFORE_RESTART_MS);
  Serial.begin(SERIAL_BAUD);
  Serial.printf("[boot] camserver firmware %s, camera id %s\n", FIRMWARE_VERSION, CAMERA_ID);
  if (!camlogic::build_ws_path(CAMERA_ID, ws_path, sizeof ws_path)) {
    Serial.println("[boot] CAMERA_ID in config.h is invalid: use letters, digits, '-', '_' (max 32)");
    while (true) delay(1000);
  }
  camlogic::build_auth_header(CAMERA_TOKEN, auth_header, sizeof auth_header);
  if (!server_host.init(SERVER_HOST, SERVER_FALLBACK_HOST)) {
    Serial.println("[boot] SERVER_HOST in config.h is empty or longer than 63 characters");
    while (true) delay(1000);
  }
  frame_size_index = camlogic::frame_size_index(FRAME_SIZE);
  if (frame_size_index < 0) frame_size_index = camlogic::frame_size_index("VGA");
  lamp_ready = lamp_setup();
  if (lamp_ready) {
    applied.set(camlogic::SET_LAMP, 0);
  } else {
    unsupported |= camlogic::setting_bit(camlogic::SET_LAMP);  // said in every status
  }
  check_image();
  wifi_start();  // WiFi first: starting it after the camera causes brownouts on many boards
  camera_ready = camera_init();
  if (!camera_ready) reinit_timer.start(now_ms(), 2000);
}

void loop() {
  uint32_t now = now_ms();
  restart_guard.due(now);  // looked at every loop, so it is due from a minute after boot on, at any uptime
  keep_probation(now);
  if (WiFi.status() != WL_CONNECTED) {
    wifi_keep();
    delay(50);
    return;
  }
  if (wifi_keeper.up()) Serial.printf("[wifi] back, ip %s\n", WiFi.localIP().toString().c_str());
  if (!camera_ready && reinit_timer.due(now)) camera_reinit();
  if (!ws_link.open) {
    if (ws != nullptr) ws_release();  // closed by the server: closed() scheduled the retry with the backoff
    if (ws_link.due(now)) ws_connect();
    delay(10);
    return;
  }
  ws->poll();  // every loop: answers pings, reads control messages, notices a close
  if (ota_pending) {
    ota_pending = false;
    run_update(ota_request);  // returns only when the update failed (or was refused)
    return;
  }
  if (!ws_link.open) return;
  if (ledger.dead(now)) {
    ws_dead();
    return;
  }
  if (ledger.ping_due(now) && ws->ping()) ledger.pinged(now);
  if (status_timer.due(now)) send_status();
  if (camera_ready && pacer.due(now)) send_frame();
  delay(1);
}
