// Stand-in for ESP-IDF soc/rtc_cntl_reg.h: the brownout detector register.
#pragma once
#define DR_REG_RTCCNTL_BASE 0x3ff48000
#define RTC_CNTL_BROWN_OUT_REG (DR_REG_RTCCNTL_BASE + 0xd4)
