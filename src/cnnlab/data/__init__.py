"""The data layer: datasets by name, as uint8 image sets, plus batch-level preprocessing."""

from cnnlab.data.imageset import FolderImageSet, ImageSet, Skipped, TensorImageSet
from cnnlab.data.sources import DATASET_NAMES, load_dataset
from cnnlab.data.transforms import gather_batches, held_on, index_batches, resize_uint8, to_float

__all__ = ["ImageSet", "TensorImageSet", "FolderImageSet", "Skipped", "load_dataset", "DATASET_NAMES",
           "to_float", "resize_uint8", "index_batches", "gather_batches", "held_on"]
