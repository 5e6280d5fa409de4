"""The suite's registry contract, run on this package's method (python -m pytest examples/medssl_example_denoise)."""
from benchmark.testing import check_method
from medssl_example_denoise import DenoisingAutoencoder


def test_denoise_ae_keeps_the_suite_contract():
    check_method(DenoisingAutoencoder, backbones=("unet2d", "swin_unetr"))  # a 2D and a 3D backbone; default: every one declared
