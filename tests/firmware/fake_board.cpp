// Definitions of the calls tests/firmware/stubs declares, against the simulated world of fake_board.h.
// A separate translation unit from the sketch, as the core is: verifyRollbackLater() here is the core's
// weak default, which the sketch may replace.
#include "fake_board.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <deque>
#include <string>

#include "Arduino.h"
#include "ArduinoWebsockets.h"
#include "ESPmDNS.h"
#include "HTTPUpdate.h"
#include "Update.h"
#include "WiFi.h"
#include "WiFiClient.h"
#include "driver/ledc.h"
#include "esp_camera.h"
#include "esp_ota_ops.h"
#include "soc/rtc_cntl_reg.h"
#include "soc/soc.h"

FakeBoard sim;

// --- Arduino core ----------------------------------------------------------------------------

static char* copy_text(const char* s) {
  size_t n = strlen(s ? s : "");
  char* p = (char*)malloc(n + 1);
  memcpy(p, s ? s : "", n + 1);
  return p;
}
String::String(const char* s) : buffer_(copy_text(s)) {}
String::String(const String& other) : buffer_(copy_text(other.buffer_)) {}
String& String::operator=(const String& other) {
  if (this != &other) {
    free(buffer_);
    buffer_ = copy_text(other.buffer_);
  }
  return *this;
}
String::~String() { free(buffer_); }
const char* String::c_str() const { return buffer_; }
unsigned int String::length() const { return (unsigned int)strlen(buffer_); }

size_t Print::printf(const char* format, ...) {
  char line[512];
  va_list args;
  va_start(args, format);
  int n = vsnprintf(line, sizeof line, format, args);
  va_end(args);
  sim.log.push_back(line);
  if (getenv("FAKE_BOARD_LOG")) fprintf(stderr, "%10.3f %s", sim.now / 1000.0, line);
  return n > 0 ? (size_t)n : 0;
}
size_t Print::print(const char* text) { return printf("%s", text); }
size_t Print::println(const char* text) { return printf("%s\n", text); }
size_t Print::println(const String& text) { return printf("%s\n", text.c_str()); }
void HardwareSerial::begin(unsigned long, uint32_t, int8_t, int8_t, bool, unsigned long, uint8_t) {}
HardwareSerial Serial;

uint32_t EspClass::getFreeHeap() { return 150000; }
uint32_t EspClass::getFreeSketchSpace() { return 0x1E0000; }
void EspClass::restart() {
  sim.restarted = true;
  fake_reset(0);
}
EspClass ESP;

unsigned long millis() { return (unsigned long)(uint32_t)sim.now; }  // 32 bits, as on the board
void delay(uint32_t ms) {
  sim.now += ms;
  fake_wifi_update();
}
uint32_t esp_random(void) { return (uint32_t)rand() * 2654435761u ^ (uint32_t)rand(); }
bool psramFound() { return true; }
extern "C" __attribute__((weak)) bool verifyRollbackLater() { return false; }

void stub_write_peri_reg(uint32_t addr, uint32_t val) {
  if (addr == RTC_CNTL_BROWN_OUT_REG) sim.brownout_writes.push_back(val);
}

// --- WiFi: association takes FAKE_ASSOC_MS; the core's auto-reconnect starts a new attempt after a
// failed one and after a loss; a begin() or disconnect() during an attempt aborts it --------------

static void start_attempt() {
  sim.wifi.attempting = true;
  sim.wifi.attempt_done = sim.now + FAKE_ASSOC_MS;
}

void fake_wifi_update() {
  FakeWifi& w = sim.wifi;
  if (w.connected && !w.ap_up) {
    w.connected = false;
    w.epoch++;
    if (w.auto_reconnect) start_attempt();
  }
  if (w.attempting && sim.now >= w.attempt_done) {
    w.attempting = false;
    if (w.ap_up && !w.ap_refuses) {
      w.connected = true;
    } else if (w.auto_reconnect && !w.ap_refuses) {
      start_attempt();  // WIFI_REASON_NO_AP_FOUND is on the core's list: it tries again
    }  // WIFI_REASON_AUTH_FAIL is not: the core leaves the station idle
  }
}

IPAddress::IPAddress() : bytes_() {}
IPAddress::IPAddress(uint8_t a, uint8_t b, uint8_t c, uint8_t d) : bytes_{a, b, c, d} {}
String IPAddress::toString() const {
  char text[16];
  snprintf(text, sizeof text, "%u.%u.%u.%u", bytes_[0], bytes_[1], bytes_[2], bytes_[3]);
  return String(text);
}
uint8_t IPAddress::operator[](int index) const { return bytes_[index & 3]; }

wl_status_t WiFiClass::begin(const char*, const char*, int32_t, const uint8_t*, bool) {
  sim.wifi.sketch_begins++;
  sim.wifi.begin_at.push_back(sim.now);
  if (sim.wifi.attempting) sim.wifi.aborted++;
  if (sim.wifi.connected) {
    sim.wifi.connected = false;
    sim.wifi.epoch++;
  }
  start_attempt();
  return WL_DISCONNECTED;
}
wl_status_t WiFiClass::status() {
  fake_wifi_update();
  return sim.wifi.connected ? WL_CONNECTED : WL_DISCONNECTED;
}
bool WiFiClass::mode(wifi_mode_t) { return true; }
bool WiFiClass::setSleep(bool) { return true; }
bool WiFiClass::setAutoReconnect(bool on) {
  sim.wifi.auto_reconnect = on;
  return true;
}
bool WiFiClass::disconnect(bool, bool) {
  if (sim.wifi.attempting) sim.wifi.aborted++;
  sim.wifi.attempting = false;
  if (sim.wifi.connected) sim.wifi.epoch++;
  sim.wifi.connected = false;
  return true;
}
int8_t WiFiClass::RSSI() { return -60; }
IPAddress WiFiClass::localIP() { return IPAddress(192, 168, 1, 50); }
WiFiClass WiFi;

WiFiClient::WiFiClient() {}
WiFiClient::~WiFiClient() {}
int WiFiClient::connect(const char*, uint16_t) { return 0; }
void WiFiClient::stop() {}

bool MDNSResponder::begin(const char*) { return true; }
void MDNSResponder::end() {}
IPAddress MDNSResponder::queryHost(const char*, uint32_t) { return IPAddress(); }
IPAddress MDNSResponder::queryHost(String, uint32_t) { return IPAddress(); }
MDNSResponder MDNS;

HTTPUpdate::HTTPUpdate(void) {}
void HTTPUpdate::rebootOnUpdate(bool) {}
void HTTPUpdate::setLedPin(int, uint8_t) {}
t_httpUpdate_return HTTPUpdate::update(WiFiClient&, const String&, const String&) { return HTTP_UPDATE_FAILED; }
t_httpUpdate_return HTTPUpdate::update(WiFiClient&, const String&, uint16_t, const String&, const String&) {
  return HTTP_UPDATE_FAILED;
}
int HTTPUpdate::getLastError(void) { return -1; }
String HTTPUpdate::getLastErrorString(void) { return String("simulated"); }
HTTPUpdate httpUpdate;
bool UpdateClass::setMD5(const char*) { return true; }
String UpdateClass::md5String(void) { return String(""); }
bool UpdateClass::end(bool) { return true; }
void UpdateClass::abort() {}
uint8_t UpdateClass::getError() { return 0; }
UpdateClass Update;

esp_err_t ledc_timer_config(const ledc_timer_config_t*) { return ESP_OK; }
esp_err_t ledc_channel_config(const ledc_channel_config_t*) { return ESP_OK; }
esp_err_t ledc_set_duty(ledc_mode_t, ledc_channel_t, uint32_t) { return ESP_OK; }
esp_err_t ledc_update_duty(ledc_mode_t, ledc_channel_t) { return ESP_OK; }

// --- Camera: the driver's JPEG buffer is sized for the frame size given at init; a frame that does not
// fit is dropped, and esp_camera_fb_get() returns NULL after its 4 s timeout. Quality 4 to 10 at SXGA
// and UXGA does not fit (the failing combination). -----------------------------------------

static sensor_t sensor;
static uint8_t frame_bytes[64];
static camera_fb_t frame;

static int set_int(sensor_t*, int) { return 0; }
static int set_gain(sensor_t*, gainceiling_t) { return 0; }
static int set_framesize(sensor_t*, framesize_t size) {
  if (size > (framesize_t)sim.camera.init_framesize) return -1;
  sim.camera.framesize = size;
  return 0;
}
static int set_quality(sensor_t*, int quality) {
  if (quality < 0 || quality > 63) return -1;
  sim.camera.quality = quality;
  return 0;
}

esp_err_t esp_camera_init(const camera_config_t* config) {
  sim.camera.inited = true;
  sim.camera.init_framesize = sim.camera.framesize = config->frame_size;
  sim.camera.quality = config->jpeg_quality;
  memset(&sensor, 0, sizeof sensor);
  sensor.set_framesize = set_framesize;
  sensor.set_quality = set_quality;
  sensor.set_gainceiling = set_gain;
  int (**fns[])(sensor_t*, int) = {
      &sensor.set_contrast, &sensor.set_brightness, &sensor.set_saturation, &sensor.set_colorbar,
      &sensor.set_whitebal, &sensor.set_gain_ctrl, &sensor.set_exposure_ctrl, &sensor.set_hmirror,
      &sensor.set_vflip, &sensor.set_aec2, &sensor.set_awb_gain, &sensor.set_agc_gain, &sensor.set_aec_value,
      &sensor.set_special_effect, &sensor.set_wb_mode, &sensor.set_ae_level, &sensor.set_dcw, &sensor.set_bpc,
      &sensor.set_wpc, &sensor.set_raw_gma, &sensor.set_lenc,
  };  // set_sharpness stays NULL, as on the OV2640
  for (auto fn : fns) *fn = set_int;
  return ESP_OK;
}
esp_err_t esp_camera_deinit() {
  sim.camera.inited = false;
  return ESP_OK;
}
camera_fb_t* esp_camera_fb_get() {
  if (!sim.camera.inited) return nullptr;
  if (sim.camera.framesize >= FRAMESIZE_SXGA && sim.camera.quality <= 10) {
    sim.camera.failures++;
    delay(4000);  // the driver's timeout
    return nullptr;
  }
  frame.buf = frame_bytes;
  frame.len = sizeof frame_bytes;
  return &frame;
}
void esp_camera_fb_return(camera_fb_t*) {}
sensor_t* esp_camera_sensor_get() { return sim.camera.inited ? &sensor : nullptr; }

// --- OTA data ---------------------------------------------------------------------------------------

static esp_partition_t slots[2];

static void name_slots() {
  for (int i = 0; i < 2; i++) {
    snprintf(slots[i].label, sizeof slots[i].label, "app%d", i);
    slots[i].address = 0x10000 + i * 0x1E0000;
    slots[i].size = 0x1E0000;
  }
}
const esp_partition_t* esp_ota_get_running_partition(void) {
  name_slots();
  return &slots[sim.flash->running];
}
const esp_partition_t* esp_ota_get_next_update_partition(const esp_partition_t*) {
  name_slots();
  return &slots[1 - sim.flash->running];
}
esp_err_t esp_ota_set_boot_partition(const esp_partition_t*) { return ESP_OK; }
esp_err_t esp_ota_get_state_partition(const esp_partition_t* partition, esp_ota_img_states_t* state) {
  int i = partition == &slots[1] ? 1 : 0;
  if (sim.flash->state[i] == ESP_OTA_IMG_UNDEFINED) return 0x105;  // ESP_ERR_NOT_FOUND
  *state = (esp_ota_img_states_t)sim.flash->state[i];
  return ESP_OK;
}
esp_err_t esp_ota_mark_app_valid_cancel_rollback(void) {
  sim.flash->state[sim.flash->running] = ESP_OTA_IMG_VALID;
  sim.flash->marked_valid++;
  return ESP_OK;
}
esp_err_t esp_ota_mark_app_invalid_rollback_and_reboot(void) {
  sim.flash->rollbacks_asked++;
  sim.flash->state[sim.flash->running] = ESP_OTA_IMG_INVALID;
  sim.flash->running = 1 - sim.flash->running;
  fake_reset(0);
}
const esp_partition_t* esp_ota_get_last_invalid_partition(void) {
  name_slots();
  for (int i = 0; i < 2; i++) {
    uint32_t s = sim.flash->state[i];
    if (s == ESP_OTA_IMG_INVALID || s == ESP_OTA_IMG_ABORTED) return &slots[i];
  }
  return nullptr;
}

void fake_init_arduino() {
  if (!verifyRollbackLater() && sim.flash->state[sim.flash->running] == ESP_OTA_IMG_PENDING_VERIFY) {
    esp_ota_mark_app_valid_cancel_rollback();
  }
}

[[noreturn]] void fake_reset(int code) {
  fflush(stdout);
  fflush(stderr);
  _exit(code);
}

// --- ArduinoWebsockets: a connection to the simulated server. sendBinary() returns true whenever the
// connection looks open, as 0.5.4 does; what arrives depends on the link. -----------------------------

using namespace websockets;

struct FakeSocket {
  bool open = false;
  uint32_t wifi_epoch = 0;
  uint32_t id = 0;
  int pongs_due = 0;
  std::deque<std::string> inbox;  // server -> board texts
  MessageCallback on_message_full;
  PartialMessageCallback on_message;
  EventCallback on_event_full;
  PartialEventCallback on_event;

  bool healthy() const {
    return open && sim.wifi.connected && sim.wifi.epoch == wifi_epoch && sim.server.up &&
           sim.server.connection == id && !sim.server.blackhole;
  }
  void event(WebsocketsClient& c, WebsocketsEvent e) {
    if (on_event) on_event(e, String(""));
    if (on_event_full) on_event_full(c, e, String(""));
  }
  void message(WebsocketsClient& c, const std::string& text) {
    WebsocketsMessage m;
    m.data_ = String(text.c_str());
    m.text_ = true;
    if (on_message) on_message(m);
    if (on_message_full) on_message_full(c, m);
  }
};

static FakeSocket& sock(void* p) { return *static_cast<FakeSocket*>(p); }

WebsocketsMessage::WebsocketsMessage() : data_(""), text_(false) {}
WSInterfaceString WebsocketsMessage::data() const { return data_; }
bool WebsocketsMessage::isText() const { return text_; }
bool WebsocketsMessage::isBinary() const { return !text_; }
size_t WebsocketsMessage::length() const { return data_.length(); }

WebsocketsClient::WebsocketsClient() : fake_(new FakeSocket) {}
WebsocketsClient::~WebsocketsClient() { delete static_cast<FakeSocket*>(fake_); }
void WebsocketsClient::addHeader(const WSInterfaceString, const WSInterfaceString) {}
bool WebsocketsClient::connect(const WSInterfaceString) { return false; }
bool WebsocketsClient::connect(const WSInterfaceString, const int, const WSInterfaceString) {
  FakeSocket& s = sock(fake_);
  sim.server.attempt_at.push_back(sim.now);
  delay(20);
  if (!sim.wifi.connected || !sim.server.up) {
    delay(sim.server.up ? 0 : 1000);  // a refused or timed-out TCP connect
    return false;
  }
  s.open = true;
  s.wifi_epoch = sim.wifi.epoch;
  s.id = ++sim.server.connection;  // the server takes the newest connection of a camera id
  sim.server.blackhole = false;
  sim.server.connections++;
  return true;
}
void WebsocketsClient::onMessage(const MessageCallback callback) { sock(fake_).on_message_full = callback; }
void WebsocketsClient::onMessage(const PartialMessageCallback callback) { sock(fake_).on_message = callback; }
void WebsocketsClient::onEvent(const EventCallback callback) { sock(fake_).on_event_full = callback; }
void WebsocketsClient::onEvent(const PartialEventCallback callback) { sock(fake_).on_event = callback; }
bool WebsocketsClient::available(const bool) {
  FakeSocket& s = sock(fake_);
  // The library notices a close only when the TCP connection reports one: the server ended it.
  if (s.open && (!sim.server.up || sim.server.connection != s.id) && sim.wifi.epoch == s.wifi_epoch &&
      sim.wifi.connected) {
    s.open = false;
    s.event(*this, WebsocketsEvent::ConnectionClosed);
  }
  return s.open;
}
bool WebsocketsClient::poll() {
  FakeSocket& s = sock(fake_);
  if (!available()) return false;
  bool got = false;
  if (!s.healthy()) return false;
  while (s.pongs_due > 0 && s.open) {
    s.pongs_due--;
    s.event(*this, WebsocketsEvent::GotPong);
    got = true;
  }
  if (!sim.server.push.empty()) {
    s.inbox.push_back(sim.server.push);
    sim.server.push.clear();
  }
  while (!s.inbox.empty() && s.open) {
    std::string text = s.inbox.front();
    s.inbox.pop_front();
    s.message(*this, text);
    got = true;
  }
  return got;
}
static bool send_text(FakeSocket& s, const char* data, size_t len) {
  if (!s.open) return false;
  if (!s.healthy()) return true;
  std::string text(data, len);
  sim.server.texts.push_back(text);
  sim.server.frames_at_text.push_back(sim.server.frames);
  if (text.find("\"type\":\"hello\"") != std::string::npos && !sim.server.desired.empty()) {
    s.inbox.push_back(sim.server.desired);
  }
  return true;
}
bool WebsocketsClient::send(const WSInterfaceString& data) {
  return send_text(sock(fake_), data.c_str(), data.length());
}
bool WebsocketsClient::send(const char* data) { return send_text(sock(fake_), data, strlen(data)); }
bool WebsocketsClient::send(const char* data, const size_t len) { return send_text(sock(fake_), data, len); }
bool WebsocketsClient::sendBinary(const WSInterfaceString data) { return sendBinary(data.c_str(), data.length()); }
bool WebsocketsClient::sendBinary(const char*, const size_t) {
  FakeSocket& s = sock(fake_);
  if (!available()) return false;
  if (s.healthy()) {
    sim.server.frames++;
    sim.server.last_frame_at = sim.now;
  }
  return true;  // 0.5.4: "TODO dont assume success"
}
bool WebsocketsClient::ping(const WSInterfaceString) {
  FakeSocket& s = sock(fake_);
  if (!available()) return false;
  if (s.healthy()) s.pongs_due++;
  return true;
}
void WebsocketsClient::close(const CloseReason) {
  FakeSocket& s = sock(fake_);
  if (!s.open) return;
  s.open = false;
  s.event(*this, WebsocketsEvent::ConnectionClosed);
}
