"""Records: the typed files each stage of the data flow leaves behind, one reader and writer per file.

A run's ``config.json`` and ``results.json`` (``records.run``), an attack's and an attack suite's
results (``records.attacks``, ``records.suite``), all written atomically (``records.files``). Every
stage writes its record here and every later stage (export, release, the reproduction report)
reads it from here, so a reader needs none of the code that trained or attacked.
"""
