"""Building blocks shared by the SSL methods: pure pieces that take a ``torch.Generator``.

* ``pretext``      the ``PretextTask`` base class, ``Recipe`` and ``DataSpec`` (re-exported by ``benchmark.methods``)
* ``masking``      random token masks, voxel masks, local channel masking, cross-series masks, patchify
* ``noise``        Gaussian noise, down/up-sampling, DDP's noising, noise sources
* ``mixing``       source-pool mixing of the SI paper (convex weights, mixtures, foreground overlap)
* ``genesis``      Models-Genesis corruptions of the SI paper (grid inpainting, pixel shuffle, super-resolution, Bézier shift)
* ``rotation``     90° rotations and cut-out boxes (Tang et al.)
* ``losses``       reconstruction (L1 + L2, masked MSE / L1) and contrastive / clustering losses
* ``distributed``  cross-worker gathers and sums for batch-wide losses
* ``heads``        projection / prediction heads, the upsampling reconstruction head, the masked-token decoder
* ``multicrop``    SwAV-style multi-crop views of 2D slices
* ``multicrop3d``  DINO's multi-crop views of 3D crops
* ``dino``         DINO's head, self-distillation loss, EMA update and schedules
* ``masking_noise``  the denoising autoencoder's masking noise (Vincent et al. 2008)
* ``tokens``       a learned position embedding interpolated to another token grid
* ``carvemix``     CarveMix's signed distance and λ rule (LADP's noise region, CarveMix fine-tuning augmentation)
* ``recipes``      paper recipes that several methods share
* ``pretexts``     shared pretext bases of method families (reconstruction, source identification,
                   Swin-SSL, denoising, no pretext)

No module here imports ``benchmark.methods``: methods import blocks, never each other.
"""
