// Stand-in for ESP-IDF soc/soc.h: the register write macro. On the host it calls a function, so the
// board simulation (tests/firmware/fake_board.cpp) can record the write instead of crashing.
#pragma once
#include <stdint.h>
void stub_write_peri_reg(uint32_t addr, uint32_t val);
#define WRITE_PERI_REG(addr, val) stub_write_peri_reg((uint32_t)(addr), (uint32_t)(val))
