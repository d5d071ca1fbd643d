// camserver ESP32-CAM firmware: streams JPEG frames to ws://SERVER_HOST:SERVER_PORT/ws/CAMERA_ID
// and keeps doing so through WiFi drops, server restarts and camera hiccups.
//
// Serial log lines start with a tag: [boot] [wifi] [cam] [ws] [ctl] [status]; firmware/README.md
// explains each one.

#include <Arduino.h>
#include <WiFi.h>
#include <ArduinoWebsockets.h>
#include "esp_camera.h"
#include "soc/soc.h"
#include "soc/rtc_cntl_reg.h"

#include "config.h"
#if __has_include("secrets.h")
#include "secrets.h"
#else
#error "secrets.h is missing: copy secrets.example.h to secrets.h and fill in your WiFi name, password and camera token"
#endif
#include "board_pins.h"
#include "camserver_logic.h"

using namespace websockets;

static const char* FIRMWARE_VERSION = "1.0.0";

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
static char auth_header[160];

static camlogic::WifiKeeper wifi_keeper(1000, 30000);

static camlogic::FramePacer pacer(MAX_FPS);
static int frame_size_index = 0;
static int largest_size_index = 0;  // the size the camera was initialised at: no frame may be larger
static int jpeg_quality = JPEG_QUALITY;
static float max_fps = MAX_FPS;
static bool camera_ready = false;
static int capture_failures_in_row = 0;
static int reinit_failures_in_row = 0;
static uint32_t next_reinit_ms = 0;

static uint32_t frames_sent = 0;
static uint32_t capture_failures = 0;
static uint32_t frames_at_last_status = 0;
static uint32_t last_status_ms = 0;

static void restart_if_allowed(const char* why) {
  if (millis() < MIN_UPTIME_BEFORE_RESTART_MS) {
    Serial.printf("[boot] would restart (%s) but uptime is short; waiting\n", why);
    return;
  }
  Serial.printf("[boot] restarting: %s\n", why);
  delay(100);
  ESP.restart();
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
  next_reinit_ms = millis() + 2000UL * reinit_failures_in_row;
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
  uint32_t now = millis();
  float seconds = (now - last_status_ms) / 1000.0f;
  camlogic::StatusFigures s;
  s.fps_sent = seconds > 0 ? (frames_sent - frames_at_last_status) / seconds : 0;
  s.free_heap = ESP.getFreeHeap();
  s.rssi = WiFi.RSSI();
  s.reconnects = ws_link.reconnects();
  s.frames_sent = frames_sent;
  s.capture_failures = capture_failures;
  s.frame_size = camlogic::FRAME_SIZES[frame_size_index].name;
  s.quality = jpeg_quality;
  s.max_fps = max_fps;
  char text[320];
  int n = camlogic::format_status(text, sizeof text, s);
  if (n > 0 && ws != nullptr && ws_link.open) ws->send(text, (size_t)n);
  Serial.printf("[status] %.1f fps, heap %lu, rssi %d, reconnects %lu\n", s.fps_sent, (unsigned long)s.free_heap,
                s.rssi, (unsigned long)ws_link.reconnects());
  frames_at_last_status = frames_sent;
  last_status_ms = now;
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
  if (c.quality >= 0 && sensor != nullptr && sensor->set_quality(sensor, c.quality) == 0) {
    jpeg_quality = c.quality;
  }
  if (c.fps > 0) {
    max_fps = c.fps;
    pacer.set_fps(c.fps);
  }
  Serial.printf("[ctl] now %s, quality %d, %.1f fps\n", camlogic::FRAME_SIZES[frame_size_index].name, jpeg_quality,
                max_fps);
  send_status();
}

static void on_message(WebsocketsMessage message) {
  if (!message.isText()) return;
  String text = message.data();
  camlogic::Control control;
  char err[64];
  if (camlogic::parse_control(text.c_str(), &control, err, sizeof err)) {
    apply_control(control);
  } else {
    Serial.printf("[ctl] ignored server message (%s): %s\n", err, text.c_str());
  }
}

static void on_event(WebsocketsEvent event, String data) {
  if (event != WebsocketsEvent::ConnectionClosed) return;
  // Also fired inside a refused connect(); ws_link.closed() ignores that one (ws_connect schedules).
  uint32_t delay_ms = ws_link.closed(millis(), esp_random());
  if (delay_ms > 0) Serial.printf("[ws] closed; reconnecting in %lu ms\n", (unsigned long)delay_ms);
}

// ---------------------------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------------------------

static void ws_drop() {
  ws_link.open = false;  // first: the close below fires ConnectionClosed, which must not schedule
  if (ws != nullptr) {
    ws->close();
    delete ws;
    ws = nullptr;
  }
}

static void ws_connect() {
  ws_drop();
  ws = new WebsocketsClient();
  ws->onMessage(on_message);
  ws->onEvent(on_event);
  if (auth_header[0] != '\0') ws->addHeader("Authorization", auth_header);
  Serial.printf("[ws] connecting to ws://%s:%d%s\n", SERVER_HOST, SERVER_PORT, ws_path);
  if (ws->connect(SERVER_HOST, SERVER_PORT, ws_path)) {
    ws_link.connected();
    last_status_ms = millis();
    frames_at_last_status = frames_sent;
    Serial.println("[ws] connected");
    send_hello();
    return;
  }
  uint32_t delay_ms = ws_link.connect_failed(millis(), esp_random());
  Serial.printf("[ws] connect failed; retry in %lu ms\n", (unsigned long)delay_ms);
  ws_drop();
}

static void wifi_start() {
  WiFi.mode(WIFI_STA);
  WiFi.setSleep(false);  // modem sleep adds 100+ ms of latency and drops frames
  WiFi.setAutoReconnect(true);
  WiFi.begin(WIFI_SSID, WIFI_PASSWORD);
  Serial.printf("[wifi] joining %s\n", WIFI_SSID);
  uint32_t start = millis();
  while (WiFi.status() != WL_CONNECTED && millis() - start < 20000) {
    delay(250);
  }
  if (WiFi.status() == WL_CONNECTED) {
    Serial.printf("[wifi] connected, ip %s, rssi %d\n", WiFi.localIP().toString().c_str(), WiFi.RSSI());
  } else {
    Serial.println("[wifi] not connected yet; will keep trying");
  }
}

static void wifi_keep() {
  uint32_t now = millis();
  if (!wifi_keeper.lost) {
    Serial.println("[wifi] lost");
    ws_drop();
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

static void send_frame() {
  camera_fb_t* fb = esp_camera_fb_get();
  if (fb == nullptr) {
    capture_failures++;
    capture_failures_in_row++;
    Serial.println("[cam] capture failed");
    if (capture_failures_in_row >= CAPTURE_RETRIES) camera_reinit();
    return;
  }
  capture_failures_in_row = 0;
  bool ok = ws->sendBinary((const char*)fb->buf, fb->len);
  esp_camera_fb_return(fb);  // give the buffer back at once so the driver can fill it again
  if (ok) {
    frames_sent++;
  } else {
    Serial.println("[ws] send failed");
  }
}

void setup() {
  // The brownout detector resets the board when the camera and WiFi draw current together on a
  // weak supply. Disabling it, as the tutorial does, hides the symptom; the real fix is a solid
  // 5 V / 2 A supply on the 5V pin and short, thick wires (see firmware/README.md).
  WRITE_PERI_REG(RTC_CNTL_BROWN_OUT_REG, 0);
  Serial.begin(SERIAL_BAUD);
  Serial.printf("[boot] camserver firmware %s, camera id %s\n", FIRMWARE_VERSION, CAMERA_ID);
  if (!camlogic::build_ws_path(CAMERA_ID, ws_path, sizeof ws_path)) {
    Serial.println("[boot] CAMERA_ID in config.h is invalid: use letters, digits, '-', '_' (max 32)");
    while (true) delay(1000);
  }
  camlogic::build_auth_header(CAMERA_TOKEN, auth_header, sizeof auth_header);
  frame_size_index = camlogic::frame_size_index(FRAME_SIZE);
  if (frame_size_index < 0) frame_size_index = camlogic::frame_size_index("VGA");
  wifi_start();  // WiFi first: starting it after the camera causes brownouts on many boards
  camera_ready = camera_init();
  if (!camera_ready) next_reinit_ms = millis() + 2000;
}

void loop() {
  uint32_t now = millis();
  if (WiFi.status() != WL_CONNECTED) {
    wifi_keep();
    delay(50);
    return;
  }
  if (wifi_keeper.up()) Serial.printf("[wifi] back, ip %s\n", WiFi.localIP().toString().c_str());
  if (!camera_ready && (int32_t)(now - next_reinit_ms) >= 0) camera_reinit();
  if (!ws_link.open) {
    if (ws != nullptr) ws_drop();
    if (ws_link.due(now)) ws_connect();
    delay(10);
    return;
  }
  ws->poll();  // every loop: answers pings, reads control messages, notices a close
  if (!ws_link.open) return;
  if (now - last_status_ms >= STATUS_INTERVAL_MS) send_status();
  if (camera_ready && pacer.due(now)) send_frame();
  delay(1);
}
