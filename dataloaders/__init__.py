"""Data: annotation files, decoding and transforms, one sub-package per family (video/ decoding and
transforms; text_video/ the retrieval benchmarks; qa/ MSRVTT-QA; video_video/ the HAP-VR benchmarks' annotations and HDF5 features;
synthetic/ the demo data). Imports nothing from models/ or modules/."""
