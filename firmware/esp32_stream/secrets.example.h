// Copy this file to secrets.h (git ignores secrets.h) and fill in your values.
#pragma once

#define WIFI_SSID "your-wifi-name"
#define WIFI_PASSWORD "your-wifi-password"

// Must match the server's ingest.token (--camera-token). Leave empty when the server has none.
#define CAMERA_TOKEN ""
