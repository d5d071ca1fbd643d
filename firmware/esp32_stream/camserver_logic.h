// Pure logic of the camserver ESP32 firmware: no Arduino, no ESP-IDF, no allocation.
// The sketch uses it on the board; tests/firmware builds it with g++ on the host and tests it.
// camserver_link.h has the timers and links, camserver_messages.h the JSON texts.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "camserver_link.h"  // timers, backoff, the WiFi and WebSocket links, the image's probation

namespace camlogic {

// ---------------------------------------------------------------------------------------------
// Camera id and WebSocket path: ws://HOST:PORT/ws/<camera_id>
// ---------------------------------------------------------------------------------------------

// Letters, digits, '-' and '_', 1 to 32 characters: what the server accepts.
inline bool valid_camera_id(const char* id) {
  if (id == nullptr) return false;
  size_t n = strlen(id);
  if (n == 0 || n > 32) return false;
  for (size_t i = 0; i < n; i++) {
    char c = id[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

// Writes "/ws/<camera_id>" into out. False if the id is invalid or out is too small.
inline bool build_ws_path(const char* camera_id, char* out, size_t out_len) {
  if (!valid_camera_id(camera_id) || out == nullptr) return false;
  int n = snprintf(out, out_len, "/ws/%s", camera_id);
  return n > 0 && (size_t)n < out_len;
}

// Writes "Bearer <token>" into out; false (and out = "") when there is no token or no room.
inline bool build_auth_header(const char* token, char* out, size_t out_len) {
  if (out == nullptr || out_len == 0) return false;
  out[0] = '\0';
  if (token == nullptr || token[0] == '\0') return false;
  int n = snprintf(out, out_len, "Bearer %s", token);
  if (n <= 0 || (size_t)n >= out_len) {
    out[0] = '\0';
    return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// The server by name: SERVER_HOST "camserver.local" is the name camserver advertises over mDNS.
// The sketch asks the LAN for it with its mDNS client (ESPmDNS MDNS.queryHost(), which takes the
// name without ".local") before connecting, and keeps the address it got until two connections to
// it fail in a row (the server may have a new address after a reboot): then it asks again. While the
// name is not found, SERVER_FALLBACK_HOST (an address) is tried if it is set; otherwise the next
// attempt waits with the link's backoff, as a failed connection does. Any other SERVER_HOST (an
// address, or a name the router's DNS knows) is used as it is.
// ---------------------------------------------------------------------------------------------

// Whether host is an mDNS name: at least one character, then ".local" (any case).
inline bool is_mdns_name(const char* host) {
  if (host == nullptr) return false;
  size_t n = strlen(host);
  static const char suffix[] = ".local";
  const size_t k = sizeof suffix - 1;
  if (n <= k) return false;
  for (size_t i = 0; i < k; i++) {
    char c = host[n - k + i];
    if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
    if (c != suffix[i]) return false;
  }
  return true;
}

struct ServerHost {
  static const uint8_t FORGET_AFTER_FAILURES = 2;  // failed connections in a row to a looked-up address
  char host[64];      // SERVER_HOST as configured
  char query[64];     // the name MDNS.queryHost() takes ("camserver"); "" when host is no mDNS name
  char fallback[64];  // SERVER_FALLBACK_HOST; "" = none
  char address[16];   // the address the last lookup found, dotted; "" = none yet
  uint8_t failures;   // failed connections in a row to `address`
  uint32_t lookups;         // lookups since boot
  uint32_t lookups_failed;  // lookups in a row that found nothing

  ServerHost() : host(), query(), fallback(), address(), failures(0), lookups(0), lookups_failed(0) {}

  // False when host is empty or a name is too long for the buffers (the sketch stops and says so).
  bool init(const char* server_host, const char* fallback_host) {
    *this = ServerHost();
    if (server_host == nullptr || server_host[0] == '\0') return false;
    if (strlen(server_host) >= sizeof host) return false;
    if (fallback_host != nullptr && strlen(fallback_host) >= sizeof fallback) return false;
    snprintf(host, sizeof host, "%s", server_host);
    snprintf(fallback, sizeof fallback, "%s", fallback_host ? fallback_host : "");
    if (is_mdns_name(host)) snprintf(query, sizeof query, "%.*s", (int)(strlen(host) - 6), host);
    return true;
  }

  bool uses_mdns() const { return query[0] != '\0'; }

  // True when MDNS.queryHost(query) must run before the next connection attempt.
  bool lookup_due() const { return uses_mdns() && address[0] == '\0'; }

  // The lookup's answer as four bytes; 0.0.0.0 (what queryHost returns on a timeout) means not found.
  // Returns true when an address was found.
  bool looked_up(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
    lookups++;
    failures = 0;
    if ((a | b | c | d) == 0) {
      address[0] = '\0';
      lookups_failed++;
      return false;
    }
    snprintf(address, sizeof address, "%u.%u.%u.%u", a, b, c, d);
    lookups_failed = 0;
    return true;
  }

  // Where to connect now: the configured host, the address looked up, or the fallback while the
  // name is not found; nullptr when there is nowhere yet (wait, then look up again).
  const char* connect_host() const {
    if (!uses_mdns()) return host;
    if (address[0] != '\0') return address;
    return fallback[0] != '\0' ? fallback : nullptr;
  }

  // A connection attempt failed. After FORGET_AFTER_FAILURES in a row to a looked-up address, the
  // address is forgotten and the next attempt looks the name up again. Returns true when it was.
  bool connect_failed() {
    if (!uses_mdns() || address[0] == '\0') return false;
    if (++failures < FORGET_AFTER_FAILURES) return false;
    address[0] = '\0';
    failures = 0;
    return true;
  }

  void connected() { failures = 0; }
};

// ---------------------------------------------------------------------------------------------
// Frame sizes the control message may name. The sketch maps the index to the camera
// driver's framesize_t; the width and height are for the status message and the tests.
// ---------------------------------------------------------------------------------------------

struct FrameSizeName {
  const char* name;
  uint16_t width;
  uint16_t height;
};

static const FrameSizeName FRAME_SIZES[] = {
    {"QQVGA", 160, 120}, {"QVGA", 320, 240},  {"CIF", 400, 296},   {"HVGA", 480, 320}, {"VGA", 640, 480},
    {"SVGA", 800, 600},  {"XGA", 1024, 768},  {"HD", 1280, 720},   {"SXGA", 1280, 1024}, {"UXGA", 1600, 1200},
};
static const int FRAME_SIZE_COUNT = sizeof(FRAME_SIZES) / sizeof(FRAME_SIZES[0]);

// Index into FRAME_SIZES of a name (case-sensitive, as the server sends it), or -1.
inline int frame_size_index(const char* name) {
  for (int i = 0; i < FRAME_SIZE_COUNT; i++) {
    if (strcmp(FRAME_SIZES[i].name, name) == 0) return i;
  }
  return -1;
}

// ---------------------------------------------------------------------------------------------
// Camera buffers. The esp32-camera driver sizes each JPEG buffer from the frame size given to
// esp_camera_init() (width * height / 5); set_framesize() later does not resize it, so a larger
// frame size would overflow it. The sketch initialises the camera once at the largest size it
// will ever allow, then switches to the wanted size.
// ---------------------------------------------------------------------------------------------

// Bytes of one JPEG frame buffer for a frame size index, as the driver allocates it.
inline uint32_t jpeg_buffer_bytes(int index) {
  if (index < 0 || index >= FRAME_SIZE_COUNT) return 0;
  return (uint32_t)FRAME_SIZES[index].width * FRAME_SIZES[index].height / 5;
}

// The largest frame size index allowed: UXGA with PSRAM; without PSRAM, no_psram_cap.
inline int largest_frame_size_index(bool psram, int no_psram_cap) {
  if (psram) return FRAME_SIZE_COUNT - 1;
  if (no_psram_cap < 0) return 0;
  return no_psram_cap < FRAME_SIZE_COUNT ? no_psram_cap : FRAME_SIZE_COUNT - 1;
}

static const int QUALITY_MIN = 4, QUALITY_MAX = 63;  // esp_camera JPEG quality: lower is better

// A quality the buffer cannot take. The driver's JPEG buffer holds width * height / 5 bytes of the size
// it was initialised at (384,000 at UXGA); a frame that does not fit is dropped, and
// esp_camera_fb_get() returns nothing after its 4 s timeout. High quality at large sizes does that
// (quality 4 to 10 at UXGA and SXGA): every capture fails. So the first failed capture below
// STEP_UNTIL, at a size large enough to overflow, raises the quality (SAFE_QUALITY first, then STEP
// more each time) and remembers it as the floor for that frame size and every larger one, until the
// next boot: the same setting sent again (the server re-sends its settings on every hello) then gets
// the floor at once, with no failed capture. The status reports the quality asked for as
// quality_refused.
struct QualityGuard {
  static const int SAFE_QUALITY = 12;
  static const int STEP = 4;
  static const int STEP_UNTIL = 24;  // a failure at this quality or above is no overflow: re-initialise
  int8_t floor[FRAME_SIZE_COUNT];    // the quality a failure stepped to at each size; 0 = none

  QualityGuard() : floor() {}

  // The quality to use for `wanted` at size `index`: wanted, or the floor where wanted failed before.
  int allowed(int index, int wanted) const {
    int q = wanted;
    for (int i = 0; i <= index && i < FRAME_SIZE_COUNT; i++) {
      if (floor[i] > q) q = floor[i];
    }
    return q;
  }

  // A capture failed at (index, quality) with JPEG buffers of buffer_bytes. Returns the quality to try
  // now, or -1 when a higher quality is not the answer (the sketch counts the failure towards
  // re-initialising the camera): at 24 or above, or at a size whose frames fit at any quality. A frame
  // of fewer than 2 x buffer_bytes pixels (VGA and smaller in UXGA's buffer) would need over half a
  // byte per pixel to overflow, more than the sensor's JPEG makes at quality 4.
  int capture_failed(int index, int quality, uint32_t buffer_bytes) {
    if (index < 0 || index >= FRAME_SIZE_COUNT || quality >= STEP_UNTIL) return -1;
    if ((uint32_t)FRAME_SIZES[index].width * FRAME_SIZES[index].height < 2 * buffer_bytes) return -1;
    int next = quality < SAFE_QUALITY ? SAFE_QUALITY : quality + STEP;
    if (next > QUALITY_MAX) next = QUALITY_MAX;
    floor[index] = (int8_t)next;
    return next;
  }
};

// ---------------------------------------------------------------------------------------------
// Sensor settings and the flash LED: the same table as camserver/ingest/control.py (a test
// compares them). The order is the order of application: automatic modes before the values they
// gate (aec before aec_value, agc before agc_gain, awb_gain before wb_mode).
// ---------------------------------------------------------------------------------------------

enum SettingId {
  SET_BRIGHTNESS, SET_CONTRAST, SET_SATURATION, SET_SHARPNESS, SET_SPECIAL_EFFECT, SET_AWB, SET_AWB_GAIN,
  SET_WB_MODE, SET_AEC, SET_AEC2, SET_AE_LEVEL, SET_AEC_VALUE, SET_AGC, SET_AGC_GAIN, SET_GAINCEILING,
  SET_BPC, SET_WPC, SET_RAW_GMA, SET_LENC, SET_HMIRROR, SET_VFLIP, SET_DCW, SET_COLORBAR, SET_LAMP,
  SETTING_COUNT
};

struct SettingRange {
  const char* name;
  int16_t min;
  int16_t max;
  bool is_switch;  // true/false (or 0/1) in a message, true/false in the status
};

static const SettingRange SETTINGS[SETTING_COUNT] = {
    {"brightness", -2, 2, false},   {"contrast", -2, 2, false},  {"saturation", -2, 2, false},
    {"sharpness", -2, 2, false},    {"special_effect", 0, 6, false}, {"awb", 0, 1, true},
    {"awb_gain", 0, 1, true},       {"wb_mode", 0, 4, false},    {"aec", 0, 1, true},
    {"aec2", 0, 1, true},           {"ae_level", -2, 2, false},  {"aec_value", 0, 1200, false},
    {"agc", 0, 1, true},            {"agc_gain", 0, 30, false},  {"gainceiling", 0, 6, false},
    {"bpc", 0, 1, true},            {"wpc", 0, 1, true},         {"raw_gma", 0, 1, true},
    {"lenc", 0, 1, true},           {"hmirror", 0, 1, true},     {"vflip", 0, 1, true},
    {"dcw", 0, 1, true},            {"colorbar", 0, 1, true},    {"lamp", 0, 100, false},
};
static_assert(SETTING_COUNT <= 32, "settings are kept in a 32-bit mask");

static const float FPS_MIN = 0.1f, FPS_MAX = 30.0f;

// Index into SETTINGS of a name, or -1.
inline int setting_index(const char* name) {
  for (int i = 0; i < SETTING_COUNT; i++) {
    if (strcmp(SETTINGS[i].name, name) == 0) return i;
  }
  return -1;
}

inline uint32_t setting_bit(int id) { return (uint32_t)1 << id; }

// Settings with a value: those a message carries, or those the sketch keeps to apply again after the
// camera is re-initialised (the sensor forgets them).
struct SettingValues {
  uint32_t mask;
  int16_t value[SETTING_COUNT];

  SettingValues() : mask(0), value() {}
  bool has(int id) const { return (mask & setting_bit(id)) != 0; }
  void set(int id, int v) {
    mask |= setting_bit(id);
    value[id] = (int16_t)v;
  }
  // Takes every setting `other` has; keeps the others.
  void merge(const SettingValues& other) {
    for (int i = 0; i < SETTING_COUNT; i++) {
      if (other.has(i)) set(i, other.value[i]);
    }
  }
};

// "brightness must be an integer from -2 to 2" / "hmirror must be true or false"
inline void describe_range(int id, char* out, size_t out_len) {
  const SettingRange& r = SETTINGS[id];
  if (r.is_switch) {
    snprintf(out, out_len, "%s must be true or false", r.name);
  } else {
    snprintf(out, out_len, "%s must be an integer from %d to %d", r.name, r.min, r.max);
  }
}

// ---------------------------------------------------------------------------------------------
// Firmware update over the air: {"ota_url": "http://...", "ota_md5": "<32 hex>", "ota_size": N}
// The image goes into the other app slot of partitions.csv (min_spiffs: two slots of 0x1E0000).
// ---------------------------------------------------------------------------------------------

static const uint32_t OTA_SLOT_BYTES = 0x1E0000;
static const size_t OTA_URL_LEN = 160;  // with the terminating NUL

struct OtaRequest {
  char url[OTA_URL_LEN];
  char md5[33];
  uint32_t size;
};

inline bool is_hex_md5(const char* s) {
  if (s == nullptr || strlen(s) != 32) return false;
  for (int i = 0; i < 32; i++) {
    char c = s[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) return false;
  }
  return true;
}

// Whether two MD5 hex strings are the same digest (case-insensitive).
inline bool md5_equal(const char* a, const char* b) {
  if (!is_hex_md5(a) || !is_hex_md5(b)) return false;
  for (int i = 0; i < 32; i++) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'F') x = (char)(x - 'A' + 'a');
    if (y >= 'A' && y <= 'F') y = (char)(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

// The update decision: true when the board should stop streaming and download the image.
// slot_bytes is the size of the app slot the image would go to (ESP.getFreeSketchSpace(): 0 when
// the partition table has no second slot). On false, err says why and the board keeps running.
inline bool ota_should_start(const OtaRequest& r, uint32_t slot_bytes, char* err, size_t err_len) {
  if (strncmp(r.url, "http://", 7) != 0) {
    if (err && err_len) snprintf(err, err_len, "only http:// URLs are supported");
    return false;
  }
  if (!is_hex_md5(r.md5)) {
    if (err && err_len) snprintf(err, err_len, "bad md5");
    return false;
  }
  if (slot_bytes == 0) {
    if (err && err_len) snprintf(err, err_len, "no OTA app slot: flash the OTA partition table once over USB");
    return false;
  }
  if (r.size == 0 || r.size > slot_bytes) {
    if (err && err_len) {
      snprintf(err, err_len, "image of %lu bytes does not fit the %lu-byte app slot", (unsigned long)r.size,
               (unsigned long)slot_bytes);
    }
    return false;
  }
  return true;
}

}  // namespace camlogic
