"""Models and their losses, one sub-package per system: clip/ (the CLIP backbone and weight loading),
text_video/ (WTI, meanP, HBI and the Banzhaf estimator), vqa/ (HBI with answer heads), music_video/ (BPVMR
music-video retrieval from features and beat tracks), video_video/ (the HAP-VR similarity network and its losses).
Imports nothing from modules/ or dataloaders/."""
from models.music_video import load_music_video_model
from models.video_video import load_hapvr_model

__all__ = ["load_hapvr_model", "load_music_video_model"]
