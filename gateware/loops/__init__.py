"""Control loops built from :mod:`combkey.gateware.dsp` blocks, each with its bit-exact model.

* :class:`.opll.OPLL` -- optical phase-locked loop on a beat note at an intermediate frequency.
* :class:`.reprate.RepRateLock` -- comb repetition-rate lock driving the microring heater.
* :class:`.phase_compensator.PhaseCompensator` -- TF-QKD reference-phase tracking.

All share :class:`.core.LoopCore` (lock monitor + loop filter + offset/slew stage). Each loop
has sample streams in and an actuator word stream out, and is independent of the ADC/DAC chip.
"""
