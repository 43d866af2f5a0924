"""Part A: transfer learning by feature extraction from a pretrained CNN."""

from cnnlab.transfer.classify import pca_study, svm_study
from cnnlab.transfer.features import Features, extract_features, make_extractor
from cnnlab.transfer.sklearn_api import CNNFeatures

__all__ = ["extract_features", "make_extractor", "Features", "svm_study", "pca_study", "CNNFeatures"]
