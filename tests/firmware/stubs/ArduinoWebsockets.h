// Stand-in for gilmaimon/ArduinoWebsockets 0.5.4 (declarations only, the signatures of
// tiny_websockets/client.hpp).
#pragma once
#include "Arduino.h"

struct FakeSocket;  // the board simulation (tests/firmware/fake_board.cpp)

namespace websockets {
typedef String WSInterfaceString;

enum class WebsocketsEvent { ConnectionOpened, ConnectionClosed, GotPing, GotPong };
enum CloseReason { CloseReason_None = -1, CloseReason_NormalClosure = 1000, CloseReason_GoingAway = 1001 };

class WebsocketsMessage {
 public:
  WSInterfaceString data() const;
  bool isText() const;
  bool isBinary() const;
  size_t length() const;

 private:
  friend struct ::FakeSocket;  // the board simulation makes messages
  WebsocketsMessage();
  String data_;
  bool text_;
};

class WebsocketsClient;
// The names as tiny_websockets/client.hpp (0.5.4) has them: the "Partial" callbacks are the ones
// without the client.
typedef std::function<void(WebsocketsClient&, WebsocketsMessage)> MessageCallback;
typedef std::function<void(WebsocketsMessage)> PartialMessageCallback;
typedef std::function<void(WebsocketsClient&, WebsocketsEvent, WSInterfaceString)> EventCallback;
typedef std::function<void(WebsocketsEvent, WSInterfaceString)> PartialEventCallback;

class WebsocketsClient {
 public:
  WebsocketsClient();
  void addHeader(const WSInterfaceString key, const WSInterfaceString value);
  bool connect(const WSInterfaceString url);
  bool connect(const WSInterfaceString host, const int port, const WSInterfaceString path);
  void onMessage(const MessageCallback callback);
  void onMessage(const PartialMessageCallback callback);
  void onEvent(const EventCallback callback);
  void onEvent(const PartialEventCallback callback);
  bool poll();
  bool available(const bool activeTest = false);
  bool send(const WSInterfaceString& data);
  bool send(const char* data);
  bool send(const char* data, const size_t len);
  bool sendBinary(const WSInterfaceString data);
  bool sendBinary(const char* data, const size_t len);
  bool ping(const WSInterfaceString data = "");
  void close(const CloseReason reason = CloseReason_NormalClosure);
  virtual ~WebsocketsClient();

 private:
  void* fake_;  // the board simulation's connection state
};
}  // namespace websockets
