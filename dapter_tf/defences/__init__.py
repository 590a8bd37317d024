"""Defences beyond the paper: what a converter adds to L_dap so that a *learned* attacker fails too.

The paper's L_dap bounds a histogram (the entropy of §4.1), not what a code of sparse, regular
patterns carries: a decoder trained on converted images restores them (SSIM 0.90 on CIFAR-10).
Two mechanisms, alone or together (docs/protection.md, "Defences"):

* ``adversarial``: an ensemble of online decoders, trained in alternation with the converter to
  invert it and restarted in turn, whose success over the mean image is added to the converter's
  loss (a min-max in the training loop, checkpointed with the converter).
* the coarse output code, ``models.build_converter(output_block=b)``: the converter sends one colour
  per b x b block, so its output cannot hold more than (H / b) (W / b) colours of the photo, whatever
  it learns. It lives with the converter because it ships with it (it is part of the ``.tflite``).
  ``models.build_block_converter`` sends the same code from an encoder that stops at the block
  resolution, at a cost that falls with b.

Neither defence is ever one of the attackers that measure it (``attacks.suite``): those are trained
afresh, after the converter is frozen.
"""
