"""Vector search: exact k-nearest neighbours, a navigable small world graph (NSW) and HNSW, all in numpy."""

from minimodels.retrieval.hnsw import HNSW, HNSWConfig
from minimodels.retrieval.knn import exact_knn
from minimodels.retrieval.nsw import NSW

__all__ = ["HNSW", "HNSWConfig", "NSW", "exact_knn"]
