"""Physical plants for the closed-loop co-simulations of the control loops (numpy).

Each plant is stepped once per loop update: it takes the loop's actuator word and returns what
the loop's input sees during the next update (ADC samples, a gate count, reference clicks),
plus the true error used for the lock metrics. Every parameter is a dataclass field with its
unit; the numbers come from the seed papers where they give them and are marked *assumed*
otherwise (see ``docs/loops.md``).

Plants
------
:class:`LaserBeatPlant`
    Beat note between the pump laser and its reference (atomic line / reference laser / comb
    line) at an intermediate frequency: frequency offset + linear drift + white FM noise
    (Lorentzian beat linewidth), an actuator (current / piezo) with finite bandwidth (first-order
    low-pass), and a 14-bit ADC with white noise.
:class:`MicroringPlant`
    Microring repetition rate following the ring temperature through a thermal low-pass from
    the heater; the environment temperature random-walks and cycles (air conditioning); fast
    rep-rate noise is white per gate. The gate counts come from the counter's closed form
    (:func:`combkey.gateware.dsp.freq_counter.counts_from_phase`).
:class:`FibrePhasePlant`
    Alice-Bob relative phase at Charlie: linear drift (rad/ms, seed 000: up to 4.1 rad/ms) plus a
    random walk; reference slots take a fraction ``d`` (duty cycle) of the time, interleaved
    with the quantum slots; D0/D1 clicks of the two quadrature reference phases are Poisson with
    the interference visibility; the phase actuator holds the loop's word for one estimation
    period (the word from period ``k`` drives period ``k + 1``).
"""
import dataclasses
import math

import numpy as np

__all__ = ["LaserBeatParams", "LaserBeatPlant", "MicroringParams", "MicroringPlant",
           "FibrePhaseParams", "FibrePhasePlant"]


def _positive(name, value, allow_zero=False):
    ok = value >= 0 if allow_zero else value > 0
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not ok:
        what = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a number {what}, not {value!r}")


@dataclasses.dataclass(frozen=True)
class LaserBeatParams:
    """Laser beat-note plant (OPLL). Frequencies in Hz, times in s."""

    f_sample: float = 100e6            # ADC / FPGA clock (= SIM_CLOCK_HZ)
    f_if: float = 12.5e6               # intermediate frequency of the beat (NCO at ftw = 2**29)
    offset_hz: float = 200e3           # initial beat frequency error (stated initial offset)
    drift_hz_per_s: float = 1e6        # free-running frequency drift, assumed (1 MHz/s)
    linewidth_hz: float = 1e3          # Lorentzian beat linewidth (white FM), assumed
    act_hz_per_lsb: float = 100.0      # actuator tuning per DAC LSB, assumed (+-3.3 MHz range)
    act_bandwidth_hz: float = 100e3    # actuator (current/piezo driver) -3 dB bandwidth, assumed
    amplitude_lsb: float = 6000.0      # beat amplitude at the 14-bit ADC
    adc_noise_lsb: float = 30.0        # ADC + detector white noise, rms LSB, assumed
    adc_width: int = 14

    def check(self):
        for f in ("f_sample", "f_if", "act_hz_per_lsb", "act_bandwidth_hz", "amplitude_lsb"):
            _positive(f, getattr(self, f))
        for f in ("linewidth_hz", "adc_noise_lsb"):
            _positive(f, getattr(self, f), allow_zero=True)
        return self


class LaserBeatPlant:
    """Beat note seen by the OPLL's ADC; :meth:`step` per block of ``n`` samples."""

    def __init__(self, params=LaserBeatParams(), seed=0):
        self.p = params.check()
        self.rng = np.random.default_rng(seed)
        self.t = 0.0
        self.phase = 0.0               # beat phase relative to the NCO, rad
        self.nco_phase = 0.0           # rad, at f_if
        self.act_hz = 0.0              # actuator frequency after its low-pass
        self.kick_hz = 0.0             # step perturbation (relock tests)

    def free_offset_hz(self):
        return self.p.offset_hz + self.p.drift_hz_per_s * self.t + self.kick_hz

    def step(self, n, act_word):
        """Advance ``n`` samples with the actuator word held; return ``(adc, phase_err_rad)``.

        The actuator pulls the beat by ``-act_hz_per_lsb * word`` after its low-pass. The
        returned phase error is the beat phase relative to the NCO at the end of the block.
        """
        p = self.p
        dt = n / p.f_sample
        a = math.exp(-2 * math.pi * p.act_bandwidth_hz * dt)
        self.act_hz = a * self.act_hz + (1 - a) * (-p.act_hz_per_lsb * act_word)
        f = self.free_offset_hz() + self.act_hz
        k = np.arange(1, n + 1)
        fm = self.rng.normal(0.0, math.sqrt(2 * math.pi * p.linewidth_hz / p.f_sample), n)
        ph = self.phase + 2 * math.pi * f * k / p.f_sample + np.cumsum(fm)
        nco = self.nco_phase + 2 * math.pi * p.f_if * (k - 1) / p.f_sample
        x = p.amplitude_lsb * np.cos(nco + np.concatenate([[self.phase], ph[:-1]]))
        x = x + self.rng.normal(0.0, p.adc_noise_lsb, n)
        top = (1 << (p.adc_width - 1)) - 1
        adc = np.clip(np.round(x), -top - 1, top).astype(np.int64)
        self.phase = float(ph[-1])
        self.nco_phase = float((self.nco_phase + 2 * math.pi * p.f_if * n / p.f_sample)
                               % (2 * math.pi))
        self.t += dt
        return adc, self.phase


@dataclasses.dataclass(frozen=True)
class MicroringParams:
    """Microring repetition-rate plant (rep-rate lock). Hz, K, s."""

    f_clk: float = 100e6               # counter clock
    gate_s: float = 0.01               # counter gate (one loop update), 100 Hz per count
    f_beat_if: float = 1e6             # RF reference offset: beat at 1 MHz when on target
    kappa_hz_per_k: float = -0.5e6     # d(rep rate)/dT of a 49 GHz Si3N4 ring, assumed from
    #                                    dn/dT ~ 2.5e-5 /K and n_g ~ 2.1 (about -1e-5 FSR per K)
    heater_k_per_lsb: float = 30e-6    # heater word -> ring temperature, assumed (+-1 K range)
    tau_thermal_s: float = 1.0         # heater/TEC -> ring thermal time constant, assumed
    offset_hz: float = 20e3            # initial rep-rate error (stated initial offset)
    env_walk_k_per_sqrt_s: float = 4e-4   # environment temperature random walk, assumed
    #                                       (about 40 mK rms over 3 h)
    env_cycle_k: float = 0.02          # air-conditioning cycle amplitude, assumed
    env_cycle_s: float = 1200.0        # its period, assumed
    fast_noise_hz: float = 150.0       # white rep-rate noise per gate (pump power, RF), assumed

    def check(self):
        for f in ("f_clk", "gate_s", "f_beat_if", "heater_k_per_lsb", "tau_thermal_s",
                  "env_cycle_s"):
            _positive(f, getattr(self, f))
        for f in ("env_walk_k_per_sqrt_s", "env_cycle_k", "fast_noise_hz"):
            _positive(f, getattr(self, f), allow_zero=True)
        if self.kappa_hz_per_k == 0:
            raise ValueError("kappa_hz_per_k must be non-zero, not 0")
        return self

    @property
    def gate_cycles(self):
        return int(round(self.gate_s * self.f_clk))

    @property
    def target_count(self):
        return int(round(self.f_beat_if * self.gate_cycles / self.f_clk))

    @property
    def hz_per_count(self):
        return self.f_clk / self.gate_cycles


class MicroringPlant:
    """Microring under heater control; :meth:`step` per counter gate."""

    def __init__(self, params=MicroringParams(), seed=0):
        self.p = params.check()
        self.rng = np.random.default_rng(seed)
        self.t = 0.0
        self.env_k = 0.0               # environment temperature deviation, K
        self.heater_k = 0.0            # heater contribution after the thermal low-pass, K
        self.theta = self.rng.random()  # beat phase, cycles (counter closed form)
        self.kick_hz = 0.0

    def step(self, heater_word):
        """One gate with the heater word held; return ``(count, rep_err_hz, heater_k)``.

        ``rep_err_hz`` is the true repetition-rate error averaged over the gate (what a counter
        with this gate in the paper's setup measures); ``heater_k`` the heater's temperature.
        """
        p = self.p
        dt = p.gate_s
        a = math.exp(-dt / p.tau_thermal_s)
        self.heater_k = a * self.heater_k + (1 - a) * p.heater_k_per_lsb * heater_word
        self.env_k += self.rng.normal(0.0, p.env_walk_k_per_sqrt_s * math.sqrt(dt))
        cyc = p.env_cycle_k * math.sin(2 * math.pi * self.t / p.env_cycle_s)
        temp = self.env_k + cyc + self.heater_k
        rep_err = p.offset_hz + self.kick_hz + p.kappa_hz_per_k * temp \
            + self.rng.normal(0.0, p.fast_noise_hz)
        beat = p.f_beat_if - rep_err          # dOmega_r = Omega_RF - Omega_rep, offset to IF
        old = self.theta
        self.theta += beat * dt
        from ..gateware.dsp.freq_counter import counts_from_phase
        count = int(counts_from_phase([old, self.theta])[0])
        self.theta -= math.floor(old)        # keep the phase small (counts are differences)
        self.t += dt
        return count, rep_err, self.heater_k


@dataclasses.dataclass(frozen=True)
class FibrePhaseParams:
    """Fibre phase plant (TF-QKD phase compensation). rad, s, counts/s."""

    drift_rad_per_ms: float = 4.1      # seed 000: phase drift rate up to 4.1 rad/ms
    walk_rad2_per_s: float = 2.0       # random-walk diffusion on top of the drift, assumed
    period_s: float = 25e-6            # estimation period (one loop update), chosen
    duty_cycle: float = 0.5            # fraction of each period used by reference frames
    ref_rate_cps: float = 4e6          # D0+D1 clicks/s during reference frames, assumed
    #                                    (below SNSPD saturation)
    visibility: float = 0.97           # reference interference visibility, assumed
    background_cps: float = 35.0       # per detector; seed 000: crosstalk noise < 35 cps
    substeps: int = 16                 # phase samples per period for counts and metrics
    initial_phase_rad: float = 2.0     # stated initial offset

    def check(self):
        for f in ("period_s", "ref_rate_cps"):
            _positive(f, getattr(self, f))
        for f in ("drift_rad_per_ms", "walk_rad2_per_s", "background_cps"):
            _positive(f, getattr(self, f), allow_zero=True)
        if not 0 < self.duty_cycle < 1:
            raise ValueError(f"duty_cycle must be in (0, 1), not {self.duty_cycle!r}")
        if not 0 <= self.visibility <= 1:
            raise ValueError(f"visibility must be in [0, 1], not {self.visibility!r}")
        if not isinstance(self.substeps, int) or self.substeps < 2:
            raise ValueError(f"substeps must be an int >= 2, not {self.substeps!r}")
        return self


class FibrePhasePlant:
    """Alice-Bob phase at Charlie; :meth:`step` per reference period."""

    def __init__(self, params=FibrePhaseParams(), seed=0):
        self.p = params.check()
        self.rng = np.random.default_rng(seed)
        self.t = 0.0
        self.phi = params.initial_phase_rad
        self.kick_rad = 0.0

    def _advance(self, n_sub):
        p = self.p
        dt = p.period_s / p.substeps
        steps = p.drift_rad_per_ms * 1e3 * dt + self.rng.normal(
            0.0, math.sqrt(p.walk_rad2_per_s * dt), n_sub)
        phi = self.phi + self.kick_rad + np.cumsum(steps)
        self.kick_rad = 0.0
        self.phi = float(phi[-1])
        self.t += n_sub * dt
        return phi

    def step(self, act_word, out_width=16):
        """One period with the actuator at ``act_word / 2**out_width`` turns.

        Reference and quantum frames alternate on a time scale much shorter than the period
        (microseconds), so both sample the phase uniformly over the period: the clicks of the
        period's reference slots (``duty_cycle`` of the time, quadrature reference phases 0 and
        pi/2 in equal shares) are Poisson with means from the phase at each substep, and the
        residual ``phi - act`` (rad, wrapped to +-pi) at the substeps is what the quantum
        signals see. Returns ``((n0a, n1a, n0b, n1b), residual)``.
        """
        p = self.p
        act = 2 * math.pi * act_word / (1 << out_width)
        phi = self._advance(p.substeps)
        resid = np.angle(np.exp(1j * (phi - act)))
        t_ref = p.period_s * p.duty_cycle
        half = p.ref_rate_cps * t_ref / 4          # mean clicks per quadrature and detector
        bg = p.background_cps * t_ref / 2
        c = float(np.mean(np.cos(resid)))
        s = float(np.mean(np.sin(resid)))
        v = p.visibility
        lam = [half * (1 + v * c) + bg, half * (1 - v * c) + bg,
               half * (1 + v * s) + bg, half * (1 - v * s) + bg]
        return tuple(int(k) for k in self.rng.poisson(lam)), resid
