// Stand-in for the ESP32 Arduino HTTPUpdate library (declarations only, the 2.x signatures; 3.x takes a
// NetworkClient&, of which WiFiClient is a subclass, and an optional request callback).
#pragma once
#include "Arduino.h"
#include "WiFi.h"
#include "WiFiClient.h"
#include "Update.h"

#define HTTP_UE_TOO_LESS_SPACE (-100)
#define HTTP_UE_SERVER_NOT_REPORT_SIZE (-101)
#define HTTP_UE_SERVER_FILE_NOT_FOUND (-102)
#define HTTP_UE_SERVER_FORBIDDEN (-103)
#define HTTP_UE_SERVER_WRONG_HTTP_CODE (-104)
#define HTTP_UE_SERVER_FAULTY_MD5 (-105)
#define HTTP_UE_BIN_VERIFY_HEADER_FAILED (-106)
#define HTTP_UE_BIN_FOR_WRONG_FLASH (-107)
#define HTTP_UE_NO_PARTITION (-108)

enum HTTPUpdateResult { HTTP_UPDATE_FAILED, HTTP_UPDATE_NO_UPDATES, HTTP_UPDATE_OK };
typedef HTTPUpdateResult t_httpUpdate_return;

class HTTPUpdate {
 public:
  HTTPUpdate(void);
  void rebootOnUpdate(bool reboot);
  void setLedPin(int ledPin = -1, uint8_t ledOn = 1);
  t_httpUpdate_return update(WiFiClient& client, const String& url, const String& currentVersion = "");
  t_httpUpdate_return update(WiFiClient& client, const String& host, uint16_t port, const String& uri = "/",
                             const String& currentVersion = "");
  int getLastError(void);
  String getLastErrorString(void);
};
extern HTTPUpdate httpUpdate;
