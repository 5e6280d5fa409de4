"""Shared pretext bases: one class per family of registered methods that differ only in settings.

* ``reconstruction.ReconstructionPretext``  corrupt, reconstruct with L1 + L2 (inpainting, pixel_shuffle, super_resolution, intensity_shift)
* ``source_identification.SourceIdentificationPretext``  mixtures of a source pool (csi, wsi, dsi)
* ``swin_ssl.SwinSSLPretext``  Tang et al.'s rotation + contrastive + inpainting (swin_unetr_ssl, rotation, contrastive)
* ``denoising.DenoisingPretext``  predict the added noise, encoder optionally frozen (ddp, ladp)
* ``scratch.NoPretext``  no pretraining (scratch, restart)

Bases are not registered; each method file registers its own subclass.
"""
