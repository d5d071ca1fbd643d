// Stand-in for ESP-IDF esp_ota_ops.h (declarations only, real signatures).
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "Arduino.h"

typedef struct {
  void* flash_chip;
  int type;
  int subtype;
  uint32_t address;
  uint32_t size;
  char label[17];
  bool encrypted;
} esp_partition_t;

const esp_partition_t* esp_ota_get_running_partition(void);
const esp_partition_t* esp_ota_get_next_update_partition(const esp_partition_t* start_from);
esp_err_t esp_ota_set_boot_partition(const esp_partition_t* partition);
