"""A released converter on one's own photos (``dapter-convert``), any size brought to the converter's by
``resize.RESIZE_POLICY``, the policy training and the Android harness share.
"""
