"""Person re-identification descriptors: LOMO (``lomo``), LOMO + XQDA (``lomo-xqda``), XQDA on any
descriptor's rows (``xqda``), stripe HSV (``stripe-hsv``)."""

from lookalike.descriptors.reid.lomo import LOMO_DIM, Lomo, lomo_features
from lookalike.descriptors.reid.stripes import StripeHSV
from lookalike.descriptors.reid.xqda import LomoXQDA, XQDAModel, fit_xqda, xqda_distances
from lookalike.descriptors.reid.xqda_head import XQDAHead

__all__ = [
    "LOMO_DIM",
    "Lomo",
    "LomoXQDA",
    "StripeHSV",
    "XQDAHead",
    "XQDAModel",
    "fit_xqda",
    "lomo_features",
    "xqda_distances",
]
