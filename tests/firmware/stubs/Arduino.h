// Stand-in for the ESP32 Arduino core: declares exactly what the sketch uses, with the core's
// signatures, so `g++ -fsyntax-only` catches typos and type errors. Nothing here runs.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <functional>

class String {
 public:
  String(const char* s = "");
  String(const String& other);
  String& operator=(const String& other);
  ~String();
  const char* c_str() const;
  unsigned int length() const;

 private:
  char* buffer_;  // storage for the board simulation (tests/firmware/fake_board.cpp); the sketch never sees it
};

class Print {
 public:
  size_t printf(const char* format, ...) __attribute__((format(printf, 2, 3)));
  size_t print(const char* text);
  size_t println(const char* text);
  size_t println(const String& text);
};

class HardwareSerial : public Print {
 public:
  void begin(unsigned long baud, uint32_t config = 0x800001c, int8_t rxPin = -1, int8_t txPin = -1,
             bool invert = false, unsigned long timeout_ms = 20000UL, uint8_t rxfifo_full_thrhd = 112);
};
extern HardwareSerial Serial;

class EspClass {
 public:
  uint32_t getFreeHeap();
  uint32_t getFreeSketchSpace();
  void restart();
};
extern EspClass ESP;

typedef int esp_err_t;
#define ESP_OK 0

unsigned long millis();
void delay(uint32_t ms);
uint32_t esp_random(void);
bool psramFound();
// esp32-hal.h (C linkage): the core's weak default returns false, and initArduino() then marks a
// freshly updated image valid before setup().
extern "C" bool verifyRollbackLater();
