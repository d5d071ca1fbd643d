// Stand-in for espressif/esp32-camera's esp_camera.h (declarations only, real signatures).
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>
#include "Arduino.h"
#include "driver/ledc.h"

typedef enum { PIXFORMAT_RGB565, PIXFORMAT_YUV422, PIXFORMAT_YUV420, PIXFORMAT_GRAYSCALE, PIXFORMAT_JPEG,
               PIXFORMAT_RGB888, PIXFORMAT_RAW, PIXFORMAT_RGB444, PIXFORMAT_RGB555 } pixformat_t;
typedef enum {
  FRAMESIZE_96X96, FRAMESIZE_QQVGA, FRAMESIZE_QCIF, FRAMESIZE_HQVGA, FRAMESIZE_240X240, FRAMESIZE_QVGA,
  FRAMESIZE_CIF, FRAMESIZE_HVGA, FRAMESIZE_VGA, FRAMESIZE_SVGA, FRAMESIZE_XGA, FRAMESIZE_HD, FRAMESIZE_SXGA,
  FRAMESIZE_UXGA, FRAMESIZE_INVALID
} framesize_t;
typedef enum { CAMERA_GRAB_WHEN_EMPTY, CAMERA_GRAB_LATEST } camera_grab_mode_t;
typedef enum { CAMERA_FB_IN_PSRAM, CAMERA_FB_IN_DRAM } camera_fb_location_t;

typedef struct {
  int pin_pwdn;
  int pin_reset;
  int pin_xclk;
  union { int pin_sccb_sda; int pin_sscb_sda; };
  union { int pin_sccb_scl; int pin_sscb_scl; };
  int pin_d7, pin_d6, pin_d5, pin_d4, pin_d3, pin_d2, pin_d1, pin_d0;
  int pin_vsync;
  int pin_href;
  int pin_pclk;
  int xclk_freq_hz;
  ledc_timer_t ledc_timer;
  ledc_channel_t ledc_channel;
  pixformat_t pixel_format;
  framesize_t frame_size;
  int jpeg_quality;
  size_t fb_count;
  camera_fb_location_t fb_location;
  camera_grab_mode_t grab_mode;
  int sccb_i2c_port;
} camera_config_t;

typedef struct {
  uint8_t* buf;
  size_t len;
  size_t width;
  size_t height;
  pixformat_t format;
  struct timeval timestamp;
} camera_fb_t;

typedef enum { GAINCEILING_2X, GAINCEILING_4X, GAINCEILING_8X, GAINCEILING_16X, GAINCEILING_32X, GAINCEILING_64X,
               GAINCEILING_128X } gainceiling_t;

// sensor.h: what the sensor holds now; each driver updates it on a successful set_* call.
typedef struct {
  framesize_t framesize;
  bool scale;
  bool binning;
  uint8_t quality;
  int8_t brightness;
  int8_t contrast;
  int8_t saturation;
  int8_t sharpness;
  uint8_t denoise;
  uint8_t special_effect;
  uint8_t wb_mode;
  uint8_t awb;
  uint8_t awb_gain;
  uint8_t aec;
  uint8_t aec2;
  int8_t ae_level;
  uint16_t aec_value;
  uint8_t agc;
  uint8_t agc_gain;
  uint8_t gainceiling;
  uint8_t bpc;
  uint8_t wpc;
  uint8_t raw_gma;
  uint8_t lenc;
  uint8_t hmirror;
  uint8_t vflip;
  uint8_t dcw;
  uint8_t colorbar;
} camera_status_t;

typedef struct _sensor sensor_t;
struct _sensor {
  uint8_t slv_addr;
  pixformat_t pixformat;
  camera_status_t status;
  int xclk_freq_hz;
  int (*init_status)(sensor_t* sensor);
  int (*reset)(sensor_t* sensor);
  int (*set_pixformat)(sensor_t* sensor, pixformat_t pixformat);
  int (*set_framesize)(sensor_t* sensor, framesize_t framesize);
  int (*set_contrast)(sensor_t* sensor, int level);
  int (*set_brightness)(sensor_t* sensor, int level);
  int (*set_saturation)(sensor_t* sensor, int level);
  int (*set_sharpness)(sensor_t* sensor, int level);
  int (*set_denoise)(sensor_t* sensor, int level);
  int (*set_gainceiling)(sensor_t* sensor, gainceiling_t gainceiling);
  int (*set_quality)(sensor_t* sensor, int quality);
  int (*set_colorbar)(sensor_t* sensor, int enable);
  int (*set_whitebal)(sensor_t* sensor, int enable);
  int (*set_gain_ctrl)(sensor_t* sensor, int enable);
  int (*set_exposure_ctrl)(sensor_t* sensor, int enable);
  int (*set_hmirror)(sensor_t* sensor, int enable);
  int (*set_vflip)(sensor_t* sensor, int enable);
  int (*set_aec2)(sensor_t* sensor, int enable);
  int (*set_awb_gain)(sensor_t* sensor, int enable);
  int (*set_agc_gain)(sensor_t* sensor, int gain);
  int (*set_aec_value)(sensor_t* sensor, int gain);
  int (*set_special_effect)(sensor_t* sensor, int effect);
  int (*set_wb_mode)(sensor_t* sensor, int mode);
  int (*set_ae_level)(sensor_t* sensor, int level);
  int (*set_dcw)(sensor_t* sensor, int enable);
  int (*set_bpc)(sensor_t* sensor, int enable);
  int (*set_wpc)(sensor_t* sensor, int enable);
  int (*set_raw_gma)(sensor_t* sensor, int enable);
  int (*set_lenc)(sensor_t* sensor, int enable);
};

esp_err_t esp_camera_init(const camera_config_t* config);
esp_err_t esp_camera_deinit();
camera_fb_t* esp_camera_fb_get();
void esp_camera_fb_return(camera_fb_t* fb);
sensor_t* esp_camera_sensor_get();
