"""Analysis: what the paper measures of a converter beyond training (§7.4-7.6) and the reports.

``saliency`` (Grad-CAM, Fig. 14 and Table 4), ``bandwidth`` (§7.5), ``protection`` (the
protection frontier of the defences), ``report`` (a run's report), ``plots`` (matplotlib set-up).
"""
