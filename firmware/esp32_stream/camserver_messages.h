// The JSON texts the camserver ESP32 firmware exchanges with the server: the hello and the status it
// sends, the control messages it receives. Pure logic like camserver_logic.h, which it builds on.
#pragma once

#include <stdarg.h>

#include "camserver_logic.h"

namespace camlogic {

// ---------------------------------------------------------------------------------------------
// JSON texts sent to the server.
// ---------------------------------------------------------------------------------------------

// Appends to a fixed buffer; once something does not fit, ok stays false and the text is unusable.
struct JsonWriter {
  char* out;
  size_t cap;
  size_t len;
  bool ok;

  JsonWriter(char* buffer, size_t capacity) : out(buffer), cap(capacity), len(0), ok(buffer != nullptr && capacity > 0) {
    if (ok) out[0] = '\0';
  }

  void append(const char* format, ...) __attribute__((format(printf, 2, 3))) {
    if (!ok) return;
    va_list args;
    va_start(args, format);
    int n = vsnprintf(out + len, cap - len, format, args);
    va_end(args);
    if (n < 0 || (size_t)n >= cap - len) {
      ok = false;
      return;
    }
    len += (size_t)n;
  }

  // A JSON string: quotes, backslashes and control characters escaped.
  void string(const char* s) {
    append("\"");
    for (const char* p = s; p && *p && ok; p++) {
      unsigned char c = (unsigned char)*p;
      if (c == '"' || c == '\\') {
        append("\\%c", c);
      } else if (c < 0x20) {
        append("\\u%04x", c);
      } else {
        append("%c", c);
      }
    }
    append("\"");
  }
};

struct StatusFigures {
  float fps_sent;
  uint32_t free_heap;
  int rssi;
  uint32_t reconnects;
  uint32_t frames_sent;
  uint32_t capture_failures;
  const char* frame_size;
  int quality;
  float max_fps;
  const char* firmware;           // nullptr: not sent
  const SettingValues* settings;  // values as applied; nullptr: no "settings" and "unsupported"
  uint32_t unsupported;           // settings this board cannot apply (sensor refused, no flash LED)
  const char* ota_error;          // why the last update failed; nullptr or "": not sent
  // Sent only when set:
  uint32_t frames_in_flight;  // sent since the last answered ping: the server may not have them yet
  uint32_t frames_unconfirmed;  // in flight when their connection ended: the server may have some
  int quality_refused;        // the quality asked for that the buffer cannot take (-1: none)
  const char* ota;            // "rolled_back": the last update did not prove itself; nullptr: not sent
};

// {"type":"hello",...}. Returns the length written, or -1 if out is too small.
inline int format_hello(char* out, size_t out_len, const char* camera_id, const char* fw_version,
                        const char* frame_size, int quality, uint32_t free_heap, int rssi) {
  int n = snprintf(out, out_len,
                   "{\"type\":\"hello\",\"camera_id\":\"%s\",\"firmware\":\"%s\",\"frame_size\":\"%s\","
                   "\"quality\":%d,\"free_heap\":%lu,\"rssi\":%d}",
                   camera_id, fw_version, frame_size, quality, (unsigned long)free_heap, rssi);
  return (n > 0 && (size_t)n < out_len) ? n : -1;
}

// {"type":"status",...,"settings":{"brightness":0,...},"unsupported":["sharpness"],"ota_error":"..."}.
// Returns the length written, or -1 if out is too small.
inline int format_status(char* out, size_t out_len, const StatusFigures& s) {
  JsonWriter w(out, out_len);
  w.append("{\"type\":\"status\",\"fps_sent\":%.1f,\"free_heap\":%lu,\"rssi\":%d,\"reconnects\":%lu,"
           "\"frames_sent\":%lu,\"capture_failures\":%lu,\"frame_size\":\"%s\",\"quality\":%d,\"max_fps\":%.1f",
           (double)s.fps_sent, (unsigned long)s.free_heap, s.rssi, (unsigned long)s.reconnects,
           (unsigned long)s.frames_sent, (unsigned long)s.capture_failures, s.frame_size, s.quality,
           (double)s.max_fps);
  if (s.firmware != nullptr) {
    w.append(",\"firmware\":");
    w.string(s.firmware);
  }
  if (s.settings != nullptr) {
    w.append(",\"settings\":{");
    bool first = true;
    for (int i = 0; i < SETTING_COUNT; i++) {
      if (!s.settings->has(i) || (s.unsupported & setting_bit(i))) continue;
      const char* sep = first ? "" : ",";
      if (SETTINGS[i].is_switch) {
        w.append("%s\"%s\":%s", sep, SETTINGS[i].name, s.settings->value[i] ? "true" : "false");
      } else {
        w.append("%s\"%s\":%d", sep, SETTINGS[i].name, s.settings->value[i]);
      }
      first = false;
    }
    w.append("},\"unsupported\":[");
    first = true;
    for (int i = 0; i < SETTING_COUNT; i++) {
      if (!(s.unsupported & setting_bit(i))) continue;
      w.append("%s\"%s\"", first ? "" : ",", SETTINGS[i].name);
      first = false;
    }
    w.append("]");
  }
  if (s.ota_error != nullptr && s.ota_error[0] != '\0') {
    w.append(",\"ota_error\":");
    w.string(s.ota_error);
  }
  if (s.frames_in_flight > 0) w.append(",\"frames_in_flight\":%lu", (unsigned long)s.frames_in_flight);
  if (s.frames_unconfirmed > 0) w.append(",\"frames_unconfirmed\":%lu", (unsigned long)s.frames_unconfirmed);
  if (s.quality_refused > 0) w.append(",\"quality_refused\":%d", s.quality_refused);
  if (s.ota != nullptr && s.ota[0] != '\0') {
    w.append(",\"ota\":");
    w.string(s.ota);
  }
  w.append("}");
  return w.ok ? (int)w.len : -1;
}

// ---------------------------------------------------------------------------------------------
// Control message from the server, a flat JSON object with "type":"control", either settings:
//   {"framesize": "SVGA", "quality": 12, "fps": 8, "brightness": 1, "hmirror": true, "lamp": 40}
// or an update: {"ota_url": "http://...", "ota_md5": "<32 hex>", "ota_size": 912345}.
// Every setting is optional; unknown keys are an error so typos are noticed.
// ---------------------------------------------------------------------------------------------

struct Control {
  int frame_size;  // index into FRAME_SIZES, or -1 when absent
  int quality;     // 4..63 (lower is better, as in esp_camera), or -1 when absent
  float fps;       // 0.1..30, or -1 when absent
  SettingValues settings;
  bool ota;  // an update message: ota_request is filled, nothing else is set
  OtaRequest ota_request;
};

namespace detail {
inline const char* skip_ws(const char* p) {
  while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
  return p;
}
// Reads a JSON string without escapes into out; returns the char after the closing quote.
inline const char* read_string(const char* p, char* out, size_t out_len) {
  if (*p != '"') return nullptr;
  p++;
  size_t n = 0;
  while (*p && *p != '"') {
    if (*p == '\\' || (unsigned char)*p < 0x20 || n + 1 >= out_len) return nullptr;
    out[n++] = *p++;
  }
  if (*p != '"') return nullptr;
  out[n] = '\0';
  return p + 1;
}
inline const char* read_number(const char* p, double* value) {
  if (!((*p >= '0' && *p <= '9') || *p == '-')) return nullptr;  // strtod would also take "inf", "0x1p3"
  char* end = nullptr;
  *value = strtod(p, &end);
  if (end == p) return nullptr;
  return end;
}
// true/false, or a number (0/1 for a switch).
inline const char* read_setting_value(const char* p, double* value) {
  if (strncmp(p, "true", 4) == 0) {
    *value = 1;
    return p + 4;
  }
  if (strncmp(p, "false", 5) == 0) {
    *value = 0;
    return p + 5;
  }
  return read_number(p, value);
}
inline void set_error(char* err, size_t err_len, const char* msg) {
  if (err && err_len) snprintf(err, err_len, "%s", msg);
}
}  // namespace detail

// Parses a control message. On failure returns false and writes the reason into err.
inline bool parse_control(const char* json, Control* out, char* err, size_t err_len) {
  using namespace detail;
  out->frame_size = -1;
  out->quality = -1;
  out->fps = -1.0f;
  out->settings = SettingValues();
  out->ota = false;
  memset(&out->ota_request, 0, sizeof out->ota_request);
  if (json == nullptr) {
    set_error(err, err_len, "empty message");
    return false;
  }
  const char* p = skip_ws(json);
  if (*p != '{') {
    set_error(err, err_len, "not a JSON object");
    return false;
  }
  p = skip_ws(p + 1);
  bool any_setting = false;
  int ota_keys = 0;  // bits: 1 url, 2 md5, 4 size
  if (*p == '}') {
    p++;
  } else {
    while (true) {
      char key[24];
      p = read_string(p, key, sizeof key);
      if (!p) {
        set_error(err, err_len, "bad key");
        return false;
      }
      p = skip_ws(p);
      if (*p != ':') {
        set_error(err, err_len, "expected ':'");
        return false;
      }
      p = skip_ws(p + 1);
      int id = setting_index(key);
      if (strcmp(key, "framesize") == 0) {
        char name[16];
        p = read_string(p, name, sizeof name);
        if (!p) {
          set_error(err, err_len, "framesize must be a string");
          return false;
        }
        out->frame_size = frame_size_index(name);
        if (out->frame_size < 0) {
          set_error(err, err_len, "unknown framesize");
          return false;
        }
        any_setting = true;
      } else if (strcmp(key, "quality") == 0 || strcmp(key, "fps") == 0) {
        double v = 0;
        p = read_number(p, &v);
        if (!p) {
          set_error(err, err_len, "expected a number");
          return false;
        }
        if (key[0] == 'q') {
          if (!(v >= QUALITY_MIN && v <= QUALITY_MAX) || v != (int)v) {
            set_error(err, err_len, "quality must be an integer from 4 to 63");
            return false;
          }
          out->quality = (int)v;
        } else {
          if (!(v >= FPS_MIN && v <= FPS_MAX)) {
            set_error(err, err_len, "fps must be from 0.1 to 30");
            return false;
          }
          out->fps = (float)v;
        }
        any_setting = true;
      } else if (id >= 0) {
        double v = 0;
        p = read_setting_value(p, &v);
        const SettingRange& r = SETTINGS[id];
        if (!p || !(v >= r.min && v <= r.max) || v != (int)v) {
          describe_range(id, err, err_len);
          return false;
        }
        out->settings.set(id, (int)v);
        any_setting = true;
      } else if (strcmp(key, "ota_url") == 0) {
        p = read_string(p, out->ota_request.url, sizeof out->ota_request.url);
        if (!p) {
          set_error(err, err_len, "ota_url must be a string of at most 159 characters");
          return false;
        }
        ota_keys |= 1;
      } else if (strcmp(key, "ota_md5") == 0) {
        p = read_string(p, out->ota_request.md5, sizeof out->ota_request.md5);
        if (!p || !is_hex_md5(out->ota_request.md5)) {
          set_error(err, err_len, "ota_md5 must be 32 hex digits");
          return false;
        }
        ota_keys |= 2;
      } else if (strcmp(key, "ota_size") == 0) {
        double v = 0;
        p = read_number(p, &v);
        if (!p || !(v >= 1 && v <= 4294967295.0) || v != (double)(uint32_t)v) {
          set_error(err, err_len, "ota_size must be a positive integer");
          return false;
        }
        out->ota_request.size = (uint32_t)v;
        ota_keys |= 4;
      } else if (strcmp(key, "type") == 0) {
        char kind[16];
        p = read_string(p, kind, sizeof kind);
        if (!p || strcmp(kind, "control") != 0) {
          set_error(err, err_len, "type must be \"control\"");
          return false;
        }
      } else {
        if (err && err_len) snprintf(err, err_len, "unknown key: %s", key);
        return false;
      }
      p = skip_ws(p);
      if (*p == ',') {
        p = skip_ws(p + 1);
        continue;
      }
      if (*p == '}') {
        p++;
        break;
      }
      set_error(err, err_len, "expected ',' or '}'");
      return false;
    }
  }
  if (*skip_ws(p) != '\0') {
    set_error(err, err_len, "trailing characters");
    return false;
  }
  if (ota_keys != 0) {
    if (ota_keys != 7 || any_setting) {
      set_error(err, err_len, "an update message carries ota_url, ota_md5 and ota_size only");
      return false;
    }
    out->ota = true;
    return true;
  }
  if (!any_setting) {
    set_error(err, err_len, "no setting in the message");
    return false;
  }
  return true;
}

}  // namespace camlogic
