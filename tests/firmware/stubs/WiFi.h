// Stand-in for the ESP32 Arduino WiFi library (declarations only, real signatures).
#pragma once
#include "Arduino.h"
#include "WiFiClient.h"

typedef enum { WL_IDLE_STATUS = 0, WL_NO_SSID_AVAIL = 1, WL_SCAN_COMPLETED = 2, WL_CONNECTED = 3,
               WL_CONNECT_FAILED = 4, WL_CONNECTION_LOST = 5, WL_DISCONNECTED = 6 } wl_status_t;
typedef enum { WIFI_MODE_NULL = 0, WIFI_MODE_STA, WIFI_MODE_AP, WIFI_MODE_APSTA } wifi_mode_t;
#define WIFI_STA WIFI_MODE_STA

class IPAddress {
 public:
  IPAddress();
  IPAddress(uint8_t first_octet, uint8_t second_octet, uint8_t third_octet, uint8_t fourth_octet);
  String toString() const;
  uint8_t operator[](int index) const;  // the address's bytes, most significant first

 private:
  uint8_t bytes_[4];  // storage for the board simulation
};

class WiFiClass {
 public:
  wl_status_t begin(const char* ssid, const char* passphrase = NULL, int32_t channel = 0, const uint8_t* bssid = NULL,
                    bool connect = true);
  wl_status_t status();
  bool mode(wifi_mode_t mode);
  bool setSleep(bool enabled);
  bool setAutoReconnect(bool autoReconnect);
  bool disconnect(bool wifioff = false, bool eraseap = false);
  int8_t RSSI();
  IPAddress localIP();
};
extern WiFiClass WiFi;
