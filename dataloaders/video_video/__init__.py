"""Video-to-video retrieval data (HAP-VR): the benchmarks' annotation files (`annotations`), read through a restricted
unpickler (`pickles`), and their HDF5 region-feature files (`features`)."""
