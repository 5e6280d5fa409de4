"""pix2pix with the CoPer loss (CoPer paper III.C) and the synthesis evaluation (Table III): used by
``benchmark/kinds/synthesis.py``; the loss variants themselves are methods (``benchmark/methods/synthesis_losses.py``)."""
