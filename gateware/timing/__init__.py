"""Relay time tagger: carry-chain TDC, tag stream, slot classifier, counters and histograms.

See ``tdc`` (delay lines, encoder, calibration), ``tagger`` (tag word, merge, FIFO),
``classifier`` (slots, gates, BSM records) and ``histogram``.
"""
