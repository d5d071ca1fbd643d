// Stand-in for the ESP32 Arduino WiFiClient (declarations only, real signatures).
#pragma once
#include "Arduino.h"

class WiFiClient {
 public:
  WiFiClient();
  ~WiFiClient();
  int connect(const char* host, uint16_t port);
  void stop();
};
