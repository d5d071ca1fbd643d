// camserver ESP32-CAM firmware: settings that are not secret. Secrets go in secrets.h.
#pragma once

// Board: exactly one of CAMERA_MODEL_AI_THINKER (the common ESP32-CAM), CAMERA_MODEL_WROVER_KIT,
// CAMERA_MODEL_M5STACK_PSRAM, CAMERA_MODEL_XIAO_ESP32S3.
#define CAMERA_MODEL_AI_THINKER

// The machine running camserver, and its camera port (ingest.port, default 3001). camserver prints
// both at start-up ("in the firmware's config.h: ..."). SERVER_HOST is an address, a name your
// router's DNS knows, or "camserver.local": the name camserver advertises over mDNS (http.mdns),
// which the board looks up on the LAN itself, so the server's address may change.
#define SERVER_HOST "192.168.1.10"
#define SERVER_PORT 3001
// With SERVER_HOST "....local": an address to try while the name is not found (a network that
// blocks multicast). "" = none: the board keeps asking, with the reconnect backoff.
#define SERVER_FALLBACK_HOST ""

// This camera's id: letters, digits, '-' and '_', up to 32 characters. The board connects to
// ws://SERVER_HOST:SERVER_PORT/ws/CAMERA_ID and its stream is /cameras/CAMERA_ID/stream.mjpg.
#define CAMERA_ID "esp32cam-1"

// Frame size by name: QQVGA QVGA CIF HVGA VGA SVGA XGA HD SXGA UXGA. Without PSRAM the
// board falls back to FRAME_SIZE_NO_PSRAM (a large frame does not fit in internal RAM).
#define FRAME_SIZE "VGA"
#define FRAME_SIZE_NO_PSRAM "QVGA"

// JPEG quality 4..63, lower is better and bigger. 12 gives ~25 KB VGA frames.
#define JPEG_QUALITY 12

// Frames per second sent at most. The server keeps only the newest frame, so sending faster
// than it detects only costs WiFi airtime.
#define MAX_FPS 10

// How often a JSON status text is sent, in milliseconds.
#define STATUS_INTERVAL_MS 5000

// Serial monitor speed.
#define SERIAL_BAUD 115200
