// Stand-in for the ESP32 Arduino core's ESPmDNS library (declarations only, real signatures).
#pragma once
#include "Arduino.h"
#include "WiFi.h"

class MDNSResponder {
 public:
  bool begin(const char* hostName);
  void end();
  // host without ".local"; an IPAddress of 0.0.0.0 when nothing answered within timeout ms
  IPAddress queryHost(const char* host, uint32_t timeout = 2000);
  IPAddress queryHost(String host, uint32_t timeout = 2000);
};
extern MDNSResponder MDNS;
