// The camera sensor's settings through esp32-camera's sensor_t: one call per setting of camlogic::SETTINGS,
// and the value the sensor's driver keeps in sensor->status. Included by esp32_stream.ino.
#pragma once

#include "camserver_logic.h"
#include "esp_camera.h"

// A sensor_t call, or -1 where the sensor's driver has none (a null pointer in sensor_t).
#define SENSOR_CALL(fn, value) (sensor->fn != nullptr ? sensor->fn(sensor, value) : -1)

// Applies one setting through sensor_t; 0 when the sensor took it.
static int sensor_apply(sensor_t* sensor, int id, int v) {
  switch (id) {
    case camlogic::SET_BRIGHTNESS: return SENSOR_CALL(set_brightness, v);
    case camlogic::SET_CONTRAST: return SENSOR_CALL(set_contrast, v);
    case camlogic::SET_SATURATION: return SENSOR_CALL(set_saturation, v);
    case camlogic::SET_SHARPNESS: return SENSOR_CALL(set_sharpness, v);
    case camlogic::SET_SPECIAL_EFFECT: return SENSOR_CALL(set_special_effect, v);
    case camlogic::SET_AWB: return SENSOR_CALL(set_whitebal, v);
    case camlogic::SET_AWB_GAIN: return SENSOR_CALL(set_awb_gain, v);
    case camlogic::SET_WB_MODE: return SENSOR_CALL(set_wb_mode, v);
    case camlogic::SET_AEC: return SENSOR_CALL(set_exposure_ctrl, v);
    case camlogic::SET_AEC2: return SENSOR_CALL(set_aec2, v);
    case camlogic::SET_AE_LEVEL: return SENSOR_CALL(set_ae_level, v);
    case camlogic::SET_AEC_VALUE: return SENSOR_CALL(set_aec_value, v);
    case camlogic::SET_AGC: return SENSOR_CALL(set_gain_ctrl, v);
    case camlogic::SET_AGC_GAIN: return SENSOR_CALL(set_agc_gain, v);
    case camlogic::SET_GAINCEILING: return SENSOR_CALL(set_gainceiling, (gainceiling_t)v);
    case camlogic::SET_BPC: return SENSOR_CALL(set_bpc, v);
    case camlogic::SET_WPC: return SENSOR_CALL(set_wpc, v);
    case camlogic::SET_RAW_GMA: return SENSOR_CALL(set_raw_gma, v);
    case camlogic::SET_LENC: return SENSOR_CALL(set_lenc, v);
    case camlogic::SET_HMIRROR: return SENSOR_CALL(set_hmirror, v);
    case camlogic::SET_VFLIP: return SENSOR_CALL(set_vflip, v);
    case camlogic::SET_DCW: return SENSOR_CALL(set_dcw, v);
    case camlogic::SET_COLORBAR: return SENSOR_CALL(set_colorbar, v);
    default: return -1;
  }
}

// The sensor's current value of a setting (its driver keeps sensor->status up to date).
static int sensor_value(const sensor_t* sensor, int id) {
  const camera_status_t& s = sensor->status;
  switch (id) {
    case camlogic::SET_BRIGHTNESS: return s.brightness;
    case camlogic::SET_CONTRAST: return s.contrast;
    case camlogic::SET_SATURATION: return s.saturation;
    case camlogic::SET_SHARPNESS: return s.sharpness;
    case camlogic::SET_SPECIAL_EFFECT: return s.special_effect;
    case camlogic::SET_AWB: return s.awb;
    case camlogic::SET_AWB_GAIN: return s.awb_gain;
    case camlogic::SET_WB_MODE: return s.wb_mode;
    case camlogic::SET_AEC: return s.aec;
    case camlogic::SET_AEC2: return s.aec2;
    case camlogic::SET_AE_LEVEL: return s.ae_level;
    case camlogic::SET_AEC_VALUE: return s.aec_value;
    case camlogic::SET_AGC: return s.agc;
    case camlogic::SET_AGC_GAIN: return s.agc_gain;
    case camlogic::SET_GAINCEILING: return s.gainceiling;
    case camlogic::SET_BPC: return s.bpc;
    case camlogic::SET_WPC: return s.wpc;
    case camlogic::SET_RAW_GMA: return s.raw_gma;
    case camlogic::SET_LENC: return s.lenc;
    case camlogic::SET_HMIRROR: return s.hmirror;
    case camlogic::SET_VFLIP: return s.vflip;
    case camlogic::SET_DCW: return s.dcw;
    case camlogic::SET_COLORBAR: return s.colorbar;
    default: return 0;
  }
}
