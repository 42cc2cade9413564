"""GPU physics, vectorised over every GPU of the factory: power, temperature, clocks, throttle reasons.

One consistent chain per tick: activity (GPU util, SM-active, DRAM-active) → power demand → throttles
(thermal from the previous temperature, power cap, power brake, locked clocks) → clock factor →
power drawn → temperature (first-order lag to inlet + R·P, τ = 60 s) → energy counter (mJ, monotone).
Numbers: docs/calibration.md §D.1 (H100 700 W cap, ~72 W idle, max-operating 87 °C, slowdown 89 °C,
1,980 MHz; A100 400 W, 55 W, 1,410 MHz).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sightglass.simulate.topology import Factory

# DCGM_FI_DEV_CLOCKS_EVENT_REASONS bits (docs/conventions.md §1.4)
GPU_IDLE = 0x001
CLOCKS_SETTING = 0x002
SW_POWER_CAP = 0x004
HW_SLOWDOWN = 0x008
SW_THERMAL = 0x020
HW_THERMAL = 0x040
HW_POWER_BRAKE = 0x080

TAU_S = 60.0


@dataclass(slots=True)
class GpuState:
    temp: np.ndarray
    mem_temp: np.ndarray
    power: np.ndarray
    energy_mj: np.ndarray
    clock_f: np.ndarray
    sm_clock: np.ndarray
    reasons: np.ndarray
    power_violation_ns: np.ndarray
    thermal_violation_ns: np.ndarray


class GpuPhysics:
    def __init__(self, factory: Factory) -> None:
        f = factory
        self.tdp = f.gpu_profile_array("tdp_w")
        self.idle = f.gpu_profile_array("idle_w")
        self.max_clk = f.gpu_profile_array("max_sm_clock")
        self.idle_clk = f.gpu_profile_array("idle_sm_clock")
        self.max_op = f.gpu_profile_array("max_operating_c")
        self.slowdown = f.gpu_profile_array("slowdown_c")
        self.r_th = f.gpu_profile_array("r_thermal_c_per_w")
        self.inlet = f.inlet_c.astype(np.float64)
        g = f.n_gpus
        start_p = self.idle * 1.0
        self.state = GpuState(
            temp=self.inlet + self.r_th * start_p,
            mem_temp=self.inlet + self.r_th * start_p + 6,
            power=start_p,
            energy_mj=f.boot_energy_mj.astype(np.float64),
            clock_f=np.ones(g),
            sm_clock=self.idle_clk.copy(),
            reasons=np.full(g, GPU_IDLE, dtype=np.int64),
            power_violation_ns=np.zeros(g),
            thermal_violation_ns=np.zeros(g),
        )

    def step(
        self,
        rng: np.random.Generator,
        dt: float,
        *,
        util: np.ndarray,
        sm: np.ndarray,
        dram: np.ndarray,
        limit: np.ndarray,
        r_mult: np.ndarray,
        brake: np.ndarray,
        clock_lock: np.ndarray,
        power_floor: np.ndarray,
    ) -> GpuState:
        s = self.state
        activity = np.clip(0.2 * util + 0.8 * sm + 0.3 * dram, 0.0, 1.05)
        demand = self.idle + (self.tdp - self.idle) * activity
        demand = np.maximum(demand, power_floor)
        # throttles from the previous temperature
        th_sw = s.temp >= self.max_op
        th_hw = s.temp >= self.slowdown
        clock_f = np.where(th_sw, np.clip(1.0 - (s.temp - self.max_op + 1.0) * 0.14, 0.45, 1.0), 1.0)
        clock_f = np.where(th_hw, np.minimum(clock_f, 0.55), clock_f)
        clock_f = np.where(brake, np.minimum(clock_f, 0.5), clock_f)
        locked = clock_lock > 0
        clock_f = np.where(locked, np.minimum(clock_f, clock_lock / self.max_clk), clock_f)
        power = self.idle + (demand - self.idle) * clock_f**1.3
        capped = (power > limit) & (util > 0.02)
        cap_f = np.where(capped, ((limit - self.idle) / np.maximum(power - self.idle, 1.0)) ** 0.77, 1.0)
        clock_f = clock_f * cap_f
        power = np.where(capped, limit * rng.uniform(0.975, 0.998, len(power)), power)
        power = np.where(capped, power, power * rng.normal(1.0, 0.012, len(power)))
        power = np.clip(power, self.idle * 0.95, self.tdp)
        target = self.inlet + self.r_th * r_mult * power
        a = 1.0 - np.exp(-dt / TAU_S)
        s.temp = s.temp + (target - s.temp) * a
        s.mem_temp = s.temp + 5.0 + 7.0 * dram + rng.normal(0, 0.3, len(power))
        idle = util < 0.02
        s.sm_clock = np.where(idle & ~locked, self.idle_clk, np.round(self.max_clk * clock_f / 15.0) * 15.0)
        r = np.where(idle, GPU_IDLE, 0)
        r |= np.where(locked, CLOCKS_SETTING, 0)
        r |= np.where(capped, SW_POWER_CAP, 0)
        r |= np.where(th_hw | brake, HW_SLOWDOWN, 0)
        r |= np.where(th_sw, SW_THERMAL, 0)
        r |= np.where(th_hw, HW_THERMAL, 0)
        r |= np.where(brake, HW_POWER_BRAKE, 0)
        s.reasons = r.astype(np.int64)
        s.power = power
        s.clock_f = clock_f
        s.energy_mj = s.energy_mj + np.floor(power * dt * 1000.0)
        s.power_violation_ns = s.power_violation_ns + np.where(capped | brake, dt * 1e9, 0.0)
        s.thermal_violation_ns = s.thermal_violation_ns + np.where(th_sw, dt * 1e9, 0.0)
        return s
