// Stand-in for the ESP32 Arduino Update library (declarations only, real signatures).
#pragma once
#include "Arduino.h"

class UpdateClass {
 public:
  bool setMD5(const char* expected_md5);
  String md5String(void);
  bool end(bool evenIfRemaining = false);
  void abort();
  uint8_t getError();
};
extern UpdateClass Update;
