"""Analysis: what the paper measures of a converter beyond training (§7.4-7.6) and the reports.

``saliency`` (Grad-CAM, Fig. 14 and Table 4), ``bandwidth`` (§7.5), ``protection`` (the
protection frontier of the defences), ``recipe_search`` (``dapter-protect``'s search), ``lambda_study``
and ``lambda_plots`` (the λ sweep of Fig. 8 and the tuner of §7.1), ``report`` (a run's report).
"""
