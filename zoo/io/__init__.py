"""Reading and preparing 3D volumes: :func:`read_volume` -> :class:`Volume` (numpy ``(z, y, x)`` order),
:func:`resample`, intensity schemes (:func:`normalize`, :func:`genesis_ct`, :func:`nnunet_ct`,
:func:`zscore`, :func:`minmax`) and Models Genesis cube sampling (:func:`sample_cubes`).

Only numpy is imported eagerly; nibabel, SimpleITK (``pip install "medzoo[export]"``) and torch are imported
when a format or function needs them.
"""

from .headers import VolumeHeader, read_header
from .preprocess import (
    CT_SCHEMES,
    MR_SCHEMES,
    SCHEMES,
    ModalityError,
    VolumeTooSmallError,
    genesis_ct,
    genesis_mr,
    minmax,
    nnunet_ct,
    normalize,
    resample,
    resampled_shape,
    sample_cubes,
    zscore,
)
from .readers import (
    SUPPORTED_FORMATS,
    MissingDependencyError,
    Volume,
    VolumeFormatError,
    normalize_modality,
    read_dicom_series,
    read_inv3,
    read_nrrd,
    read_volume,
)

__all__ = [
    "CT_SCHEMES",
    "MR_SCHEMES",
    "SCHEMES",
    "SUPPORTED_FORMATS",
    "MissingDependencyError",
    "ModalityError",
    "Volume",
    "VolumeFormatError",
    "VolumeHeader",
    "VolumeTooSmallError",
    "genesis_ct",
    "genesis_mr",
    "minmax",
    "nnunet_ct",
    "normalize",
    "normalize_modality",
    "read_dicom_series",
    "read_header",
    "read_inv3",
    "read_nrrd",
    "read_volume",
    "resample",
    "resampled_shape",
    "sample_cubes",
    "zscore",
]
