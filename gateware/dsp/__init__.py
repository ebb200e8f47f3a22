"""Fixed-point DSP blocks for the control loops, each with its bit-exact numpy model.

* :mod:`.common` -- saturation / wrap helpers (hardware and numpy) and register forwarding.
* :mod:`.loop_filter` -- PID / biquad IIR loop filter (``LoopFilter``, ``LoopFilterModel``).
* :mod:`.cordic` -- pipelined CORDIC atan2 + magnitude (``Cordic``, ``cordic_model``).
* :mod:`.phase_detector` -- NCO, I/Q demodulator, decimating low-pass, CORDIC, multi-turn
  unwrapper: the OPLL phase detector (``PhaseDetector``, ``PhaseDetectorModel``).
* :mod:`.freq_counter` -- gated, dead-time-free edge counter for the repetition-rate beat.
* :mod:`.ref_phase` -- TF-QKD reference-phase estimator from D0/D1 reference-slot clicks.
* :mod:`.lock_monitor` -- lock detection, loss-of-lock counting, relock sweep.
"""
