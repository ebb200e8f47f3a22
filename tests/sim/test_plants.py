"""Physics checks of the loop plants: each parameter does what its unit says."""
import dataclasses
import math

import numpy as np
import pytest

from combkey.gateware.dsp.phase_detector import PhaseDetectorModel
from combkey.sim.plants import (
    FibrePhaseParams,
    FibrePhasePlant,
    LaserBeatParams,
    LaserBeatPlant,
    MicroringParams,
    MicroringPlant,
)


def quiet_laser(**kw):
    base = dict(linewidth_hz=0.0, adc_noise_lsb=0.0, drift_hz_per_s=0.0)
    base.update(kw)
    return dataclasses.replace(LaserBeatParams(), **base)


def test_laser_beat_frequency_and_actuator():
    p = quiet_laser(offset_hz=250e3, act_hz_per_lsb=100.0, act_bandwidth_hz=1e6)
    plant = LaserBeatPlant(p, seed=0)
    ph0 = plant.phase
    plant.step(10_000, 0)
    slope = (plant.phase - ph0) / (2 * math.pi * 10_000 / p.f_sample)
    assert slope == pytest.approx(250e3, rel=1e-9)
    # word 1000 pulls the beat by -100 kHz once the actuator low-pass has settled
    for _ in range(50):
        plant.step(1000, 1000)
    ph0 = plant.phase
    plant.step(10_000, 1000)
    slope = (plant.phase - ph0) / (2 * math.pi * 10_000 / p.f_sample)
    assert slope == pytest.approx(150e3, rel=1e-3)


def test_laser_adc_samples_carry_the_beat_phase():
    # The phase detector model recovers the plant's phase (relative to the NCO at f_if).
    p = quiet_laser(offset_hz=30e3)
    plant = LaserBeatPlant(p, seed=1)
    pd = PhaseDetectorModel(ftw=1 << 29, adc_width=14, decim_log2=5, turn_bits=12)
    got, true = [], []
    for _ in range(200):
        x, ph = plant.step(32, 0)
        phase, _ = pd.feed(x)
        got.append(phase[0] / 65536 * 2 * math.pi)
        true.append(ph)
    d = np.array(got[50:]) - np.array(true[50:])
    # constant offset only (block-average delay); no drift between the two
    assert np.std(d) < 0.01
    assert abs(np.mean(np.diff(got[50:])) - 2 * math.pi * 30e3 * 32 / 100e6) < 1e-3


def test_laser_white_fm_phase_diffusion_matches_linewidth():
    p = quiet_laser(offset_hz=0.0, linewidth_hz=10e3)
    plant = LaserBeatPlant(p, seed=2)
    n, blocks = 1000, 400
    inc = []
    for _ in range(blocks):
        ph0 = plant.phase
        plant.step(n, 0)
        inc.append(plant.phase - ph0)
    want = 2 * math.pi * 10e3 * n / p.f_sample          # rad^2 per block
    assert np.var(inc) == pytest.approx(want, rel=0.2)


def test_microring_counts_heater_and_thermal_lowpass():
    p = dataclasses.replace(MicroringParams(), env_walk_k_per_sqrt_s=0.0, env_cycle_k=0.0,
                            fast_noise_hz=0.0, offset_hz=0.0)
    plant = MicroringPlant(p, seed=0)
    counts = [plant.step(0)[0] for _ in range(100)]
    assert np.mean(counts) == pytest.approx(p.target_count, abs=0.02)
    # heater step: ring temperature reaches 1 - 1/e of the step after tau
    word = 1000
    n_tau = int(round(p.tau_thermal_s / p.gate_s))
    hk = [plant.step(word)[2] for _ in range(n_tau)]
    assert hk[-1] == pytest.approx(word * p.heater_k_per_lsb * (1 - math.exp(-1)), rel=0.01)
    for _ in range(20 * n_tau):
        _, rep_err, _ = plant.step(word)
    assert rep_err == pytest.approx(p.kappa_hz_per_k * word * p.heater_k_per_lsb, rel=1e-6)
    # counts follow the beat: rep rate down -> beat up -> more counts per gate
    tot = sum(plant.step(word)[0] for _ in range(100))
    want = 100 * (p.f_beat_if - rep_err) * p.gate_s
    assert abs(tot - want) <= 1


def test_fibre_phase_drift_counts_and_visibility():
    p = dataclasses.replace(FibrePhaseParams(), drift_rad_per_ms=4.1, walk_rad2_per_s=0.0,
                            initial_phase_rad=0.0)
    plant = FibrePhasePlant(p, seed=0)
    phi0 = plant.phi
    plant.step(0)
    assert plant.phi - phi0 == pytest.approx(4.1e3 * p.period_s)
    # frozen phase at 0: D0 of quadrature a gets (1 + V) / 2 of its half of the clicks
    p0 = dataclasses.replace(p, drift_rad_per_ms=0.0)
    plant = FibrePhasePlant(p0, seed=1)
    c = np.array([plant.step(0)[0] for _ in range(2000)], float).mean(axis=0)
    half = p0.ref_rate_cps * p0.period_s * p0.duty_cycle / 4
    bg = p0.background_cps * p0.period_s * p0.duty_cycle / 2
    assert c[0] == pytest.approx(half * (1 + p0.visibility) + bg, rel=0.02)
    assert c[1] == pytest.approx(half * (1 - p0.visibility) + bg, abs=0.2)
    assert c[2] == pytest.approx(half + bg, rel=0.03) and c[3] == pytest.approx(half + bg,
                                                                                  rel=0.03)
    # actuator at a quarter turn: quadrature b sees sin(-pi/2) -> D1
    plant = FibrePhasePlant(p0, seed=2)
    c = np.array([plant.step(1 << 14)[0] for _ in range(500)], float).mean(axis=0)
    assert c[3] > 10 * c[2]


@pytest.mark.parametrize("cls,field,value,msg", [
    (LaserBeatParams, "linewidth_hz", -1.0, "linewidth_hz must be a number >= 0"),
    (LaserBeatParams, "act_bandwidth_hz", 0.0, "act_bandwidth_hz must be a number > 0"),
    (MicroringParams, "kappa_hz_per_k", 0.0, "kappa_hz_per_k must be non-zero"),
    (FibrePhaseParams, "duty_cycle", 1.0, "duty_cycle must be in \\(0, 1\\)"),
    (FibrePhaseParams, "visibility", 1.5, "visibility must be in \\[0, 1\\]"),
])
def test_parameter_errors_name_the_field(cls, field, value, msg):
    with pytest.raises(ValueError, match=msg):
        dataclasses.replace(cls(), **{field: value}).check()
